/**
 * Simulators on the noisy quadratic (quadratic.ts): the discrete optimizers exactly as PyTorch steps them
 * (with or without SVAG), and Euler–Maruyama for the SDEs they approximate [P1, P2]. Many independent
 * replicas run side by side; the output is the mean and variance of x over replicas on a grid of SDE
 * times, so runs with different batch sizes or SVAG amplifications overlay.
 *
 * Randomness: replica r's j-th Gaussian at step k is element (k·draws + j)·R + r of a Philox stream named by
 * (seed, stream), so a run is reproducible bit for bit and independent of how it is chunked.
 */
import { LmtuneError } from '../util/errors.ts';
import { fillGaussian, seedKey } from '../util/rng.ts';
import { amplificationOf, isAdaptive, wdModeOf, type AdaptiveConfig, type OptimizerConfig } from './config.ts';
import { adaptiveSdeScales, checkProblem, effectiveCurvature, gradientNoiseVariance, sdePreconditioner, type NoisyQuadratic } from './quadratic.ts';
import { effectiveLr, timePerStep } from './rules.ts';
import { svagCoefficients } from './svag.ts';

export interface SimulationOptions {
  /** Independent replicas (Monte Carlo sample size). */
  replicas: number;
  seed: number;
  /** Names the random stream; runs meant to be independent need different streams. Default: derived from the label. */
  stream?: number;
  /** SDE time to simulate to. Default: cfg.steps·τ; one of them is required. */
  horizon?: number;
  /** Number of recorded time points (including t = 0). Default 101. */
  points?: number;
  /**
   * Start RMSprop's second moment at its noise level (v₀ = a·s²/B, SDE u₀ = Σ) instead of 0 (PyTorch).
   * Adam always starts at 0 and uses bias correction, as PyTorch does.
   */
  warmSecondMoment?: boolean;
  /** Euler–Maruyama steps per optimizer step of the a = 1 config (dt = τ/substeps). Default 16. */
  substeps?: number;
  label?: string;
}

export interface Trajectory {
  label: string;
  /** SDE time of each record. */
  time: Float64Array;
  /** Optimizer step (or EM step) of each record. */
  step: Float64Array;
  mean: Float64Array;
  variance: Float64Array;
  /** E f(x) = h·(mean² + variance)/2. */
  loss: Float64Array;
  replicas: number;
}

function resolveSteps(cfg: OptimizerConfig, opts: SimulationOptions): { steps: number; horizon: number } {
  const tau = timePerStep(cfg);
  const horizon = opts.horizon ?? (cfg.steps !== undefined ? cfg.steps * tau : NaN);
  if (!(horizon > 0)) throw new LmtuneError('CONFIG', 'simulation needs a horizon (SDE time) or cfg.steps');
  const steps = Math.round(horizon / tau);
  if (steps < 1) throw new LmtuneError('CONFIG', `horizon ${horizon} is shorter than one step (τ = ${tau})`);
  if (steps > 5e7) throw new LmtuneError('CONFIG', `simulation of ${steps} steps is too long; shorten the horizon`);
  return { steps, horizon };
}

function checkReplicas(opts: SimulationOptions): void {
  if (!Number.isInteger(opts.replicas) || opts.replicas < 2) throw new LmtuneError('CONFIG', `replicas must be an integer ≥ 2, got ${opts.replicas}`);
}

/** Steps at which to record so that records of runs with different τ fall on the same SDE times. */
function recordSteps(steps: number, points: number): number[] {
  const n = Math.max(2, Math.min(points, steps + 1));
  const out: number[] = [];
  for (let j = 0; j < n; j++) {
    const k = Math.round((j * steps) / (n - 1));
    if (out.length === 0 || k !== out[out.length - 1]) out.push(k);
  }
  return out;
}

class Recorder {
  readonly time: number[] = [];
  readonly step: number[] = [];
  readonly mean: number[] = [];
  readonly variance: number[] = [];
  private next = 0;
  constructor(
    private readonly at: number[],
    private readonly dt: number,
    private readonly h: number,
  ) {}

