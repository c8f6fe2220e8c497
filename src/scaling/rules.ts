/**
 * Batch-size scaling rules as SDE-preserving maps [P1 Li–Malladi–Arora 2021, P2 Malladi et al. 2022,
 * P3 Wang et al. 2023; spec ../shared/specs/sde-scaling-svag-momentum.md].
 *
 * The one idea behind every rule here: an optimizer at small learning rate follows an SDE whose
 * coefficients are a few combinations of the hyperparameters (the "SDE invariants"). Changing the batch
 * by κ divides the noise covariance by κ; the rule is whatever change of the other hyperparameters puts
 * every invariant back. So the code does not hard-wire "lr × √κ": it names the invariants
 * (`sdeInvariants`) and applies the one map that keeps all of them, and the tests check that they are
 * kept. SVAG (svag.ts) is the same map with κ = 1/a applied to amplified noise instead of a new batch.
 *
 * SDE time per optimizer step τ:  SGD τ = η;  SGDM τ = η_eff = γ(1−d)/(1−β);  RMSprop/Adam τ = η².
 */
import { LmtuneError } from '../util/errors.ts';
import {
  amplificationOf,
  isAdaptive,
  validateConfig,
  wdModeOf,
  type AdamConfig,
  type AdaptiveConfig,
  type BetaMap,
  type MomentumForm,
  type OptimizerConfig,
  type RmspropConfig,
  type SgdConfig,
  type SgdmConfig,
} from './config.ts';

/** What to do with the SGDM momentum under the LSR: keep β (Goyal et al., P3) or β^κ. */
export type MomentumMap = 'keep' | 'power';

export interface RuleOptions {
  /** β map for RMSprop/Adam. Default `linear` (the paper's rule). */
  betaMap?: BetaMap;
  /** β map for SGDM. Default `keep`. */
  momentumMap?: MomentumMap;
  /** Warn when a translated 1 − β exceeds this (the SDE needs 1 − β small). Default 0.1. */
  betaWarnThreshold?: number;
}

export interface InvariantCheck {
  name: string;
  description: string;
  before: number;
  after: number;
}

export interface ScaleResult<C extends OptimizerConfig = OptimizerConfig> {
  rule: 'linear' | 'square-root';
  kappa: number;
  from: C;
  config: C;
  /** Every SDE invariant of the translated config, with its value before and after (equal up to rounding). */
  invariants: InvariantCheck[];
  warnings: string[];
  /** Facts the user should know that are not problems (conventions used, unverified parts). */
  notes: string[];
}

// ---------------------------------------------------------------------------------------------------
// SGDM ↔ SGD (P3)

/** η_eff = γ(1 − d)/(1 − β): the SGD learning rate that PyTorch-form SGDM(γ, β, d) approximates [P3]. */
export function sgdmEffectiveLr(lr: number, momentum: number, dampening = 0): number {
  return (lr * (1 - dampening)) / (1 - momentum);
}

/** Inverse of `sgdmEffectiveLr`: the PyTorch γ that gives effective learning rate η. */
export function sgdmLrFromEffective(effectiveLr: number, momentum: number, dampening = 0): number {
  return (effectiveLr * (1 - momentum)) / (1 - dampening);
}

/**
 * The learning rate in the SGD-SDE sense: SGD lr; SGDM η_eff (EMA-form lr, or the PyTorch conversion).
 * RMSprop/Adam have no such number (their SDE runs on t = kη²), so they are rejected.
 */
export function effectiveLr(cfg: OptimizerConfig): number {
  switch (cfg.optimizer) {
    case 'sgd':
      return cfg.lr;
    case 'sgdm':
      return cfg.form === 'ema' ? cfg.lr : sgdmEffectiveLr(cfg.lr, cfg.momentum, cfg.dampening ?? 0);
    default:
      throw new LmtuneError('UNSUPPORTED', `effectiveLr is defined for sgd/sgdm, not ${cfg.optimizer}`);
  }
}

/** SDE time advanced by one optimizer step. */
export function timePerStep(cfg: OptimizerConfig): number {
  return isAdaptive(cfg) ? cfg.lr * cfg.lr : effectiveLr(cfg);
}

