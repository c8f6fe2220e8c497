/**
 * Tile loops over a parameter list with z regenerated from the counter-based stream (zstream.ts):
 * element i of parameter p (its index in the list) gets z(seed, p, i), so every method here perturbs
 * with the same directions MeZO would for that seed.
 */
import { TILE, tileFiller, zKey, type ZDistribution } from '../zstream.ts';

export type TileBody = (x: Float32Array, p: number, start: number, len: number, z: Float64Array) => void;

const scratch: Float64Array[] = [];
function buffers(k: number): Float64Array[] {
  while (scratch.length < k) scratch.push(new Float64Array(TILE));
  return scratch;
}

/** Runs `body` on every tile of the parameters `only` selects (default all), z of `seed` filled in. */
export function eachTile(xs: readonly Float32Array[], seed: number, dist: ZDistribution, body: TileBody, only?: (p: number) => boolean): void {
  const [k0, k1] = zKey(seed);
  const fill = tileFiller(dist);
  const z = buffers(1)[0]!;
  xs.forEach((x, p) => {
    if (only && !only(p)) return;
    for (let tile = 0, start = 0; start < x.length; tile++, start += TILE) {
      const len = Math.min(TILE, x.length - start);
      fill(k0, k1, p, tile, z, 0, len);
      body(x, p, start, len, z);
    }
  });
}

/** As eachTile with several seeds: zs[j] holds the tile of seeds[j]. */
export function eachTileMulti(xs: readonly Float32Array[], seeds: readonly number[], dist: ZDistribution, body: (x: Float32Array, p: number, start: number, len: number, zs: Float64Array[]) => void): void {
  const keys = seeds.map((s) => zKey(s));
  const fill = tileFiller(dist);
  const zs = buffers(seeds.length).slice(0, seeds.length);
  xs.forEach((x, p) => {
    for (let tile = 0, start = 0; start < x.length; tile++, start += TILE) {
      const len = Math.min(TILE, x.length - start);
      keys.forEach(([k0, k1], j) => fill(k0, k1, p, tile, zs[j]!, 0, len));
      body(x, p, start, len, zs);
    }
  });
}

/** θ ← ⌊θ + s·z⌉ on the selected parameters (MeZO's perturbation pass). */
export function addZ(xs: readonly Float32Array[], seed: number, dist: ZDistribution, s: number, only?: (p: number) => boolean): void {
  eachTile(xs, seed, dist, (x, _p, start, len, z) => {
    for (let i = 0; i < len; i++) x[start + i] = x[start + i]! + s * z[i]!;
  }, only);
}
