/**
 * Plain SGD with coupled (L2) weight decay, torch.optim.SGD with momentum=0:
 *   d = g + wd·x   (wd only for parameters the decay filter selects)
 *   x ← x − lr·d
 * Every element is computed in float64 from the float32 values and rounded once when written back.
 */
import { LmtuneError } from '../util/errors.ts';
import { decayAllButBiasAndNorm } from './decay.ts';
import { checkFiniteLr, checkGradShape, type DecayFilter, type GradMap, type Optimizer, type ParamList } from './types.ts';

export interface SgdOptions {
  weightDecay?: number;
  decayFilter?: DecayFilter;
}

/** x[xOff+i] ← x − lr·(g[gOff+i] + wd·x) for i < n. Shared with MeZO's update pass. */
export function sgdKernel(x: Float32Array, xOff: number, g: Float32Array | Float64Array, gOff: number, n: number, lr: number, wd: number): void {
  for (let i = 0; i < n; i++) {
    const xi = x[xOff + i]!;
    x[xOff + i] = xi - lr * (g[gOff + i]! + wd * xi);
  }
}

export class Sgd implements Optimizer {
  readonly kind = 'sgd';
  private readonly wd: number;
  private readonly decays: DecayFilter;

  constructor(opts: SgdOptions = {}) {
    this.wd = opts.weightDecay ?? 0;
    this.decays = opts.decayFilter ?? decayAllButBiasAndNorm;
    if (!(this.wd >= 0)) throw new LmtuneError('CONFIG', `sgd: weight decay must be >= 0, got ${this.wd}`);
  }

  step(params: ParamList, grads: GradMap, lr: number): void {
    checkFiniteLr(lr, 'sgd');
    for (const p of params) {
      const g = grads.get(p.name);
      if (g === undefined) continue;
      checkGradShape(p, g);
      sgdKernel(p.data, 0, g, 0, g.length, lr, this.decays(p.name) ? this.wd : 0);
    }
  }

  // SGD without momentum has no state.
  stateTensors(): Map<string, Float32Array> {
    return new Map();
  }

  stateScalars(): Record<string, number> {
    return {};
  }

  loadState(tensors: ReadonlyMap<string, Float32Array>, scalars: Readonly<Record<string, number>>): void {
    if (tensors.size > 0 || Object.keys(scalars).length > 0) {
      throw new LmtuneError('CHECKPOINT', 'sgd: the checkpoint holds optimizer state, but plain SGD has none', 'was it written by another optimizer?');
    }
  }
}