/** SDE time reached after `step` steps: k·η (SGD), k·η_eff (SGDM), k·η² (RMSprop/Adam). */
export function sdeTime(cfg: OptimizerConfig, step: number): number {
  return step * timePerStep(cfg);
}

/** Per-step multiplicative decay δ that decoupled weight decay applies (x ← (1 − δ)x); 0 for coupled L2. */
function decayPerStep(cfg: OptimizerConfig): number {
  const wd = cfg.weightDecay ?? 0;
  switch (wdModeOf(cfg)) {
    case 'coupledL2':
      return 0;
    case 'decoupledTimesLr':
      return cfg.lr * wd;
    case 'decoupledAbsolute':
      return wd;
  }
}

/** The weightDecay value that produces per-step decay δ for a config with this lr and mode. */
function weightDecayForDecay(cfg: OptimizerConfig, delta: number): number {
  return wdModeOf(cfg) === 'decoupledTimesLr' ? delta / cfg.lr : delta;
}

/** Rewrites SGDM between its PyTorch and EMA forms without changing the iterates (or their SDE). */
export function sgdmToForm(cfg: SgdmConfig, form: MomentumForm): SgdmConfig {
  validateConfig(cfg);
  if (cfg.form === form) return { ...cfg };
  if (form === 'ema' && cfg.nesterov) {
    throw new LmtuneError('UNSUPPORTED', 'Nesterov SGDM has no EMA form here; only its leading-order effective lr (sgdmEffectiveLr) carries over');
  }
  const eta = effectiveLr(cfg);
  const out: SgdmConfig = { ...cfg, form, lr: form === 'ema' ? eta : sgdmLrFromEffective(eta, cfg.momentum, 0) };
  delete out.dampening;
  if (cfg.weightDecay !== undefined) out.weightDecay = weightDecayForDecay(out, decayPerStep(cfg));
  return out;
}

/**
 * The plain-SGD config that SGDM approximates at small learning rate [P3]: lr = η_eff, same batch,
 * steps and schedule (SDE time per step is η_eff for both), same per-step decoupled decay.
 */
export function sgdmAsSgd(cfg: SgdmConfig): SgdConfig {
  validateConfig(cfg);
  const { momentum: _m, form: _f, dampening: _d, nesterov: _n, ...common } = cfg;
  const out: SgdConfig = { ...common, optimizer: 'sgd', lr: effectiveLr(cfg) };
  if (cfg.weightDecay !== undefined) out.weightDecay = weightDecayForDecay(out, decayPerStep(cfg));
  return out;
}

