/**
 * Sparse MeZO (Liu et al., "Sparse MeZO: Less Parameters for Better Performance in Zeroth-Order LLM
 * Fine-Tuning", arXiv 2402.15751): MeZO that perturbs and updates only a masked subset m of the
 * entries, the rest stay bit-identical. Three masks, each of density ρ (`density`):
 *   magnitude  the paper's: entries with |θ| at or below their tensor's ρ-quantile of |θ| (one threshold
 *              per layer tensor), both taken from θ at the start of every step. A threshold fixed from
 *              the initial weights (as for full fine-tuning in the paper) would freeze LoRA's
 *              zero-initialized B after its first step: every entry leaves 0 and none is ≤ 0 again
 *   random     each entry with probability ρ, drawn afresh every step from the counter-based stream
 *   layer      whole tensors, each with probability ρ, drawn afresh every step
 *
 *   m from θ (or the seed);  θ ← ⌊θ + ε·m·z⌉; l₊;  θ ← ⌊θ − 2ε·m·z⌉; l₋;  g = (l₊ − l₋)/(2ε)   record: [g]
 *   q = ⌊θ + ε·m·z⌉;  θ ← ⌊q − lr·g·m·z⌉   (entries with m = 0 are never written)   logged loss: l₊
 * g is unbiased for ⟨∇L, m⊙z⟩. Memory: the step's mask, 1 bit per trainable entry (the magnitude mask
 * must be taken before θ moves; the other two could be regenerated but share the code), plus, for the
 * magnitude mask, a sorted copy of one tensor's |θ| while its threshold is found.
 */
import { LmtuneError } from '../../util/errors.ts';
import { philox4x32, seedKey } from '../../util/rng.ts';
import type { ParamList } from '../types.ts';
import { TILE, rademacherTile, spsaSampleSeed, zKey } from '../zstream.ts';
import { TapedMethod, totalElements, type ZoSettings } from './method.ts';
import type { Tape } from './tape.ts';
import { eachTile } from './tiles.ts';

export type SparseMask = 'magnitude' | 'random' | 'layer';

/** the ρ-quantile of |x| (the value at rank ⌈ρn⌉ − 1 of the sorted magnitudes) */
export function magnitudeThreshold(x: Float32Array, density: number): number {
  if (x.length === 0) return 0;
  const a = Float32Array.from(x, Math.abs).sort();
  return a[Math.max(0, Math.ceil(density * a.length) - 1)]!;
}

/** a uniform in [0, 1) that depends only on (seed, k) */
function uniformOf(seed: number, k: number): number {
  const [k0, k1] = seedKey(seed);
  const b = new Uint32Array(4);
  philox4x32(k >>> 0, 0, 0x4c415952, 0, k0, k1, b, 0); // "LAYR"
  return b[0]! / 4294967296;
}

export class SparseMethod extends TapedMethod {
  readonly name: string;
  private readonly masks: Uint8Array[];
  private readonly bits = new Float64Array(TILE);
  private readonly byte = new Float64Array(TILE);

  constructor(
    params: ParamList,
    s: ZoSettings,
    readonly mask: SparseMask,
  ) {
    super(params, s);
    this.name = `sparse-${mask}`;
    if (!(s.density > 0 && s.density <= 1)) throw new LmtuneError('CONFIG', `${this.name}: density must be in (0, 1], got ${s.density}`);
    this.masks = params.map((p) => new Uint8Array(Math.ceil(p.data.length / 8)));
  }

  config(): Record<string, unknown> {
    return { method: this.name, eps: this.s.eps, distribution: this.s.distribution, density: this.s.density };
  }
  passesPerStep(): number {
    return 2;
  }
  override stateBytes(): number {
    return this.masks.reduce((s, m) => s + m.length, 0);
  }

  /** the mask of the step with this seed, from the current θ: bit i of masks[p] */
  private buildMask(seed: number): void {
    const rho = this.s.density;
    if (this.mask === 'magnitude') {
      this.xs.forEach((x, p) => {
        const m = this.masks[p]!.fill(0);
        const t = magnitudeThreshold(x, rho);
        for (let i = 0; i < x.length; i++) if (Math.abs(x[i]!) <= t) m[i >> 3] |= 1 << (i & 7);
      });
    } else if (this.mask === 'layer') {
      this.xs.forEach((_, p) => this.masks[p]!.fill(uniformOf(seed, p) < rho ? 0xff : 0));
    } else {
      // 8 Rademacher streams give each entry a uniform byte u; the entry is in when u < round(256ρ)
      const cut = Math.round(256 * rho);
      const keys = Array.from({ length: 8 }, (_, b) => zKey(spsaSampleSeed(seed, 1 + b)));
      this.xs.forEach((x, p) => {
        const m = this.masks[p]!.fill(0);
        for (let tile = 0, start = 0; start < x.length; tile++, start += TILE) {
          const len = Math.min(TILE, x.length - start);
          this.byte.fill(0, 0, len);
          keys.forEach(([k0, k1], b) => {
            rademacherTile(k0, k1, p, tile, this.bits, 0, len);
            for (let i = 0; i < len; i++) if (this.bits[i]! < 0) this.byte[i] += 1 << b;
          });
          for (let i = 0; i < len; i++) if (this.byte[i]! < cut) m[(start + i) >> 3] |= 1 << ((start + i) & 7);
        }
      });
    }
  }

  /** fraction of the entries in the current mask */
  maskDensity(): number {
    let on = 0;
    this.xs.forEach((x, p) => {
      const m = this.masks[p]!;
      for (let i = 0; i < x.length; i++) on += (m[i >> 3]! >> (i & 7)) & 1;
    });
    return on / Math.max(1, totalElements(this.params));
  }

  /** is entry i of parameter p in the step's mask */
  inMask(p: number, i: number): boolean {
    return ((this.masks[p]![i >> 3]! >> (i & 7)) & 1) === 1;
  }

  private add(seed: number, scale: number): void {
    eachTile(this.xs, seed, this.s.distribution, (x, p, start, len, z) => {
      const m = this.masks[p]!;
      for (let i = 0; i < len; i++) {
        const e = start + i;
        if ((m[e >> 3]! >> (e & 7)) & 1) x[e] = x[e]! + scale * z[i]!;
      }
    });
  }

  protected async run(tape: Tape, seed: number, lr: number): Promise<number> {
    const { eps } = this.s;
    this.buildMask(seed);
    this.add(seed, eps);
    const lp = await tape.loss();
    this.add(seed, -2 * eps);
    const lm = await tape.loss();
    const g = tape.keep((lp - lm) / (2 * eps));
    eachTile(this.xs, seed, this.s.distribution, (x, p, start, len, z) => {
      const m = this.masks[p]!;
      for (let i = 0; i < len; i++) {
        const e = start + i;
        if (!((m[e >> 3]! >> (e & 7)) & 1)) continue;
        const q = Math.fround(x[e]! + eps * z[i]!);
        x[e] = q - lr * g * z[i]!;
      }
    });
    return lp;
  }
}
