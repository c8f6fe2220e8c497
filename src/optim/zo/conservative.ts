/**
 * ZO-SGD-Cons (ZO-Bench: Zhang et al. 2024, arXiv 2402.11592, §3, "conservative" ZO-SGD): after the
 * MeZO estimate, try θ − lr·g·z and θ + lr·g·z and keep the best of those and θ itself, so a step never
 * raises the batch loss. 5 forward passes a step. No state.
 *
 *   l₀ = L(θ); θ ← ⌊θ + εz⌉; l₊; θ ← ⌊θ − 2εz⌉; l₋; θ ← ⌊θ + εz⌉;  g = (l₊ − l₋)/(2ε)
 *   move(s): θ ← ⌊θ − s·lr·g·z⌉
 *   move(1); l_a = L;  move(−2); l_b = L          (now at θ + lr·g·z)
 *   choice (the reference's rule): l_a > l₀ ? (l₀ < l_b ? back to θ : stay) : (l_a < l_b ? to θ − lr·g·z : stay)
 *   back to θ: move(1); to θ − lr·g·z: move(2)      record: [g, choice]   logged loss: the kept one
 */
import { LmtuneError } from '../../util/errors.ts';
import { TapedMethod } from './method.ts';
import type { Tape } from './tape.ts';
import { addZ } from './tiles.ts';

/** 0: θ, 1: θ − lr·g·z, 2: θ + lr·g·z */
export function conservativeChoice(l0: number, la: number, lb: number): 0 | 1 | 2 {
  if (la > l0) return l0 < lb ? 0 : 2;
  return la < lb ? 1 : 2;
}

export class ConservativeMethod extends TapedMethod {
  readonly name = 'conservative';

  config(): Record<string, unknown> {
    return { method: this.name, eps: this.s.eps, distribution: this.s.distribution };
  }
  passesPerStep(): number {
    return 5;
  }

  protected async run(tape: Tape, seed: number, lr: number): Promise<number> {
    const { eps, distribution: dist } = this.s;
    const l0 = await tape.loss();
    addZ(this.xs, seed, dist, eps);
    const lp = await tape.loss();
    addZ(this.xs, seed, dist, -2 * eps);
    const lm = await tape.loss();
    addZ(this.xs, seed, dist, eps);
    const g = tape.keep((lp - lm) / (2 * eps));
    const move = (s: number): void => addZ(this.xs, seed, dist, -s * lr * g);
    move(1);
    const la = await tape.loss();
    move(-2);
    const lb = await tape.loss();
    const choice = tape.keep(tape.replaying ? Number.NaN : conservativeChoice(l0, la, lb));
    if (choice === 0) move(1);
    else if (choice === 1) move(2);
    else if (choice !== 2) throw new LmtuneError('CHECKPOINT', `conservative replay: choice ${choice} is not 0, 1 or 2`);
    return [l0, la, lb][choice]!;
  }
}