/** The SGDM config with momentum β whose effective learning rate equals the given SGD's lr. */
export function sgdAsSgdm(cfg: SgdConfig, momentum: number, form: MomentumForm = 'pytorch'): SgdmConfig {
  validateConfig(cfg);
  const out: SgdmConfig = { ...cfg, optimizer: 'sgdm', momentum, form, lr: form === 'ema' ? cfg.lr : sgdmLrFromEffective(cfg.lr, momentum) };
  validateConfig(out);
  if (cfg.weightDecay !== undefined) out.weightDecay = weightDecayForDecay(out, decayPerStep(cfg));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// SDE invariants

export interface InvariantOptions {
  betaMap?: BetaMap;
  momentumMap?: MomentumMap;
}

interface Invariant {
  value: number;
  description: string;
}

/**
 * The quantities that determine the SDE, as functions of the hyperparameters. Noise enters through the
 * "noise batch" B/a (a = SVAG amplification): Σ_B ∝ 1/B, amplified a-fold.
 *
 * The β invariant depends on the β map: the linear map keeps c = (1−β)/τ exactly, the power map keeps
 * −ln β/τ exactly (the continuous-time EMA rate); the two agree to first order in 1 − β.
 */
export function describeInvariants(cfg: OptimizerConfig, opts: InvariantOptions = {}): Record<string, Invariant> {
  validateConfig(cfg);
  const noiseBatch = cfg.batch / amplificationOf(cfg);
  const tau = timePerStep(cfg);
  const out: Record<string, Invariant> = {};
  const rate = (beta: number, map: BetaMap): number => (map === 'linear' ? 1 - beta : -Math.log(beta)) / tau;
  const rateText = (name: string, map: BetaMap): string =>
    map === 'linear' ? `(1 − ${name})/τ: EMA rate in SDE time (paper's c)` : `−ln(${name})/τ: EMA rate in SDE time (power-map form of c)`;
  if (isAdaptive(cfg)) {
    const map = opts.betaMap ?? 'linear';
    out.sigma0 = { value: cfg.lr / Math.sqrt(noiseBatch), description: 'η/√(B/a) ∝ σ₀ = ση: noise level of the SDE' };
    out.eps0 =
      cfg.epsPlacement === 'insideSqrt'
        ? { value: cfg.eps * cfg.lr * cfg.lr, description: 'ε·η² (ε inside √): ε₀² of the SDE' }
        : { value: cfg.eps * cfg.lr, description: 'ε·η = ε₀ of the SDE' };
    if (cfg.optimizer !== 'rmsprop') out.c1 = { value: rate(cfg.beta1, map), description: rateText('β1', map) };
    out.c2 = { value: rate(cfg.beta2, map), description: rateText('β2', map) };
  } else {
    out.noise = { value: tau / noiseBatch, description: `${cfg.optimizer === 'sgd' ? 'η' : 'η_eff'}/(B/a) ∝ ηΣ_B: diffusion of the SDE` };
    if (cfg.optimizer === 'sgdm' && (opts.momentumMap ?? 'keep') === 'power') {
      out.momentumRate = { value: rate(cfg.momentum, 'power'), description: '−ln(β)/η_eff: momentum EMA rate in SDE time' };
    }
  }
  const timeText = isAdaptive(cfg) ? 'k·η²' : cfg.optimizer === 'sgd' ? 'k·η' : 'k·η_eff';
  if (cfg.steps !== undefined) out.horizon = { value: cfg.steps * tau, description: `SDE time of the run (${timeText})` };
  if (cfg.warmupSteps !== undefined) out.warmup = { value: cfg.warmupSteps * tau, description: 'SDE time of the warmup' };
  (cfg.milestones ?? []).forEach((m, i) => {
    out[`milestone${i}`] = { value: m * tau, description: `SDE time of LR milestone ${i}` };
  });
  if (cfg.weightDecay !== undefined) {
    out.weightDecay =
      wdModeOf(cfg) === 'coupledL2'
        ? { value: cfg.weightDecay, description: 'coupled L2 λ: part of the loss, so it is kept as is' }
        : { value: decayPerStep(cfg) / tau, description: 'decoupled decay per unit SDE time (per-step decay / τ)' };
  }
  return out;
}

/** `describeInvariants` without the descriptions. */
export function sdeInvariants(cfg: OptimizerConfig, opts: InvariantOptions = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(describeInvariants(cfg, opts))) out[k] = v.value;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The map

/** Carries β to a noise scale κ times smaller: linear 1 − κ(1−β), or power β^κ. Throws when linear fails. */
export function mapBeta(beta: number, kappa: number, map: BetaMap, field: string): number {
  if (map === 'power') return Math.pow(beta, kappa);
  const oneMinus = kappa * (1 - beta);
  if (oneMinus >= 1 - 1e-12) {
    const power = Math.pow(beta, kappa);
    throw new LmtuneError(
      'CONFIG',
      `${field} = ${beta} with κ = ${fmt(kappa)}: the linear β map gives ${field}' = 1 − κ(1 − ${field}) = ${fmt(1 - oneMinus)} ≤ 0 ` +
        `(κ(1 − ${field}) = ${fmt(oneMinus)} ≥ 1), which is not an EMA`,
      `Use --beta-map power (${field}' = ${field}^κ = ${fmt(power)}), or move the baseline to a larger batch so that κ is smaller.`,
    );
  }
  return 1 - oneMinus;
}

function fmt(x: number): string {
  return Number(x.toPrecision(6)).toString();
}

interface NoiseChange {
  /** The noise covariance is divided by this factor (κ for a batch change, 1/a for SVAG). */
  kappa: number;
  batch: number;
  amplification: number;
}

/**
 * Applies the invariant-preserving map for a noise covariance divided by `change.kappa`. Shared by
 * `scaleBatch` (new batch) and `svagConfig` (same batch, amplified noise). Pushes warnings.
 */
export function transformForNoise<C extends OptimizerConfig>(cfg: C, change: NoiseChange, opts: RuleOptions, warnings: string[]): C {
  const k = change.kappa;
  const thr = opts.betaWarnThreshold ?? 0.1;
  const warnBeta = (field: string, before: number, after: number): void => {
    if (1 - after > thr && after < before) {
      warnings.push(
        `${field}' = ${fmt(after)}: 1 − ${field}' = ${fmt(1 - after)} > ${thr}. The SDE (and the rule) assume 1 − β is small; ` +
          'expect the translated run to differ. Consider a larger baseline batch.',
      );
    }
  };
  const base = { ...cfg, batch: change.batch } as C;
  if (change.amplification === 1) delete base.svagAmplification;
  else base.svagAmplification = change.amplification;
  let out: OptimizerConfig;
  switch (cfg.optimizer) {
    case 'sgd':
      out = { ...(base as SgdConfig), lr: cfg.lr * k };
      break;
    case 'sgdm': {
      const b = base as SgdmConfig;
      const map = opts.momentumMap ?? 'keep';
      const momentum = map === 'power' ? Math.pow(cfg.momentum, k) : cfg.momentum;
      if (map === 'power') warnBeta('momentum', cfg.momentum, momentum);
      const eta = effectiveLr(cfg) * k;
      const lr = cfg.form === 'ema' ? eta : sgdmLrFromEffective(eta, momentum, cfg.dampening ?? 0);
      out = { ...b, momentum, lr };
      break;
    }
    default: {
      const c = cfg as AdaptiveConfig;
      const map = opts.betaMap ?? 'linear';
      const eps = c.epsPlacement === 'insideSqrt' ? c.eps / k : c.eps / Math.sqrt(k);
      const beta2 = mapBeta(c.beta2, k, map, 'beta2');
      warnBeta('beta2', c.beta2, beta2);
      if (c.optimizer === 'rmsprop') {
        out = { ...(base as RmspropConfig), lr: c.lr * Math.sqrt(k), beta2, eps };
      } else {
        const beta1 = mapBeta(c.beta1, k, map, 'beta1');
        warnBeta('beta1', c.beta1, beta1);
        out = { ...(base as AdamConfig), lr: c.lr * Math.sqrt(k), beta1, beta2, eps };
      }
    }
  }
  // Schedules in steps shrink with the steps (epochs stay constant): SDE time per step grew by κ.
  if (cfg.steps !== undefined) out.steps = cfg.steps / k;
  if (cfg.warmupSteps !== undefined) out.warmupSteps = cfg.warmupSteps / k;
  if (cfg.milestones !== undefined) out.milestones = cfg.milestones.map((m) => m / k);
  if (cfg.weightDecay !== undefined && wdModeOf(cfg) !== 'coupledL2') {
    // keep the decay per unit SDE time: δ'/τ' = δ/τ
    const delta = (decayPerStep(cfg) * timePerStep(out)) / timePerStep(cfg);
    out.weightDecay = weightDecayForDecay(out, delta);
  }
  for (const [field, v] of [['steps', out.steps], ['warmupSteps', out.warmupSteps]] as const) {
    if (v !== undefined && !nearInteger(v)) warnings.push(`${field}' = ${fmt(v)} is not an integer; round to ${Math.round(v)} (SDE time changes by ${fmt(Math.abs(Math.round(v) / v - 1) * 100)}%).`);
  }
  if (out.milestones?.some((m) => !nearInteger(m))) warnings.push(`milestones' = [${out.milestones.map(fmt).join(', ')}] are not all integers; round them.`);
  return validateConfig(out as C);
}

function nearInteger(v: number): boolean {
  return Math.abs(v - Math.round(v)) <= 1e-9 * Math.max(1, Math.abs(v));
}

function checks(before: OptimizerConfig, after: OptimizerConfig, opts: InvariantOptions): InvariantCheck[] {
  const a = describeInvariants(before, opts);
  const b = describeInvariants(after, opts);
  return Object.keys(a).map((name) => ({ name, description: a[name]!.description, before: a[name]!.value, after: b[name]!.value }));
}

/**
 * Translates `cfg` from batch B to batch κB so that the SDE is unchanged:
 * - SGD (LSR [P1]): η → κη.
 * - SGDM (LSR): η_eff → κη_eff with β kept (default; P3/Goyal) or β → β^κ (`momentumMap: 'power'`).
 * - RMSprop/Adam (SRSR [P2]): η → √κη, 1−β → κ(1−β) (or β^κ), ε → ε/√κ (ε/κ when inside the √).
 * - All: steps, warmup and milestones (in steps) → ÷κ, so epochs are constant; coupled L2 λ unchanged;
 *   decoupled decay keeps its rate per unit SDE time (AdamW ηλ: λ → √κλ; absolute: λ → κλ).
 * `kappa` may be < 1 (to a smaller batch). Throws LmtuneError for impossible requests.
 */
export function scaleBatch<C extends OptimizerConfig>(cfg: C, kappa: number, opts: RuleOptions = {}): ScaleResult<C> {
  validateConfig(cfg);
  if (!Number.isFinite(kappa) || kappa <= 0) {
    throw new LmtuneError('CONFIG', `batch multiplier κ must be a positive finite number, got ${kappa}`, 'κ = target batch / current batch (--to-batch / --batch).');
  }
  const warnings: string[] = [];
  const notes: string[] = [];
  const newBatch = cfg.batch * kappa;
  if (!nearInteger(newBatch)) warnings.push(`target batch κB = ${fmt(newBatch)} is not an integer.`);
  const config = transformForNoise(cfg, { kappa, batch: newBatch, amplification: amplificationOf(cfg) }, opts, warnings);
  const invOpts: InvariantOptions = { betaMap: opts.betaMap ?? 'linear', momentumMap: opts.momentumMap ?? 'keep' };
  const rule = isAdaptive(cfg) ? 'square-root' : 'linear';
  if (rule === 'linear') {
    notes.push('The LSR keeps the SDE only while the run stays noise-dominated: κ ≤ κ_max ≈ N_B/G measured at the baseline (lmtune scale diagnose) [P1].');
    notes.push('The LSR also fails when κη reaches the curvature limit (discretization error grows like κηλ_max).');
  } else {
    if (invOpts.betaMap === 'power') notes.push("β map 'power' (β^κ) keeps −ln(β)/η² exactly; it equals the paper's 1 − κ(1−β) to first order in 1 − β.");
    notes.push('The SRSR assumes the noise dominates the squared gradient coordinate-wise; check with lmtune scale diagnose.');
  }
  if (cfg.optimizer === 'sgdm') {
    notes.push(
      invOpts.momentumMap === 'keep'
        ? 'Momentum β kept (Goyal et al.; P3): the momentum time scale η_eff/(1−β) in SDE time grows κ×, harmless while it is short.'
        : 'Momentum β → β^κ keeps the momentum time scale in SDE time.',
    );
  }
  if (cfg.weightDecay !== undefined && cfg.weightDecay > 0 && isAdaptive(cfg) && wdModeOf(cfg) === 'decoupledTimesLr') {
    notes.push('Decoupled weight decay λ → √κλ keeps the decay per unit SDE time; derived here, not stated in P2 (see docs/scaling.md).');
  }
  return { rule, kappa, from: cfg, config, invariants: checks(cfg, config, invOpts), warnings, notes };
}

/** Convenience: scale from `cfg.batch` to `targetBatch`. */
export function scaleToBatch<C extends OptimizerConfig>(cfg: C, targetBatch: number, opts: RuleOptions = {}): ScaleResult<C> {
  if (!Number.isFinite(targetBatch) || targetBatch <= 0) {
    throw new LmtuneError('CONFIG', `target batch (--to-batch) must be a positive number, got ${targetBatch}`);
  }
  validateConfig(cfg);
  return scaleBatch(cfg, targetBatch / cfg.batch, opts);
}

export { checks as invariantChecks };