  maybe(k: number, x: Float64Array): void {
    if (this.next >= this.at.length || this.at[this.next] !== k) return;
    this.next++;
    let s = 0;
    for (let i = 0; i < x.length; i++) s += x[i]!;
    const m = s / x.length;
    let ss = 0;
    for (let i = 0; i < x.length; i++) ss += (x[i]! - m) * (x[i]! - m);
    const v = ss / (x.length - 1);
    if (!Number.isFinite(m) || !Number.isFinite(v)) throw new LmtuneError('NUMERIC', `simulation diverged at step ${k} (mean ${m}, variance ${v})`, 'Lower the learning rate.');
    this.time.push(k * this.dt);
    this.step.push(k);
    this.mean.push(m);
    this.variance.push(v);
  }

  done(label: string, replicas: number): Trajectory {
    const loss = this.mean.map((m, i) => (this.h * (m * m + this.variance[i]!)) / 2);
    return {
      label,
      time: Float64Array.from(this.time),
      step: Float64Array.from(this.step),
      mean: Float64Array.from(this.mean),
      variance: Float64Array.from(this.variance),
      loss: Float64Array.from(loss),
      replicas,
    };
  }
}

function streamOf(opts: SimulationOptions, label: string): number {
  return opts.stream ?? seedKey(label)[0];
}

/** Human-readable label of a config. */
export function describeConfig(cfg: OptimizerConfig): string {
  const a = amplificationOf(cfg);
  const parts = [`${cfg.optimizer} B=${cfg.batch} lr=${cfg.lr.toPrecision(3)}`];
  if (cfg.optimizer === 'sgdm') parts.push(`β=${cfg.momentum.toPrecision(3)}`);
  if (cfg.optimizer === 'adam' || cfg.optimizer === 'adamw') parts.push(`β1=${cfg.beta1.toPrecision(3)}`);
  if (isAdaptive(cfg)) parts.push(`β2=${cfg.beta2.toPrecision(4)} ε=${cfg.eps.toPrecision(2)}`);
  if (a !== 1) parts.push(`SVAG a=${a}`);
  return parts.join(' ');
}

/**
 * Runs the discrete optimizer `cfg` on the quadratic. SVAG (cfg.svagAmplification = a > 1) draws two
 * noise samples per step and combines them with c₁, c₂. Weight decay follows cfg.wdMode.
 */
export function simulateOptimizer(cfg: OptimizerConfig, q: NoisyQuadratic, opts: SimulationOptions): Trajectory {
  checkProblem(q);
  checkReplicas(opts);
  const label = opts.label ?? describeConfig(cfg);
  const { steps } = resolveSteps(cfg, opts);
  const R = opts.replicas;
  const a = amplificationOf(cfg);
  const [c1, c2] = svagCoefficients(a);
  const draws = c2 === 0 ? 1 : 2;
  const sd = q.noise / Math.sqrt(cfg.batch); // one minibatch; SVAG's combination amplifies it
  const h = q.curvature;
  const l2 = wdModeOf(cfg) === 'coupledL2' ? (cfg.weightDecay ?? 0) : 0;
  const decay = wdModeOf(cfg) === 'decoupledTimesLr' ? cfg.lr * (cfg.weightDecay ?? 0) : wdModeOf(cfg) === 'decoupledAbsolute' ? (cfg.weightDecay ?? 0) : 0;
  const stream = streamOf(opts, label);
  const x = new Float64Array(R).fill(q.x0);
  const g = new Float64Array(R);
  const z1 = new Float64Array(R);
  const z2 = new Float64Array(R);
  const s1 = new Float64Array(R); // momentum buffer / first moment
  const s2 = new Float64Array(R); // second moment
  if (cfg.optimizer === 'rmsprop' && opts.warmSecondMoment) s2.fill(gradientNoiseVariance(cfg, q));
  const rec = new Recorder(recordSteps(steps, opts.points ?? 101), timePerStep(cfg), h);
  rec.maybe(0, x);
  for (let k = 0; k < steps; k++) {
    fillGaussian(z1, opts.seed, stream, k * draws * R);
    if (draws === 2) fillGaussian(z2, opts.seed, stream, (k * draws + 1) * R);
    for (let i = 0; i < R; i++) {
      const noise = draws === 2 ? c1 * z1[i]! + c2 * z2[i]! : z1[i]!;
      g[i] = h * x[i]! + sd * noise + l2 * x[i]!;
    }
    if (decay !== 0) for (let i = 0; i < R; i++) x[i]! *= 1 - decay;
    stepOptimizer(cfg, k, x, g, s1, s2);
    rec.maybe(k + 1, x);
  }
  return rec.done(label, R);
}

