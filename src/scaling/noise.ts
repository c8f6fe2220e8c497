/**
 * Gradient noise and signal at a fixed point, and the batch-size bound they imply.
 *
 * From K independent minibatch gradients g_k of size B at the same parameters (P1's code estimator):
 *   m₂ = (1/K)Σ‖g_k‖²,  Ĝ = (K‖ḡ‖² − m₂)/(K − 1)  (unbiased for G = ‖∇L‖²),
 *   N̂_B = m₂ − Ĝ = K/(K−1)·(m₂ − ‖ḡ‖²)  (unbiased for N_B = tr Σ_B).
 * The two-batch estimator (McCandlish et al. 2018) uses ‖g‖² at two batch sizes instead.
 *
 * The necessary condition for the SDE / LSR [P1]: the discrete run's equilibrium differs from the SDE's
 * by the factor 1 + κG/N_B (derivation in docs/scaling.md), so C-closeness needs κ ≤ (C² − 1)·N_B/G.
 *
 * Gradients come from a callback so that real model gradients plug in unchanged; only running sums are
 * kept (O(dim) memory, O(2·dim) with per-coordinate statistics).
 */
import { LmtuneError } from '../util/errors.ts';

export type Gradient = Float32Array | Float64Array;
/** Returns the k-th independent minibatch gradient (k = 0, 1, ...), all at the same parameters. */
export type GradientSource = (k: number) => Gradient;
export type AsyncGradientSource = (k: number) => Gradient | Promise<Gradient>;

export interface NoiseEstimate {
  /** Number of minibatch gradients used. */
  K: number;
  batch: number;
  /** (1/K)Σ‖g_k‖². */
  meanSquaredNorm: number;
  /** Ĝ, unbiased estimate of ‖∇L‖². Can be negative when the signal is buried in noise. */
  gradNormSq: number;
  /** N̂_B, unbiased estimate of tr Σ_B. */
  noiseTrace: number;
  /** B·N̂_B ≈ tr Σ₁ (per-example noise, batch-independent). */
  noiseTracePerExample: number;
  /** N̂_B/Ĝ: noise-to-signal ratio at batch B. */
  nsr: number;
  /** B·N̂_B/Ĝ ≈ tr Σ₁/G, McCandlish's B_simple (batch size at which noise equals signal). */
  bNoise: number;
  /** Present when per-coordinate statistics were kept. */
  coordinates?: CoordinateStats;
}

export interface CoordinateStats {
  /** Unbiased per-coordinate squared mean gradient, (∇f_j)² estimate: ḡ_j² − s_j²/K. */
  meanSq: Float64Array;
  /** Unbiased per-coordinate variance of one minibatch gradient, Σ_B,jj. */
  variance: Float64Array;
}

/** Running sums of minibatch gradients; add gradients one at a time, then call `estimate`. */
export class GradientMomentAccumulator {
  readonly dim: number;
  private readonly sum: Float64Array;
  private readonly sumSq: Float64Array | null;
  private sumNormSq = 0;
  private k = 0;

  constructor(dim: number, opts: { perCoordinate?: boolean } = {}) {
    if (!Number.isInteger(dim) || dim <= 0) throw new LmtuneError('SHAPE', `gradient dimension must be a positive integer, got ${dim}`);
    this.dim = dim;
    this.sum = new Float64Array(dim);
    this.sumSq = opts.perCoordinate ? new Float64Array(dim) : null;
  }

  get count(): number {
    return this.k;
  }

  add(g: Gradient): void {
    if (g.length !== this.dim) {
      throw new LmtuneError('SHAPE', `minibatch gradient ${this.k} has length ${g.length}, expected ${this.dim}`);
    }
    let n2 = 0;
    for (let i = 0; i < g.length; i++) {
      const v = g[i]!;
      if (!Number.isFinite(v)) throw new LmtuneError('NUMERIC', `minibatch gradient ${this.k} has a non-finite entry at index ${i} (${v})`);
      this.sum[i]! += v;
      n2 += v * v;
      if (this.sumSq) this.sumSq[i]! += v * v;
    }
    this.sumNormSq += n2;
    this.k++;
  }

