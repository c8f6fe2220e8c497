/**
 * HiZOO (Zhao et al., "Second-Order Fine-Tuning without Pain for LLMs: a Hessian Informed Zeroth-Order
 * Optimizer", ICLR 2025, arXiv 2402.15173; reference trainer.py `zo_Hessian_step_update`): a diagonal
 * Hessian estimate H (init 1) from the same three forward passes scales the perturbation by H^{-1/2}.
 * State: H, one float32 per trainable parameter.
 *
 *   l₀ = L(θ);  θ ← ⌊θ + ε·z/√H⌉; l₊;  θ ← ⌊θ − 2ε·z/√H⌉; l₋
 *   g = (l₊ − l₋)/(2ε),  c = |l₊ + l₋ − 2l₀|/(2ε²)                          record: [g, c]
 *   per element, one pass:  q = ⌊θ + ε·z/√H⌉ (restore);  H ← ⌊max((1 − α)·H + α·c·H·z², 1e-8)⌉;
 *                            θ ← ⌊q − lr·g·z/√H⌉  (the new H, as the reference)   logged loss: l₀
 * α (`hessianSmooth`) defaults to the paper's best, 1e-8. g is unbiased for ⟨∇L, z/√H⟩ (central
 * difference), so with H = 1 it is MeZO's projected gradient.
 */
import { stateKey } from '../types.ts';
import { LmtuneError } from '../../util/errors.ts';
import { TapedMethod, totalElements, type ZoSettings } from './method.ts';
import type { Tape } from './tape.ts';
import { eachTile } from './tiles.ts';
import type { ParamList } from '../types.ts';

export class HizooMethod extends TapedMethod {
  readonly name = 'hizoo';
  private readonly hs: Float32Array[];

  constructor(params: ParamList, s: ZoSettings) {
    super(params, s);
    if (!(s.hessianSmooth >= 0 && s.hessianSmooth <= 1)) throw new LmtuneError('CONFIG', `hizoo: the Hessian smoothing α must be in [0, 1], got ${s.hessianSmooth}`);
    this.hs = params.map((p) => new Float32Array(p.data.length).fill(1));
  }

  config(): Record<string, unknown> {
    return { method: this.name, eps: this.s.eps, distribution: this.s.distribution, hessianSmooth: this.s.hessianSmooth };
  }
  passesPerStep(): number {
    return 3;
  }
  override stateBytes(): number {
    return 4 * totalElements(this.params);
  }

  /** the diagonal Hessian estimate of parameter p (live) */
  hessian(p: number): Float32Array {
    return this.hs[p]!;
  }

  private perturb(seed: number, scale: number): void {
    eachTile(this.xs, seed, this.s.distribution, (x, p, start, len, z) => {
      const h = this.hs[p]!;
      for (let i = 0; i < len; i++) x[start + i] = x[start + i]! + (scale * z[i]!) / Math.sqrt(h[start + i]!);
    });
  }

  protected async run(tape: Tape, seed: number, lr: number): Promise<number> {
    const { eps } = this.s;
    const a = this.s.hessianSmooth;
    const l0 = await tape.loss();
    this.perturb(seed, eps);
    const lp = await tape.loss();
    this.perturb(seed, -2 * eps);
    const lm = await tape.loss();
    const g = tape.keep((lp - lm) / (2 * eps));
    const c = tape.keep(Math.abs(lp + lm - 2 * l0) / (2 * eps * eps));
    eachTile(this.xs, seed, this.s.distribution, (x, p, start, len, z) => {
      const h = this.hs[p]!;
      for (let i = 0; i < len; i++) {
        const zi = z[i]!;
        const h0 = h[start + i]!;
        const q = Math.fround(x[start + i]! + (eps * zi) / Math.sqrt(h0));
        const h1 = Math.fround(Math.max((1 - a) * h0 + a * c * h0 * zi * zi, 1e-8));
        h[start + i] = h1;
        x[start + i] = q - (lr * g * zi) / Math.sqrt(h1);
      }
    });
    return l0;
  }

  override stateTensors(): Map<string, Float32Array> {
    return new Map(this.params.map((p, k) => [stateKey('hessian', p.name), this.hs[k]!]));
  }

  override loadState(tensors: ReadonlyMap<string, Float32Array>, _scalars: Readonly<Record<string, number>> = {}): void {
    this.params.forEach((p, k) => {
      const t = tensors.get(stateKey('hessian', p.name));
      if (t === undefined || t.length !== p.data.length) throw new LmtuneError('CHECKPOINT', `hizoo: state "hessian:${p.name}" is missing or has the wrong length`);
      this.hs[k]!.set(t);
    });
  }
}
