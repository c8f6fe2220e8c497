/**
 * SGD with momentum in the two conventions the SGDM papers compare (specs/sde-scaling-svag-momentum.md §2.6):
 *
 * PyTorch form (torch.optim.SGD, slot `momentum_buffer`), with d = g + wd·x:
 *   first step of a parameter: b = d          (torch clones the gradient; dampening is not applied)
 *   later steps:               b = β·b + (1 − dampening)·d
 *   u = nesterov ? d + β·b : b;   x ← x − γ·u
 * EMA form (slot `exp_avg`), m starting at 0, no special first step:
 *   m = β·m + (1 − β)·d
 *   u = nesterov ? (1 − β)·d + β·m : m;   x ← x − η·u
 * With dampening 0 the two give the same iterates when η = γ/(1 − β): b_t = m_t/(1 − β) for every t.
 * The buffer is stored in float32 (rounded once per step); u and the new x are computed in float64.
 */
import { LmtuneError } from '../util/errors.ts';
import { decayAllButBiasAndNorm } from './decay.ts';
import { NamedState } from './state.ts';
import { checkFiniteLr, checkGradShape, type DecayFilter, type GradMap, type Optimizer, type ParamList } from './types.ts';

import type { MomentumForm } from './options.ts';
export type { MomentumForm };

export interface SgdMomentumOptions {
  beta: number;
  form?: MomentumForm; // default 'pytorch'
  dampening?: number; // PyTorch form only
  nesterov?: boolean;
  weightDecay?: number; // coupled (added to the gradient), as in torch.optim.SGD
  decayFilter?: DecayFilter;
}

export interface MomentumCoefs {
  form: MomentumForm;
  beta: number;
  dampening: number;
  nesterov: boolean;
}

/** One momentum update over n elements; `first` selects torch's buffer initialisation (PyTorch form only). */
export function momentumKernel(
  x: Float32Array,
  buf: Float32Array,
  xOff: number,
  g: Float32Array | Float64Array,
  gOff: number,
  n: number,
  lr: number,
  wd: number,
  c: MomentumCoefs,
  first: boolean,
): void {
  const beta = c.beta;
  if (c.form === 'pytorch') {
    const keep = 1 - c.dampening;
    for (let i = 0; i < n; i++) {
      const xi = x[xOff + i]!;
      const d = g[gOff + i]! + wd * xi;
      const b = first ? Math.fround(d) : Math.fround(beta * buf[xOff + i]! + keep * d);
      buf[xOff + i] = b;
      const u = c.nesterov ? d + beta * b : b;
      x[xOff + i] = xi - lr * u;
    }
  } else {
    const oneMinus = 1 - beta;
    for (let i = 0; i < n; i++) {
      const xi = x[xOff + i]!;
      const d = g[gOff + i]! + wd * xi;
      const m = Math.fround(beta * buf[xOff + i]! + oneMinus * d);
      buf[xOff + i] = m;
      const u = c.nesterov ? oneMinus * d + beta * m : m;
      x[xOff + i] = xi - lr * u;
    }
  }
}

export function checkMomentumCoefs(c: MomentumCoefs, who: string): void {
  if (!(c.beta >= 0 && c.beta < 1)) throw new LmtuneError('CONFIG', `${who}: momentum β must be in [0, 1), got ${c.beta}`);
  if (!(c.dampening >= 0 && c.dampening <= 1)) throw new LmtuneError('CONFIG', `${who}: dampening must be in [0, 1], got ${c.dampening}`);
  if (c.form === 'ema' && c.dampening !== 0) {
    throw new LmtuneError('CONFIG', `${who}: dampening applies to the PyTorch form only (the EMA form always weights the gradient by 1 − β)`);
  }
  if (c.nesterov && c.form === 'pytorch' && (c.beta === 0 || c.dampening !== 0)) {
    throw new LmtuneError('CONFIG', `${who}: Nesterov momentum requires β > 0 and dampening 0 (as in torch.optim.SGD)`);
  }
}

/** The slot a momentum form stores its buffer in (torch's name for the PyTorch form). */
export function momentumSlot(form: MomentumForm): string {
  return form === 'pytorch' ? 'momentum_buffer' : 'exp_avg';
}

export class SgdMomentum implements Optimizer {
  readonly kind: string;
  private readonly c: MomentumCoefs;
  private readonly wd: number;
  private readonly decays: DecayFilter;
  private readonly state: NamedState;

  constructor(opts: SgdMomentumOptions) {
    this.c = { form: opts.form ?? 'pytorch', beta: opts.beta, dampening: opts.dampening ?? 0, nesterov: opts.nesterov ?? false };
    this.kind = `sgdm-${this.c.form}`;
    checkMomentumCoefs(this.c, this.kind);
    this.wd = opts.weightDecay ?? 0;
    if (!(this.wd >= 0)) throw new LmtuneError('CONFIG', `${this.kind}: weight decay must be >= 0, got ${this.wd}`);
    this.decays = opts.decayFilter ?? decayAllButBiasAndNorm;
    this.state = new NamedState(this.kind, [momentumSlot(this.c.form)]);
  }

  step(params: ParamList, grads: GradMap, lr: number): void {
    checkFiniteLr(lr, this.kind);
    for (const p of params) {
      const g = grads.get(p.name);
      if (g === undefined) continue;
      checkGradShape(p, g);
      const [buf] = this.state.ensure(p.name, g.length);
      const t = this.state.step(p.name);
      momentumKernel(p.data, buf!, 0, g, 0, g.length, lr, this.decays(p.name) ? this.wd : 0, this.c, t === 0);
      this.state.setStep(p.name, t + 1);
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

/** The EMA-form learning rate that reproduces the PyTorch form with (γ, β, dampening): γ(1 − d)/(1 − β). */
export function emaLrFromPytorch(gamma: number, beta: number, dampening = 0): number {
  return (gamma * (1 - dampening)) / (1 - beta);
}