/** One PyTorch-semantics update of all replicas (k = 0 is the first step). */
function stepOptimizer(cfg: OptimizerConfig, k: number, x: Float64Array, g: Float64Array, s1: Float64Array, s2: Float64Array): void {
  const R = x.length;
  switch (cfg.optimizer) {
    case 'sgd':
      for (let i = 0; i < R; i++) x[i]! -= cfg.lr * g[i]!;
      return;
    case 'sgdm': {
      const b = cfg.momentum;
      if (cfg.form === 'ema') {
        for (let i = 0; i < R; i++) {
          s1[i] = b * s1[i]! + (1 - b) * g[i]!;
          x[i]! -= cfg.lr * s1[i]!;
        }
        return;
      }
      const u = 1 - (cfg.dampening ?? 0);
      for (let i = 0; i < R; i++) {
        // torch.optim.SGD: the first step sets the buffer to g (no dampening)
        s1[i] = k === 0 ? g[i]! : b * s1[i]! + u * g[i]!;
        x[i]! -= cfg.lr * (cfg.nesterov ? g[i]! + b * s1[i]! : s1[i]!);
      }
      return;
    }
    case 'rmsprop': {
      const b = cfg.beta2;
      const inside = cfg.epsPlacement === 'insideSqrt';
      for (let i = 0; i < R; i++) {
        s2[i] = b * s2[i]! + (1 - b) * g[i]! * g[i]!;
        const den = inside ? Math.sqrt(s2[i]! + cfg.eps) : Math.sqrt(s2[i]!) + cfg.eps;
        x[i]! -= (cfg.lr * g[i]!) / den;
      }
      return;
    }
    case 'adam':
    case 'adamw': {
      const b1 = cfg.beta1;
      const b2 = cfg.beta2;
      const bc1 = 1 - Math.pow(b1, k + 1);
      const bc2 = 1 - Math.pow(b2, k + 1);
      const inside = cfg.epsPlacement === 'insideSqrt';
      for (let i = 0; i < R; i++) {
        s1[i] = b1 * s1[i]! + (1 - b1) * g[i]!;
        s2[i] = b2 * s2[i]! + (1 - b2) * g[i]! * g[i]!;
        const vhat = s2[i]! / bc2;
        const den = inside ? Math.sqrt(vhat + cfg.eps) : Math.sqrt(vhat) + cfg.eps;
        x[i]! -= (cfg.lr * s1[i]!) / bc1 / den;
      }
      return;
    }
  }
}

/**
 * Euler–Maruyama for the SDE that `cfg` approximates, on the quadratic:
 * - SGD/SGDM: dX = −(h + r)X dt + √(η_eff·a·s²/B) dW (SGDM → the SGD SDE with η_eff [P3]).
 * - RMSprop [P2]: dX = −P⁻¹(hX dt + σ₀ s dW) − rX dt, du = c(s² − u)dt, P = σ₀√u + ε₀.
 * - Adam [P2]: dX = −(√γ₂/γ₁)P⁻¹m dt − rX dt, dm = c₁(hX − m)dt + σ₀c₁ s dW, du = c₂(s² − u)dt,
 *   γᵢ = 1 − e^{−cᵢt}, P = σ₀√u + ε₀√γ₂.
 * (h includes coupled L2; r is the decoupled decay per unit SDE time.) dt = τ/substeps. The SDE is
 * driven by the "noise-dominated" u equation (the (∇f)² term in v is dropped, as in P2).
 */
