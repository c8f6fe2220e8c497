/**
 * The noisy quadratic model (NQM) and its exact answers, the yardstick for the simulators and the rules.
 *
 * f(x) = h·x²/2; a minibatch gradient of size B is g = h·x + (s/√B)·z with z ~ N(0, 1), so the
 * per-example noise covariance is Σ₁ = s² and Σ_B = s²/B. SVAG with amplification a makes the noise
 * variance a·s²/B. A diagonal d-dimensional NQM decouples into d copies of this one, for every optimizer
 * here (all are coordinate-wise), so one coordinate is enough.
 *
 * Stationary variances (derivations in docs/scaling.md):
 *   SGD         η·q/(2h − ηh²), q = a·s²/B                       (exact, linear recursion)
 *   SGD SDE     η·s²/(2hB)                                        (exact OU)
 *   SGDM        discrete Lyapunov equation of the (x, b) recursion (exact); heavy-ball closed form below
 *   RMSprop/Adam SDE  σ₀²Σ/(2hP), P = σ₀√Σ + ε₀                     (exact for the linear SDE; momentum drops out)
 */
import { LmtuneError } from '../util/errors.ts';
import { amplificationOf, isAdaptive, wdModeOf, type AdaptiveConfig, type OptimizerConfig, type SgdmConfig } from './config.ts';
import { effectiveLr, timePerStep } from './rules.ts';

export interface NoisyQuadratic {
  /** Curvature h > 0. */
  curvature: number;
  /** Per-example gradient-noise standard deviation s (Σ₁ = s²). */
  noise: number;
  /** Starting point (deterministic). */
  x0: number;
}

export function checkProblem(q: NoisyQuadratic): void {
  for (const [k, v] of [['curvature', q.curvature], ['noise', q.noise]] as const) {
    if (!Number.isFinite(v) || v <= 0) throw new LmtuneError('CONFIG', `noisy quadratic ${k} must be a positive number, got ${v}`);
  }
  if (!Number.isFinite(q.x0)) throw new LmtuneError('CONFIG', `noisy quadratic x0 must be finite, got ${q.x0}`);
}

/** Variance of one (SVAG-combined) minibatch gradient's noise: a·s²/B. */
export function gradientNoiseVariance(cfg: OptimizerConfig, q: NoisyQuadratic): number {
  return (amplificationOf(cfg) * q.noise * q.noise) / cfg.batch;
}

/** Curvature seen by the optimizer: h plus coupled L2 λ. */
export function effectiveCurvature(cfg: OptimizerConfig, q: NoisyQuadratic): number {
  return q.curvature + (wdModeOf(cfg) === 'coupledL2' ? (cfg.weightDecay ?? 0) : 0);
}

/** Stationary variance of SGD x ← x − η(hx + ξ), Var ξ = noiseVar: η·noiseVar/(2h − ηh²). Needs 0 < ηh < 2. */
export function sgdStationaryVariance(lr: number, curvature: number, noiseVar: number): number {
  const eh = lr * curvature;
  if (!(eh > 0 && eh < 2)) throw new LmtuneError('NUMERIC', `SGD on the quadratic is unstable or degenerate: η·h = ${eh} (needs 0 < ηh < 2)`);
  return (lr * noiseVar) / (2 * curvature - lr * curvature * curvature);
}

/** Stationary variance of the SGD SDE dX = −hX dt + √(η·noiseVar) dW: η·noiseVar/(2h). */
export function sgdSdeStationaryVariance(lr: number, curvature: number, noiseVar: number): number {
  return (lr * noiseVar) / (2 * curvature);
}

/** Exact mean and variance of SGD after k steps from a deterministic x0. */
export function sgdMoments(lr: number, curvature: number, noiseVar: number, x0: number, k: number): { mean: number; variance: number } {
  const r = 1 - lr * curvature;
  const r2k = Math.pow(r * r, k);
  const variance = Math.abs(1 - r * r) < 1e-300 ? lr * lr * noiseVar * k : (lr * lr * noiseVar * (1 - r2k)) / (1 - r * r);
  return { mean: x0 * Math.pow(r, k), variance };
}