  estimate(batch: number): NoiseEstimate {
    const K = this.k;
    if (K < 2) throw new LmtuneError('CONFIG', `noise estimation needs at least 2 minibatch gradients, got ${K}`);
    positiveBatch(batch, 'batch');
    let meanNormSq = 0;
    for (let i = 0; i < this.dim; i++) {
      const m = this.sum[i]! / K;
      meanNormSq += m * m;
    }
    const m2 = this.sumNormSq / K;
    const G = (K * meanNormSq - m2) / (K - 1);
    const N = m2 - G;
    const out: NoiseEstimate = {
      K,
      batch,
      meanSquaredNorm: m2,
      gradNormSq: G,
      noiseTrace: N,
      noiseTracePerExample: batch * N,
      nsr: N / G,
      bNoise: (batch * N) / G,
    };
    if (this.sumSq) {
      const meanSq = new Float64Array(this.dim);
      const variance = new Float64Array(this.dim);
      for (let i = 0; i < this.dim; i++) {
        const m = this.sum[i]! / K;
        const s2 = (this.sumSq[i]! / K - m * m) * (K / (K - 1));
        variance[i] = s2;
        meanSq[i] = m * m - s2 / K;
      }
      out.coordinates = { meanSq, variance };
    }
    return out;
  }
}

function positiveBatch(b: number, what: string): void {
  if (!Number.isFinite(b) || b <= 0) throw new LmtuneError('CONFIG', `${what} must be a positive number, got ${b}`);
}

/** P1's choice of K for batch B: max(200, 12800/B) (its code drops the last partial batch). */
export function defaultNoiseSamples(batch: number): number {
  positiveBatch(batch, 'batch');
  return Math.max(200, Math.ceil(12800 / batch));
}

export interface NoiseOptions {
  /** Number of minibatch gradients; default `defaultNoiseSamples(batch)`. */
  K?: number;
  batch: number;
  /** Keep per-coordinate sums (needed by `coordinateSignalFraction`). */
  perCoordinate?: boolean;
}

function samples(opts: NoiseOptions): number {
  const K = opts.K ?? defaultNoiseSamples(opts.batch);
  if (!Number.isInteger(K) || K < 2) throw new LmtuneError('CONFIG', `number of minibatch gradients K must be an integer ≥ 2, got ${K}`);
  return K;
}

/** Estimates G and N_B from K gradients `grad(0..K-1)` at a fixed point. */
export function estimateNoise(grad: GradientSource, opts: NoiseOptions): NoiseEstimate {
  positiveBatch(opts.batch, 'batch');
  const K = samples(opts);
  const g0 = grad(0);
  const acc = new GradientMomentAccumulator(g0.length, { perCoordinate: opts.perCoordinate ?? false });
  acc.add(g0);
  for (let k = 1; k < K; k++) acc.add(grad(k));
  return acc.estimate(opts.batch);
}

/** `estimateNoise` for sources that return promises (model gradients computed by onnxruntime). */
export async function estimateNoiseAsync(grad: AsyncGradientSource, opts: NoiseOptions): Promise<NoiseEstimate> {
  positiveBatch(opts.batch, 'batch');
  const K = samples(opts);
  const g0 = await grad(0);
  const acc = new GradientMomentAccumulator(g0.length, { perCoordinate: opts.perCoordinate ?? false });
  acc.add(g0);
  for (let k = 1; k < K; k++) acc.add(await grad(k));
  return acc.estimate(opts.batch);
}

export interface TwoBatchEstimate {
  gradNormSq: number;
  /** tr Σ₁ (per-example). */
  noiseTracePerExample: number;
  /** tr Σ₁/G. */
  bSimple: number;
}

