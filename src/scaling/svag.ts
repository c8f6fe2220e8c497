/**
 * SVAG — Stochastic Variance Amplified Gradient [P1 Li–Malladi–Arora 2021; P2 for RMSprop/Adam].
 * (Not Balles & Hennig's "Stochastic Variance-Adapted Gradient", hence the long name.)
 *
 * Each step draws two independent minibatches and uses g = c₁g₁ + c₂g₂ with c₁,₂ = (1 ± √(2a−1))/2.
 * c₁ + c₂ = 1 keeps the mean; c₁² + c₂² = a multiplies the noise covariance by a. With the learning rate
 * and the other hyperparameters moved as if the batch had shrunk a-fold (the scaling rule with κ = 1/a),
 * the SDE is unchanged while the step count grows a-fold, so the discrete run converges to the SDE as
 * a → ∞ (weak error O(1/a) for SGD [P1]).
 *
 * The parameter here is always the covariance amplification a. P1 calls it ℓ for SGD (a = ℓ). For
 * RMSprop/Adam P2 is recalled to write the learning rate as η/ℓ, which means a = ℓ² (unverified; see
 * `amplificationFromPaperEll` and docs/scaling.md).
 */
import { LmtuneError } from '../util/errors.ts';
import { amplificationOf, isAdaptive, validateConfig, type OptimizerConfig, type OptimizerName } from './config.ts';
import { invariantChecks, sdeTime, transformForNoise, type InvariantCheck, type RuleOptions } from './rules.ts';

function checkAmplification(a: number): void {
  if (!Number.isFinite(a) || a < 1) {
    throw new LmtuneError('CONFIG', `SVAG amplification (--svag) must be a finite number ≥ 1, got ${a}`, 'a = 1 is the plain optimizer; SVAG amplifies noise, it cannot reduce it.');
  }
}

/** c₁,₂ = (1 ± √(2a − 1))/2. a = 1 gives exactly [1, 0]. */
export function svagCoefficients(a: number): [number, number] {
  checkAmplification(a);
  const r = Math.sqrt(2 * a - 1);
  return [(1 + r) / 2, (1 - r) / 2];
}

/** out = c₁·g1 + c₂·g2, elementwise; `out` may alias g1 or g2. Returns out. */
export function svagCombine<T extends Float32Array | Float64Array>(g1: T, g2: T, a: number, out?: T): T {
  if (g1.length !== g2.length) {
    throw new LmtuneError('SHAPE', `SVAG needs two gradients of the same length, got ${g1.length} and ${g2.length}`);
  }
  const [c1, c2] = svagCoefficients(a);
  const o = out ?? (new (g1.constructor as new (n: number) => T)(g1.length));
  if (o.length !== g1.length) throw new LmtuneError('SHAPE', `SVAG output has length ${o.length}, gradients ${g1.length}`);
  if (c2 === 0) {
    // a = 1: copy, so that SVAG at a = 1 is bit-for-bit plain SGD (0·g2 could turn Inf/NaN in g2 into NaN)
    if (o !== g1) o.set(g1);
    return o;
  }
  for (let i = 0; i < o.length; i++) o[i] = c1 * g1[i]! + c2 * g2[i]!;
  return o;
}

/**
 * The SVAG gradient estimator as an object the training loop holds: the coefficients (also usable as
 * loss weights, loss = c₁·L(b₁) + c₂·L(b₂) with one backward pass, as P1's code does) and `combine`.
 */
export class VarianceAmplifiedGradient {
  readonly amplification: number;
  readonly c1: number;
  readonly c2: number;

  constructor(amplification: number) {
    [this.c1, this.c2] = svagCoefficients(amplification);
    this.amplification = amplification;
  }

  /** Minibatches per step: 1 when a = 1 (plain optimizer), else 2. */
  get minibatchesPerStep(): 1 | 2 {
    return this.c2 === 0 ? 1 : 2;
  }

