/**
 * RMSprop with torch.optim.RMSprop semantics. With d = g + wd·x (coupled decay):
 *   v = α·v + (1 − α)·d²                                   slot square_avg
 *   centered: a = α·a + (1 − α)·d;  s = sqrt(v − a²) + ε    slot grad_avg
 *   else:                           s = sqrt(v) + ε         (ε outside the square root, as torch)
 *   momentum μ > 0: b = μ·b + d/s;  x ← x − lr·b            slot momentum_buffer, starts at 0
 *   else:                           x ← x − lr·d/s
 * Slots are float32 (rounded once per step); everything else is float64 per element.
 */
import { LmtuneError } from '../util/errors.ts';
import { decayAllButBiasAndNorm } from './decay.ts';
import { NamedState } from './state.ts';
import { checkFiniteLr, checkGradShape, type DecayFilter, type GradMap, type Optimizer, type ParamList } from './types.ts';

export interface RmspropOptions {
  alpha?: number; // default 0.99 (torch)
  eps?: number; // default 1e-8 (torch)
  centered?: boolean;
  momentum?: number;
  weightDecay?: number;
  decayFilter?: DecayFilter;
}

export class Rmsprop implements Optimizer {
  readonly kind = 'rmsprop';
  private readonly alpha: number;
  private readonly eps: number;
  private readonly centered: boolean;
  private readonly momentum: number;
  private readonly wd: number;
  private readonly decays: DecayFilter;
  private readonly state: NamedState;

  constructor(opts: RmspropOptions = {}) {
    this.alpha = opts.alpha ?? 0.99;
    this.eps = opts.eps ?? 1e-8;
    this.centered = opts.centered ?? false;
    this.momentum = opts.momentum ?? 0;
    this.wd = opts.weightDecay ?? 0;
    this.decays = opts.decayFilter ?? decayAllButBiasAndNorm;
    if (!(this.alpha >= 0 && this.alpha < 1)) throw new LmtuneError('CONFIG', `rmsprop: alpha must be in [0, 1), got ${this.alpha}`);
    if (!(this.eps > 0)) throw new LmtuneError('CONFIG', `rmsprop: eps must be > 0, got ${this.eps}`);
    if (!(this.momentum >= 0 && this.momentum < 1)) throw new LmtuneError('CONFIG', `rmsprop: momentum must be in [0, 1), got ${this.momentum}`);
    if (!(this.wd >= 0)) throw new LmtuneError('CONFIG', `rmsprop: weight decay must be >= 0, got ${this.wd}`);
    const slots = ['square_avg'];
    if (this.centered) slots.push('grad_avg');
    if (this.momentum > 0) slots.push('momentum_buffer');
    this.state = new NamedState('rmsprop', slots);
  }

  step(params: ParamList, grads: GradMap, lr: number): void {
    checkFiniteLr(lr, 'rmsprop');
    const alpha = this.alpha;
    const oneMinus = 1 - alpha;
    const eps = this.eps;
    const mu = this.momentum;
    for (const p of params) {
      const g = grads.get(p.name);
      if (g === undefined) continue;
      checkGradShape(p, g);
      const slots = this.state.ensure(p.name, g.length);
      const v = slots[0]!;
      const a = this.centered ? slots[1]! : null;
      const b = mu > 0 ? slots[slots.length - 1]! : null;
      const wd = this.decays(p.name) ? this.wd : 0;
      const x = p.data;
      for (let i = 0; i < x.length; i++) {
        const xi = x[i]!;
        const d = g[i]! + wd * xi;
        const vi = Math.fround(alpha * v[i]! + oneMinus * d * d);
        v[i] = vi;
        let s: number;
        if (a !== null) {
          const ai = Math.fround(alpha * a[i]! + oneMinus * d);
          a[i] = ai;
          s = Math.sqrt(vi - ai * ai) + eps;
        } else {
          s = Math.sqrt(vi) + eps;
        }
        if (b !== null) {
          const bi = Math.fround(mu * b[i]! + d / s);
          b[i] = bi;
          x[i] = xi - lr * bi;
        } else {
          x[i] = xi - (lr * d) / s;
        }
      }
      this.state.setStep(p.name, this.state.step(p.name) + 1);
    }
  }

  stateTensors(): Map<string, Float32Array> {
    return this.state.tensors();
  }

  stateScalars(): Record<string, number> {
    return this.state.scalars();
  }

  loadState(tensors: ReadonlyMap<string, Float32Array>, scalars: Readonly<Record<string, number>>): void {
    this.state.load(tensors, scalars);
  }
}