/**
 * McCandlish et al. (2018): from ‖g‖² at two batch sizes (e.g. per-device and all-reduced gradients),
 * Ĝ = (B_big‖g_big‖² − B_small‖g_small‖²)/(B_big − B_small), tr Σ₁ = (‖g_small‖² − ‖g_big‖²)/(1/B_small − 1/B_big).
 * Both are unbiased (E‖g_B‖² = G + tr Σ₁/B); their ratio is not, so average the two over many steps first.
 */
export function estimateNoiseTwoBatch(sqSmall: number, batchSmall: number, sqBig: number, batchBig: number): TwoBatchEstimate {
  positiveBatch(batchSmall, 'small batch');
  positiveBatch(batchBig, 'big batch');
  if (!(batchBig > batchSmall)) throw new LmtuneError('CONFIG', `the big batch (${batchBig}) must be larger than the small batch (${batchSmall})`);
  const G = (batchBig * sqBig - batchSmall * sqSmall) / (batchBig - batchSmall);
  const tr = (sqSmall - sqBig) / (1 / batchSmall - 1 / batchBig);
  return { gradNormSq: G, noiseTracePerExample: tr, bSimple: tr / G };
}

/**
 * The two-batch estimator fed from K small-batch gradients: ‖g_small‖² is averaged over them and the big
 * gradient is their mean (batch K·B). This is algebraically the K-gradient estimator; it is here so a
 * training loop that only has per-device and all-reduced gradients gets the same numbers.
 */
export function estimateNoiseTwoBatchFromGradients(grad: GradientSource, K: number, batchSmall: number): TwoBatchEstimate {
  if (!Number.isInteger(K) || K < 2) throw new LmtuneError('CONFIG', `two-batch estimation needs K ≥ 2 small batches, got ${K}`);
  const g0 = grad(0);
  const mean = new Float64Array(g0.length);
  let sqSmall = 0;
  for (let k = 0; k < K; k++) {
    const g = k === 0 ? g0 : grad(k);
    if (g.length !== mean.length) throw new LmtuneError('SHAPE', `minibatch gradient ${k} has length ${g.length}, expected ${mean.length}`);
    let n2 = 0;
    for (let i = 0; i < g.length; i++) {
      mean[i]! += g[i]! / K;
      n2 += g[i]! * g[i]!;
    }
    sqSmall += n2 / K;
  }
  let sqBig = 0;
  for (let i = 0; i < mean.length; i++) sqBig += mean[i]! * mean[i]!;
  return estimateNoiseTwoBatch(sqSmall, batchSmall, sqBig, K * batchSmall);
}

/**
 * κ_max = (C² − 1)·N_B/G: the largest batch multiplier for which the LSR run's equilibrium stays within
 * a factor C of the SDE's [P1 necessary condition, in batch form]. G and N_B are equilibrium averages at
 * the baseline batch B (P1 averages over the end of the constant-LR phase). C = √2 gives N_B/G, i.e.
 * B_max = McCandlish's B_simple.
 */
export function lsrMaxKappa(gradNormSq: number, noiseTrace: number, C = Math.SQRT2): number {
  if (!(C > 1)) throw new LmtuneError('CONFIG', `closeness factor C must be > 1, got ${C}`);
  if (!(noiseTrace > 0)) throw new LmtuneError('NUMERIC', `noise trace N_B must be positive, got ${noiseTrace}`, 'Use more minibatch gradients (K) or a smaller batch.');
  if (!(gradNormSq > 0)) return Infinity; // no measurable signal: the noise dominates at any batch the estimate can resolve
  return ((C * C - 1) * noiseTrace) / gradNormSq;
}