  /** Weights for the two minibatch losses. */
  lossWeights(): [number, number] {
    return [this.c1, this.c2];
  }

  combine<T extends Float32Array | Float64Array>(g1: T, g2: T, out?: T): T {
    return svagCombine(g1, g2, this.amplification, out);
  }
}

export interface SvagTranslation<C extends OptimizerConfig = OptimizerConfig> {
  amplification: number;
  from: C;
  /** Runs with `config.svagAmplification` = a·(previous amplification), same batch. */
  config: C;
  /** Steps, warmup and milestones (in steps) are multiplied by this (= a). */
  stepsMultiplier: number;
  /** Examples per step are 2B (two minibatches), so epochs grow 2a-fold (P1 multiplies max_epochs by 2ℓ). */
  epochsMultiplier: number;
  invariants: InvariantCheck[];
  warnings: string[];
  notes: string[];
}

/**
 * Hyperparameters of the SVAG run with covariance amplification `a` that targets the same SDE as `cfg`:
 * - SGD [P1]: η → η/a; coupled L2 unchanged (P1's code); steps × a.
 * - SGDM [I, from P3 Fig. 2]: η_eff → η_eff/a, β unchanged; steps × a. As a → ∞ the momentum time scale
 *   in SDE time vanishes and the run approaches the SGD SDE with η_eff.
 * - RMSprop/Adam [P2 / I]: η → η/√a, 1 − β → (1 − β)/a (linear) or β^{1/a} (power), ε → ε√a (ε·a inside √).
 */
export function svagConfig<C extends OptimizerConfig>(cfg: C, a: number, opts: RuleOptions = {}): SvagTranslation<C> {
  validateConfig(cfg);
  checkAmplification(a);
  const warnings: string[] = [];
  const notes: string[] = [];
  const config = transformForNoise(cfg, { kappa: 1 / a, batch: cfg.batch, amplification: amplificationOf(cfg) * a }, opts, warnings);
  if (cfg.optimizer === 'sgdm' && (opts.momentumMap ?? 'keep') === 'keep') {
    notes.push('SGDM under SVAG keeps β (inferred from P3 Fig. 2): it converges to the SGD SDE with η_eff, not to a momentum SDE.');
  }
  if (isAdaptive(cfg)) notes.push('Parametrized by covariance amplification a; if P2 writes η/ℓ, then a = ℓ² (unverified).');
  return {
    amplification: a,
    from: cfg,
    config,
    stepsMultiplier: a,
    epochsMultiplier: a === 1 ? 1 : 2 * a,
    invariants: invariantChecks(cfg, config, { betaMap: opts.betaMap ?? 'linear', momentumMap: opts.momentumMap ?? 'keep' }),
    warnings,
    notes,
  };
}

/**
 * Covariance amplification for a paper's ℓ: SGD/SGDM use a = ℓ (P1: lr η/ℓ). RMSprop/Adam: a = ℓ², on the
 * recollection that P2 writes the learning rate as η/ℓ (√a = ℓ); check against P2 before relying on it.
 */
export function amplificationFromPaperEll(optimizer: OptimizerName, ell: number): number {
  return optimizer === 'sgd' || optimizer === 'sgdm' ? ell : ell * ell;
}

/** "Effective steps" [P1]: step / a, the step count of the a = 1 run that reaches the same SDE time. */
export function effectiveSteps(step: number, amplification: number): number {
  return step / amplification;
}

/** SDE time after `step` steps of the (SVAG-translated) config; runs with different a overlay on it. */
export function svagSdeTime(cfg: OptimizerConfig, step: number): number {
  return sdeTime(cfg, step);
}

export interface SvagRun {
  amplification: number;
  /** SDE time of each record (use `svagSdeTime`). */
  time: ArrayLike<number>;
  /** The metric to compare (loss, accuracy, ...), one value per record. */
  metric: ArrayLike<number>;
}

