/**
 * FZOO (Dang et al., "FZOO: Fast Zeroth-Order Optimizer for Fine-Tuning Large Language Models towards
 * Adam-Scale Speed", arXiv 2506.09034): N one-sided Rademacher estimates around one unperturbed loss,
 * with the step divided by the standard deviation σ of the N perturbed losses (a zeroth-order
 * normalized SGD: σ ≈ ε‖∇L‖). The paper batches the N perturbed passes on a GPU; here they run one
 * after another, so the memory is inference memory. Directions u_j from spsaSampleSeed(seed, j),
 * always Rademacher.
 *
 *   l₀ = L(θ);  for j < N: θ ← ⌊θ + ε·u_j⌉; l_j = L; θ ← ⌊θ − ε·u_j⌉
 *   σ = sqrt(Σ (l_j − mean l)²/N);  c_j = σ > 0 ? (l_j − l₀)/(N·σ) : 0          record: [σ, c_0 … c_{N−1}]
 *   θ ← ⌊θ − lr·((c_0·u_0 + c_1·u_1) + … )⌉                                      logged loss: l₀
 * Written from the paper's description (the reference code was not consulted); note ε cancels in the
 * update, as in normalized SGD.
 */
import { LmtuneError } from '../../util/errors.ts';
import type { ParamList } from '../types.ts';
import { spsaSampleSeed } from '../zstream.ts';
import { TapedMethod, type ZoSettings } from './method.ts';
import type { Tape } from './tape.ts';
import { addZ, eachTileMulti } from './tiles.ts';

/** N when `samples` is left at 1 */
export const FZOO_DEFAULT_N = 8;

export class FzooMethod extends TapedMethod {
  readonly name = 'fzoo';
  readonly n: number;

  constructor(params: ParamList, s: ZoSettings) {
    super(params, s);
    this.n = s.samples > 1 ? s.samples : FZOO_DEFAULT_N;
    if (!Number.isInteger(this.n) || this.n < 2) throw new LmtuneError('CONFIG', `fzoo: needs N >= 2 perturbations per step, got ${this.n}`);
  }

  config(): Record<string, unknown> {
    return { method: this.name, eps: this.s.eps, distribution: 'rademacher', n: this.n };
  }
  passesPerStep(): number {
    return this.n + 1;
  }

  protected async run(tape: Tape, seed: number, lr: number): Promise<number> {
    const { eps } = this.s;
    const n = this.n;
    const seeds = Array.from({ length: n }, (_, j) => spsaSampleSeed(seed, j));
    const l0 = await tape.loss();
    const ls: number[] = [];
    for (const sj of seeds) {
      addZ(this.xs, sj, 'rademacher', eps);
      ls.push(await tape.loss());
      addZ(this.xs, sj, 'rademacher', -eps);
    }
    const mean = ls.reduce((a, b) => a + b, 0) / n;
    const sigma = tape.keep(Math.sqrt(ls.reduce((a, l) => a + (l - mean) * (l - mean), 0) / n));
    const cs = ls.map((l) => tape.keep(sigma > 0 ? (l - l0) / (n * sigma) : 0));
    eachTileMulti(this.xs, seeds, 'rademacher', (x, _p, start, len, us) => {
      for (let i = 0; i < len; i++) {
        let d = cs[0]! * us[0]![i]!;
        for (let j = 1; j < n; j++) d += cs[j]! * us[j]![i]!;
        x[start + i] = x[start + i]! - lr * d;
      }
    });
    return l0;
  }
}
