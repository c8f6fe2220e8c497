/**
 * ZO-SGD-Sign (ZO-Bench: Zhang et al. 2024, arXiv 2402.11592, §3; ZO-signSGD: Liu et al. 2019, arXiv
 * 1810.10806): the MeZO two-point estimate ĝ = g·z, applied through its sign, so every perturbed weight
 * moves by exactly ±lr (before rounding). Biased (sign of an estimate). No state.
 *
 *   θ ← ⌊θ + εz⌉; l₊;  θ ← ⌊θ − 2εz⌉; l₋;  g = (l₊ − l₋)/(2ε)            record: [g]
 *   q = ⌊θ + εz⌉ (restore);  θ ← ⌊q − lr·sign(g)·sign(z)⌉                 logged loss: l₊
 */
import { TapedMethod } from './method.ts';
import type { Tape } from './tape.ts';
import { addZ, eachTile } from './tiles.ts';

export class SignMethod extends TapedMethod {
  readonly name = 'sign';

  config(): Record<string, unknown> {
    return { method: this.name, eps: this.s.eps, distribution: this.s.distribution };
  }
  passesPerStep(): number {
    return 2;
  }

  protected async run(tape: Tape, seed: number, lr: number): Promise<number> {
    const { eps, distribution: dist } = this.s;
    addZ(this.xs, seed, dist, eps);
    const lp = await tape.loss();
    addZ(this.xs, seed, dist, -2 * eps);
    const lm = await tape.loss();
    const g = tape.keep((lp - lm) / (2 * eps));
    const sg = Math.sign(g);
    eachTile(this.xs, seed, dist, (x, _p, start, len, z) => {
      for (let i = 0; i < len; i++) {
        const q = Math.fround(x[start + i]! + eps * z[i]!);
        x[start + i] = q - lr * sg * Math.sign(z[i]!);
      }
    });
    return lp;
  }
}