/** Average estimates from several checkpoints of an equilibrium window (G and N averaged separately, then divided). */
export function equilibriumAverage(estimates: readonly NoiseEstimate[]): { gradNormSq: number; noiseTrace: number; batch: number } {
  if (estimates.length === 0) throw new LmtuneError('CONFIG', 'equilibriumAverage needs at least one estimate');
  const batch = estimates[0]!.batch;
  if (estimates.some((e) => e.batch !== batch)) throw new LmtuneError('CONFIG', 'equilibriumAverage: all estimates must use the same batch size');
  const n = estimates.length;
  return {
    gradNormSq: estimates.reduce((s, e) => s + e.gradNormSq, 0) / n,
    noiseTrace: estimates.reduce((s, e) => s + e.noiseTrace, 0) / n,
    batch,
  };
}

/**
 * Share of coordinates where the signal beats the noise after a κ-fold batch increase,
 * (∇f_j)² > Σ_B,jj/κ. The square-root rule assumes this share is small (noise-dominated Adam).
 */
export function coordinateSignalFraction(est: NoiseEstimate, kappa: number): number {
  if (!est.coordinates) throw new LmtuneError('CONFIG', 'coordinateSignalFraction needs an estimate made with perCoordinate: true');
  const { meanSq, variance } = est.coordinates;
  let n = 0;
  for (let i = 0; i < meanSq.length; i++) if (meanSq[i]! > variance[i]! / kappa) n++;
  return n / meanSq.length;
}

export interface BatchChangeCheck {
  kappa: number;
  kappaMax: number;
  /** Largest batch that stays in the regime, κ_max·B. */
  batchMax: number;
  withinRegime: boolean;
  /** Coordinate share where signal exceeds noise at κB (only with per-coordinate statistics). */
  signalFraction?: number;
  reason: string;
}

/** Is B → κB inside the SDE regime measured by `est`? */
export function checkBatchChange(est: NoiseEstimate, kappa: number, C = Math.SQRT2): BatchChangeCheck {
  if (!(kappa > 0)) throw new LmtuneError('CONFIG', `batch multiplier κ must be positive, got ${kappa}`);
  const kappaMax = lsrMaxKappa(est.gradNormSq, est.noiseTrace, C);
  const withinRegime = kappa <= kappaMax;
  const out: BatchChangeCheck = {
    kappa,
    kappaMax,
    batchMax: kappaMax * est.batch,
    withinRegime,
    reason: withinRegime
      ? `κ = ${kappa} ≤ κ_max = ${kappaMax.toPrecision(3)} (N_B/G = ${est.nsr.toPrecision(3)} at B = ${est.batch}, C = ${C.toPrecision(3)})`
      : `κ = ${kappa} > κ_max = ${kappaMax.toPrecision(3)}: at batch ${kappa * est.batch} the gradient signal is no longer small against the noise, so the SDE (and the scaling rule) is expected to fail`,
  };
  if (est.coordinates) out.signalFraction = coordinateSignalFraction(est, kappa);
  return out;
}

export interface DiagnoseOptions {
  batch: number;
  toBatch: number;
  K?: number;
  C?: number;
  perCoordinate?: boolean;
}

export interface Diagnosis {
  estimate: NoiseEstimate;
  check: BatchChangeCheck;
}

/**
 * What `lmtune scale diagnose` will call: measure noise and signal with K minibatch gradients at the
 * current parameters and say whether batch → toBatch stays in the regime. Per-coordinate statistics
 * are off by default (they double memory).
 */
export async function diagnoseBatchChange(grad: AsyncGradientSource, opts: DiagnoseOptions): Promise<Diagnosis> {
  positiveBatch(opts.toBatch, 'target batch (--to-batch)');
  const noiseOpts: NoiseOptions = { batch: opts.batch, perCoordinate: opts.perCoordinate ?? false };
  if (opts.K !== undefined) noiseOpts.K = opts.K;
  const estimate = await estimateNoiseAsync(grad, noiseOpts);
  return { estimate, check: checkBatchChange(estimate, opts.toBatch / opts.batch, opts.C ?? Math.SQRT2) };
}