/** Exact mean and variance of the OU process dX = −hX dt + √D dW at time t from x0. */
export function ouMoments(curvature: number, diffusion: number, x0: number, t: number): { mean: number; variance: number } {
  return { mean: x0 * Math.exp(-curvature * t), variance: (diffusion * -Math.expm1(-2 * curvature * t)) / (2 * curvature) };
}

/** Solves S = A S Aᵀ + Q for symmetric 2×2 S (A stable). Returns [S11, S12, S22]. */
export function discreteLyapunov2(A: readonly [number, number, number, number], Q: readonly [number, number, number]): [number, number, number] {
  const [a, b, c, d] = A; // A = [[a, b], [c, d]]
  // Unknowns p = S11, r = S12, w = S22:
  // p = a²p + 2ab r + b²w + Q11;  r = ac p + (ad + bc) r + bd w + Q12;  w = c²p + 2cd r + d²w + Q22
  const M = [
    [1 - a * a, -2 * a * b, -b * b],
    [-a * c, 1 - (a * d + b * c), -b * d],
    [-c * c, -2 * c * d, 1 - d * d],
  ];
  const [p, r, w] = solve3(M, [Q[0], Q[1], Q[2]]);
  return [p, r, w];
}

function solve3(M: number[][], y: number[]): [number, number, number] {
  const det = (m: number[][]): number =>
    m[0]![0]! * (m[1]![1]! * m[2]![2]! - m[1]![2]! * m[2]![1]!) -
    m[0]![1]! * (m[1]![0]! * m[2]![2]! - m[1]![2]! * m[2]![0]!) +
    m[0]![2]! * (m[1]![0]! * m[2]![1]! - m[1]![1]! * m[2]![0]!);
  const D = det(M);
  if (!Number.isFinite(D) || Math.abs(D) < 1e-300) throw new LmtuneError('NUMERIC', 'Lyapunov system is singular (the recursion is not stable)');
  const col = (j: number): number[][] => M.map((row, i) => row.map((v, k) => (k === j ? y[i]! : v)));
  return [det(col(0)) / D, det(col(1)) / D, det(col(2)) / D];
}

/**
 * Exact stationary Var(x) of PyTorch-form SGDM (dampening d, optional Nesterov) on the quadratic, from the
 * linear recursion of (x_k, b_k). Ignores PyTorch's first-step buffer quirk (irrelevant at stationarity).
 * The EMA form is converted first (same iterates).
 */
export function sgdmStationaryVariance(cfg: SgdmConfig, q: NoisyQuadratic): number {
  const beta = cfg.momentum;
  const d = cfg.form === 'ema' ? 0 : (cfg.dampening ?? 0);
  const gamma = cfg.form === 'ema' ? cfg.lr * (1 - beta) : cfg.lr;
  const h = effectiveCurvature(cfg, q);
  const decay = 1 - decoupledDecay(cfg);
  const nv = gradientNoiseVariance(cfg, q);
  const u = 1 - d;
  // b' = βb + u(hx + ξ);  x' = decay·x − γ·(nesterov ? (hx + ξ) + βb' : b')
  let A: [number, number, number, number];
  let w: [number, number]; // response of (x', b') to ξ
  if (cfg.nesterov) {
    A = [decay - gamma * h * (1 + beta * u), -gamma * beta * beta, u * h, beta];
    w = [-gamma * (1 + beta * u), u];
  } else {
    A = [decay - gamma * u * h, -gamma * beta, u * h, beta];
    w = [-gamma * u, u];
  }
  if (!isStable2(A)) throw new LmtuneError('NUMERIC', 'SGDM on this quadratic has no stationary distribution (unstable step)');
  const [p] = discreteLyapunov2(A, [nv * w[0] * w[0], nv * w[0] * w[1], nv * w[1] * w[1]]);
  if (!(p > 0) || !Number.isFinite(p)) throw new LmtuneError('NUMERIC', 'SGDM on this quadratic has no stationary distribution (unstable step)');
  return p;
}