export interface SvagConvergence {
  /** Per run: mean |metric − metric of the largest-a run| on the common time range, over that run's metric range. */
  gaps: { amplification: number; gap: number }[];
  /** The a = 1 run's gap: how far the plain optimizer is from the SDE proxy. */
  gapToBaseline: number;
  /** Gap between the two largest amplifications: has SVAG converged? */
  gapAmongLargest: number;
  converged: boolean;
  /** converged and the a = 1 run coincides with them: the plain run is in the SDE regime [P1 protocol, spec §3d]. */
  sdeRegime: boolean;
  tolerance: number;
}

/** Linear interpolation of (xs, ys) at x; xs increasing. */
function interp(xs: ArrayLike<number>, ys: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = xs.length - 1;
  if (x <= xs[0]!) return ys[0]!;
  if (x >= xs[hi]!) return ys[hi]!;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= x) lo = mid;
    else hi = mid;
  }
  const w = (x - xs[lo]!) / (xs[hi]! - xs[lo]!);
  return ys[lo]! * (1 - w) + ys[hi]! * w;
}

/**
 * The SVAG convergence test [P1, spec §3d]: runs with a ∈ {1, 2, 4, ...} from the same init, aligned by
 * SDE time. If the amplified runs agree with each other (the largest two within `tolerance`), SVAG has
 * converged to (a proxy of) the SDE; if the a = 1 run agrees with them too, the plain run is in the SDE
 * regime. Gaps are mean absolute differences on the common time range, relative to the range of the
 * largest-a run's metric, so the tolerance is scale-free.
 */
export function svagDiagnostic(runs: readonly SvagRun[], opts: { tolerance?: number } = {}): SvagConvergence {
  const tolerance = opts.tolerance ?? 0.05;
  if (runs.length < 3) throw new LmtuneError('CONFIG', `the SVAG convergence test needs a = 1 and at least two amplified runs, got ${runs.length} runs`);
  for (const r of runs) {
    if (r.time.length !== r.metric.length || r.time.length < 2) throw new LmtuneError('SHAPE', `SVAG run a = ${r.amplification}: time and metric need the same length ≥ 2`);
  }
  const sorted = [...runs].sort((x, y) => x.amplification - y.amplification);
  if (sorted[0]!.amplification !== 1) throw new LmtuneError('CONFIG', 'the SVAG convergence test needs the plain run (a = 1)');
  const ref = sorted[sorted.length - 1]!;
  let lo = -Infinity;
  let hi = Infinity;
  for (const r of sorted) {
    lo = Math.max(lo, r.time[0]!);
    hi = Math.min(hi, r.time[r.time.length - 1]!);
  }
  if (!(hi > lo)) throw new LmtuneError('CONFIG', 'SVAG runs share no SDE-time range; plot them against svagSdeTime');
  let mn = Infinity;
  let mx = -Infinity;
  for (let i = 0; i < ref.metric.length; i++) {
    mn = Math.min(mn, ref.metric[i]!);
    mx = Math.max(mx, ref.metric[i]!);
  }
  const scale = mx > mn ? mx - mn : Math.max(Math.abs(mx), 1e-300);
  const grid = 200;
  const gapTo = (r: SvagRun, other: SvagRun): number => {
    let s = 0;
    for (let j = 0; j <= grid; j++) {
      const t = lo + ((hi - lo) * j) / grid;
      s += Math.abs(interp(r.time, r.metric, t) - interp(other.time, other.metric, t));
    }
    return s / (grid + 1) / scale;
  };
  const gaps = sorted.map((r) => ({ amplification: r.amplification, gap: r === ref ? 0 : gapTo(r, ref) }));
  const gapAmongLargest = gapTo(sorted[sorted.length - 2]!, ref);
  const gapToBaseline = gaps[0]!.gap;
  const converged = gapAmongLargest <= tolerance;
  return { gaps, gapToBaseline, gapAmongLargest, converged, sdeRegime: converged && gapToBaseline <= tolerance, tolerance };
}