export function simulateSde(cfg: OptimizerConfig, q: NoisyQuadratic, opts: SimulationOptions): Trajectory {
  checkProblem(q);
  checkReplicas(opts);
  const label = opts.label ?? `SDE of ${describeConfig(cfg)}`;
  const substeps = opts.substeps ?? 16;
  if (!Number.isInteger(substeps) || substeps < 1) throw new LmtuneError('CONFIG', `substeps must be a positive integer, got ${substeps}`);
  const tau = timePerStep(cfg);
  const { horizon } = resolveSteps(cfg, opts);
  const dt = tau / substeps;
  const n = Math.round(horizon / dt);
  const R = opts.replicas;
  const h = effectiveCurvature(cfg, q);
  const delta = wdModeOf(cfg) === 'decoupledTimesLr' ? cfg.lr * (cfg.weightDecay ?? 0) : wdModeOf(cfg) === 'decoupledAbsolute' ? (cfg.weightDecay ?? 0) : 0;
  const r = delta / tau;
  const stream = streamOf(opts, label);
  const x = new Float64Array(R).fill(q.x0);
  const z = new Float64Array(R);
  const sdt = Math.sqrt(dt);
  const rec = new Recorder(recordSteps(n, opts.points ?? 101), dt, q.curvature);
  rec.maybe(0, x);
  if (!isAdaptive(cfg)) {
    const diff = Math.sqrt(effectiveLr(cfg) * gradientNoiseVariance(cfg, q));
    for (let k = 0; k < n; k++) {
      fillGaussian(z, opts.seed, stream, k * R);
      for (let i = 0; i < R; i++) x[i] = x[i]! - (h + r) * x[i]! * dt + diff * sdt * z[i]!;
      rec.maybe(k + 1, x);
    }
    return rec.done(label, R);
  }
  const c = cfg as AdaptiveConfig;
  const { sigma0, eps0 } = adaptiveSdeScales(c);
  const Sigma = q.noise * q.noise;
  const c2 = (1 - c.beta2) / tau;
  if (c.optimizer === 'rmsprop') {
    let u = opts.warmSecondMoment ? Sigma : 0;
    for (let k = 0; k < n; k++) {
      fillGaussian(z, opts.seed, stream, k * R);
      const P = sdePreconditioner(c, u, sigma0, eps0);
      for (let i = 0; i < R; i++) x[i] = x[i]! - ((h * x[i]! * dt + sigma0 * q.noise * sdt * z[i]!) / P) - r * x[i]! * dt;
      u += c2 * (Sigma - u) * dt;
      rec.maybe(k + 1, x);
    }
    return rec.done(label, R);
  }
  const c1 = (1 - c.beta1) / tau;
  const m = new Float64Array(R);
  let u = 0;
  for (let k = 0; k < n; k++) {
    fillGaussian(z, opts.seed, stream, k * R);
    const t1 = (k + 1) * dt;
    // m and u first, then x with the bias corrections at the new time (as discrete Adam does)
    for (let i = 0; i < R; i++) m[i] = m[i]! + c1 * (h * x[i]! - m[i]!) * dt + sigma0 * c1 * q.noise * sdt * z[i]!;
    u += c2 * (Sigma - u) * dt;
    const g1 = -Math.expm1(-c1 * t1);
    const g2 = -Math.expm1(-c2 * t1);
    const P = sigma0 * Math.sqrt(u) + (c.epsPlacement === 'insideSqrt' ? 0 : eps0 * Math.sqrt(g2));
    const Pin = c.epsPlacement === 'insideSqrt' ? Math.sqrt(sigma0 * sigma0 * u + eps0 * eps0 * g2) : P;
    const scale = Math.sqrt(g2) / g1 / Pin;
    for (let i = 0; i < R; i++) x[i] = x[i]! - scale * m[i]! * dt - r * x[i]! * dt;
    rec.maybe(k + 1, x);
  }
  return rec.done(label, R);
}