/** Heavy ball (PyTorch SGDM, no dampening): Var x = γσ²(1+β)/(h(1−β)(2(1+β) − γh)). */
export function heavyBallStationaryVariance(lr: number, momentum: number, curvature: number, noiseVar: number): number {
  const b = momentum;
  return (lr * noiseVar * (1 + b)) / (curvature * (1 - b) * (2 * (1 + b) - lr * curvature));
}

function decoupledDecay(cfg: OptimizerConfig): number {
  const wd = cfg.weightDecay ?? 0;
  const mode = wdModeOf(cfg);
  return mode === 'decoupledTimesLr' ? cfg.lr * wd : mode === 'decoupledAbsolute' ? wd : 0;
}

/**
 * The P2 SDE's noise and epsilon scales for an adaptive config on the NQM: σ = √(a/B) (so σ²Σ is the
 * gradient-noise variance, Σ = s²), σ₀ = σ·η, ε₀ = ε·η (outside √) or ε₀² = ε·η² (inside √).
 */
export function adaptiveSdeScales(cfg: AdaptiveConfig): { sigma0: number; eps0: number } {
  const sigma = Math.sqrt(amplificationOf(cfg) / cfg.batch);
  return { sigma0: sigma * cfg.lr, eps0: cfg.epsPlacement === 'insideSqrt' ? Math.sqrt(cfg.eps) * cfg.lr : cfg.eps * cfg.lr };
}

/** Preconditioner P of the SDE at u: σ₀√u + ε₀ (outside) or √(σ₀²u + ε₀²) (inside). */
export function sdePreconditioner(cfg: AdaptiveConfig, u: number, sigma0: number, eps0: number): number {
  return cfg.epsPlacement === 'insideSqrt' ? Math.sqrt(sigma0 * sigma0 * u + eps0 * eps0) : sigma0 * Math.sqrt(u) + eps0;
}

/**
 * Stationary Var(x) of the RMSprop or Adam SDE [P2] on the NQM in the noise-dominated limit (u = Σ = s²):
 * dX = −P⁻¹(hX dt + σ₀ s dW) ⇒ σ₀²s²/(2hP). For Adam the (X, m) Lyapunov equation gives the same value
 * (docs/scaling.md). Decoupled decay adds rate r = δ/η² to the drift: σ₀²s²/(2P(h + rP)).
 */
export function adaptiveSdeStationaryVariance(cfg: AdaptiveConfig, q: NoisyQuadratic): number {
  const { sigma0, eps0 } = adaptiveSdeScales(cfg);
  const P = sdePreconditioner(cfg, q.noise * q.noise, sigma0, eps0);
  const h = effectiveCurvature(cfg, q);
  const r = decoupledDecay(cfg) / timePerStep(cfg);
  if (cfg.optimizer !== 'rmsprop' && r > 0) {
    // With momentum, decoupled decay acts on x directly, not through m: solve the (x, m) OU Lyapunov equation.
    const c1 = (1 - cfg.beta1) / timePerStep(cfg);
    return ouLyapunovX(r, 1 / P, c1 * h, c1, sigma0 * c1 * q.noise);
  }
  return (sigma0 * sigma0 * q.noise * q.noise) / (2 * P * (h + r * P));
}

/** Var(x) at stationarity of dx = (−r x − k m)dt, dm = (g x − c m)dt + σ dW (continuous Lyapunov, solved by hand). */
function ouLyapunovX(r: number, k: number, g: number, c: number, sigma: number): number {
  // A = [[−r, −k], [g, −c]], Q = diag(0, σ²); AS + SAᵀ + Q = 0 with S = [[p, m], [m, w]]:
  // −2r p − 2k m = 0;  g p − (r + c) m − k w = 0;  2g m − 2c w + σ² = 0
  // ⇒ m = −r p/k,  w = (σ² + 2g m)/(2c) = (σ² − 2g r p/k)/(2c),  g p + (r + c) r p/k − k(σ² − 2grp/k)/(2c) = 0
  const coef = g + ((r + c) * r) / k + (g * r) / c;
  return (k * sigma * sigma) / (2 * c) / coef;
}

