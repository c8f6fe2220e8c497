/**
 * The perturbation directions z of MeZO: a deterministic, counter-based stream of standard normal (or
 * Rademacher ±1) numbers, element i of parameter p being a pure function of (seed, p, i). Any chunking,
 * any order and any number of threads therefore produce the same z, and z is regenerated from the seed
 * instead of stored.
 *
 * Construction (generator id `Z_GENERATOR`): each parameter is cut into tiles of 256 elements. Tile k of
 * parameter p is seeded by one Philox4x32-10 block (src/util/rng.ts) with key seedKey(seed) and counter
 * (k mod 2^32, ⌊k/2^32⌋, p, tag); the 128 output bits seed a xoshiro128** generator that produces the
 * tile's 32-bit words in order. A Gaussian element takes one word through a 256-layer ziggurat
 * (Marsaglia & Tsang 2000, with disjoint bits for the layer and the signed abscissa); the ~1% of rejected words
 * draw further words from the same tile stream, and the tail beyond r uses Marsaglia's exponential method,
 * so the output is exactly normal up to the 23-bit resolution of the abscissa. A Rademacher element is
 * one bit (32 per word).
 *
 * Why not fillGaussian from rng.ts: Philox costs ~30 ns per block in JavaScript and Box-Muller ~17 ns per
 * log/cos/sin triple, about 36 ns per element in all; MeZO regenerates z three times per step over every
 * parameter (124M for GPT-2 small). Philox once per 256 elements plus xoshiro and the ziggurat's fast
 * path is an order of magnitude cheaper (see bench/perturb.ts).
 */
import { philox4x32, seedKey } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';

export type ZDistribution = 'gaussian' | 'rademacher';

export const Z_GENERATOR = 'philox4x32-10+xoshiro128ss/tile256/ziggurat256/v1';
export const TILE = 256;

const TAG_GAUSSIAN = 0x5a4e4f52; // "ZNOR"
const TAG_RADEMACHER = 0x5a524144; // "ZRAD"
const TAG_SAMPLE_SEED = 0x5a53414d; // "ZSAM"
const TAG_STEP_SEED = 0x5a535450; // "ZSTP"

// ---- ziggurat tables: layer i (1..255) is the rectangle [0, X[i]] × [f(X[i]), f(X[i+1])] under
// f(x) = exp(−x²/2); layer 0 is the base strip [0, r] × [0, f(r)] plus the tail, drawn as a rectangle of
// width X[0] = v/f(r). All 256 layers have area v.
const ZIG_R = 3.6541528853610088;
const ZIG_V = 0.00492867323399;
export const ZIG_X = new Float64Array(257);
export const ZIG_F = new Float64Array(257);
{
  const f = (x: number): number => Math.exp(-0.5 * x * x);
  ZIG_X[0] = ZIG_V / f(ZIG_R);
  ZIG_X[1] = ZIG_R;
  for (let i = 1; i < 255; i++) ZIG_X[i + 1] = Math.sqrt(-2 * Math.log(ZIG_V / ZIG_X[i]! + f(ZIG_X[i]!)));
  ZIG_X[256] = 0;
  for (let i = 0; i <= 256; i++) ZIG_F[i] = f(ZIG_X[i]!);
}
const TWO_M23 = 1 / 8388608;
const TWO_M32 = 1 / 4294967296;

const PB = new Uint32Array(4); // Philox output
const ST = new Int32Array(4); // xoshiro state handed to the slow path

function seedTile(k0: number, k1: number, stream: number, tile: number, tag: number): void {
  philox4x32(tile >>> 0, Math.floor(tile / 4294967296) >>> 0, stream >>> 0, tag, k0, k1, PB, 0);
  ST[0] = PB[0]!;
  ST[1] = PB[1]!;
  ST[2] = PB[2]!;
  ST[3] = PB[3]!;
  if ((ST[0] | ST[1] | ST[2] | ST[3]) === 0) ST[0] = 1; // xoshiro's one forbidden state (probability 2^-128)
}

/** Next xoshiro128** word from ST (slow path only; the hot loops inline it). */
function nextWord(): number {
  const s0 = ST[0]!;
  const s1 = ST[1]!;
  const s2 = ST[2]!;
  const s3 = ST[3]!;
  const m = Math.imul(s1, 5);
  const w = Math.imul((m << 7) | (m >>> 25), 9);
  const t = s1 << 9;
  const n2 = s2 ^ s0;
  const n3 = s3 ^ s1;
  ST[1] = s1 ^ n2;
  ST[0] = s0 ^ n3;
  ST[2] = n2 ^ t;
  ST[3] = (n3 << 11) | (n3 >>> 21);
  return w;
}

/** Uniform in (0, 1) from one word. */
function uniformOpen(): number {
  return ((nextWord() >>> 0) + 0.5) * TWO_M32;
}

/**
 * Ziggurat rejection path for a word whose fast test failed (x = its signed abscissa); continues the tile
 * stream held in ST.
 */
function gaussianSlow(w: number, x: number): number {
  for (;;) {
    const layer = w & 255;
    if (layer === 0) {
      // |x| ≥ r in the base layer: sample the tail beyond r (Marsaglia 1964), keeping x's sign
      let a: number;
      let b: number;
      do {
        a = -Math.log(uniformOpen()) / ZIG_R;
        b = -Math.log(uniformOpen());
      } while (b + b < a * a);
      return x < 0 ? -(ZIG_R + a) : ZIG_R + a;
    }
    const y = ZIG_F[layer]! + uniformOpen() * (ZIG_F[layer + 1]! - ZIG_F[layer]!);
    if (y < Math.exp(-0.5 * x * x)) return x;
    w = nextWord();
    x = ((w >> 8) + 0.5) * TWO_M23 * ZIG_X[w & 255]!;
    if (Math.abs(x) < ZIG_X[(w & 255) + 1]!) return x;
  }
}

/**
 * Writes the first `len` (≤ TILE) elements of tile `tile` of parameter `stream` into out[off..off+len).
 * k0, k1 = seedKey(seed). A word w gives layer = w & 255 and the signed abscissa
 * x = ((w >> 8) + 0.5)·2^-23·X[layer] (disjoint bits; symmetric about 0); |x| < X[layer+1] is accepted
 * at once. There is no branch on the sign: a 50/50 branch costs more than the rest of the loop.
 */
export function gaussianTile(k0: number, k1: number, stream: number, tile: number, out: Float64Array, off: number, len: number): void {
  seedTile(k0, k1, stream, tile, TAG_GAUSSIAN);
  const X = ZIG_X;
  let s0 = ST[0]!;
  let s1 = ST[1]!;
  let s2 = ST[2]!;
  let s3 = ST[3]!;
  for (let i = 0; i < len; i++) {
    const m = Math.imul(s1, 5);
    const w = Math.imul((m << 7) | (m >>> 25), 9);
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    const layer = w & 255;
    const x = ((w >> 8) + 0.5) * TWO_M23 * X[layer]!;
    if (Math.abs(x) < X[layer + 1]!) {
      out[off + i] = x;
    } else {
      ST[0] = s0;
      ST[1] = s1;
      ST[2] = s2;
      ST[3] = s3;
      out[off + i] = gaussianSlow(w, x);
      s0 = ST[0]!;
      s1 = ST[1]!;
      s2 = ST[2]!;
      s3 = ST[3]!;
    }
  }
}

/** Rademacher ±1: element j of the tile is bit (j mod 32) of word ⌊j/32⌋, 1 → −1. */
export function rademacherTile(k0: number, k1: number, stream: number, tile: number, out: Float64Array, off: number, len: number): void {
  seedTile(k0, k1, stream, tile, TAG_RADEMACHER);
  for (let i = 0; i < len; i += 32) {
    const w = nextWord();
    const end = Math.min(32, len - i);
    for (let b = 0; b < end; b++) out[off + i + b] = 1 - ((w >>> b) & 1) * 2;
  }
}

export type TileFiller = (k0: number, k1: number, stream: number, tile: number, out: Float64Array, off: number, len: number) => void;

export function tileFiller(dist: ZDistribution): TileFiller {
  if (dist === 'gaussian') return gaussianTile;
  if (dist === 'rademacher') return rademacherTile;
  throw new LmtuneError('CONFIG', `unknown perturbation distribution "${String(dist)}" (expected gaussian or rademacher)`);
}

/** Key words of a perturbation seed; seeds are integers in [0, 2^53). */
export function zKey(seed: number): [number, number] {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new LmtuneError('CONFIG', `perturbation seed must be an integer in [0, 2^53), got ${seed}`);
  return seedKey(seed);
}

/**
 * out[j] = z of parameter `stream`, element offset + j, for any offset and length (the stream does not
 * depend on how it is cut). Convenience and test path; the MeZO passes generate whole tiles in place.
 */
export function fillZ(out: Float64Array, seed: number, stream: number, offset = 0, dist: ZDistribution = 'gaussian'): void {
  const [k0, k1] = zKey(seed);
  const fill = tileFiller(dist);
  const scratch = new Float64Array(TILE);
  let j = 0;
  while (j < out.length) {
    const e = offset + j;
    const tile = Math.floor(e / TILE);
    const inTile = e - tile * TILE;
    const take = Math.min(TILE - inTile, out.length - j);
    fill(k0, k1, stream, tile, scratch, 0, inTile + take);
    out.set(scratch.subarray(inTile, inTile + take), j);
    j += take;
  }
}

function seedFromBlock(c0: number, c1: number, tag: number, key: number): number {
  const [k0, k1] = zKey(key);
  const b = new Uint32Array(4);
  philox4x32(c0 >>> 0, c1 >>> 0, 0, tag, k0, k1, b, 0);
  return (b[0]! >>> 11) * 4294967296 + b[1]!; // 53 bits
}

/**
 * The seed of perturbation j (0-based) within an n-SPSA step: j = 0 keeps the step seed, so n = 1 is plain
 * MeZO; later ones are Philox hashes of (step seed, j).
 */
export function spsaSampleSeed(stepSeed: number, j: number): number {
  if (!Number.isInteger(j) || j < 0) throw new LmtuneError('CONFIG', `n-SPSA sample index must be an integer >= 0, got ${j}`);
  if (j > 0) return seedFromBlock(j, 0, TAG_SAMPLE_SEED, stepSeed);
  zKey(stepSeed); // validates
  return stepSeed;
}

/**
 * A step seed as a pure function of (run seed, step), so a resumed run needs no generator state. (The
 * reference draws np.random.randint(1e9) from numpy's global stream; only determinism matters here.)
 */
export function mezoStepSeed(runSeed: number, step: number): number {
  if (!Number.isSafeInteger(step) || step < 0) throw new LmtuneError('CONFIG', `MeZO step must be an integer >= 0, got ${step}`);
  return seedFromBlock(step >>> 0, Math.floor(step / 4294967296), TAG_STEP_SEED, runSeed);
}