/**
 * Stationary Var(x) of the discrete RMSprop/Adam on the NQM, treating the second moment as constant at its
 * stationary mean v = h²Var(x) + noiseVar (β₂ → 1, fluctuations of v ignored): then RMSprop is SGD and Adam
 * is EMA-form SGDM with step α = η/(√v + ε), both with the decoupled decay if any. Solved by fixed-point
 * iteration over v, each step exact (Lyapunov). An approximation [I], accurate to O(1 − β₂); it explains
 * why the discrete variance sits ~1% above the SDE's in spec §6.6.
 */
export function adaptiveDiscreteStationaryVarianceApprox(cfg: AdaptiveConfig, q: NoisyQuadratic): number {
  const h = effectiveCurvature(cfg, q);
  const nv = gradientNoiseVariance(cfg, q);
  const keep = 1 - decoupledDecay(cfg);
  const b = cfg.optimizer === 'rmsprop' ? 0 : cfg.beta1;
  // F(V) = Var of the recursion with α(V), minus V; F decreases in V (more variance → larger v → smaller
  // step), so the fixed point is found by bracketing and bisection. An unstable step counts as +∞.
  const F = (V: number): number => {
    const v = h * h * V + nv;
    const alpha = cfg.epsPlacement === 'insideSqrt' ? cfg.lr / Math.sqrt(v + cfg.eps) : cfg.lr / (Math.sqrt(v) + cfg.eps);
    // m' = βm + (1−β)(hx + ξ);  x' = keep·x − α·m'   (β = 0: RMSprop)
    const A: [number, number, number, number] = [keep - alpha * (1 - b) * h, -alpha * b, (1 - b) * h, b];
    if (!isStable2(A)) return Infinity;
    const w0 = -alpha * (1 - b);
    const w1 = 1 - b;
    const [p] = discreteLyapunov2(A, [nv * w0 * w0, nv * w0 * w1, nv * w1 * w1]);
    return p - V;
  };
  let lo = 0;
  let hi = adaptiveSdeStationaryVariance(cfg, q);
  for (let i = 0; F(hi) > 0; i++) {
    if (i > 200) throw new LmtuneError('NUMERIC', `${cfg.optimizer} on this quadratic has no stationary distribution`);
    lo = hi;
    hi *= 2;
  }
  for (let i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) {
    const mid = (lo + hi) / 2;
    if (F(mid) > 0) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Both eigenvalues of the 2×2 matrix [[a, b], [c, d]] inside the unit circle (Jury's criterion). */
function isStable2(A: readonly [number, number, number, number]): boolean {
  const tr = A[0] + A[3];
  const det = A[0] * A[3] - A[1] * A[2];
  return Math.abs(det) < 1 && Math.abs(tr) < 1 + det;
}

/** Closed-form stationary variance of the discrete optimizer (approximate for RMSprop/Adam), as above. */
export function discreteStationaryVariance(cfg: OptimizerConfig, q: NoisyQuadratic): number {
  if (isAdaptive(cfg)) return adaptiveDiscreteStationaryVarianceApprox(cfg, q);
  if (cfg.optimizer === 'sgdm') return sgdmStationaryVariance(cfg, q);
  const decay = decoupledDecay(cfg);
  if (decay > 0) {
    // x' = (1 − δ − ηh)x − ηξ
    const r = 1 - decay - cfg.lr * effectiveCurvature(cfg, q);
    return (cfg.lr * cfg.lr * gradientNoiseVariance(cfg, q)) / (1 - r * r);
  }
  return sgdStationaryVariance(cfg.lr, effectiveCurvature(cfg, q), gradientNoiseVariance(cfg, q));
}

/** Stationary variance of the SDE that `cfg` approximates (SGD/SGDM: the SGD SDE with η_eff). */
export function sdeStationaryVariance(cfg: OptimizerConfig, q: NoisyQuadratic): number {
  if (isAdaptive(cfg)) return adaptiveSdeStationaryVariance(cfg, q);
  const h = effectiveCurvature(cfg, q) + decoupledDecay(cfg) / timePerStep(cfg);
  return sgdSdeStationaryVariance(effectiveLr(cfg), h, gradientNoiseVariance(cfg, q));
}
