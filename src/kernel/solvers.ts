/**
 * The reference's kernel solvers (LM-Kernel-FT src/kernel_solvers.py; spec A2), all in float64.
 *
 * Shared conventions:
 * - the kernel [N, C, M, C] is used as the row-major [N·C, M·C] matrix; multi-class targets are one-hot
 *   flattened to N·C pseudo-examples, predictions reshaped to [M, C] and decoded by argmax; with one
 *   output (`--binary`, f = f₁ − f₀) targets are ±1 and the prediction's sign decides;
 * - ridge: K ← K + r·‖K‖₂·I (relative to the largest singular value), when r > 0;
 * - f₀ (`f0Scaling` s finite): fit Y − f₀(train)/s, predict K_*ᵀα + f₀(eval)/s; s = ∞ ignores f₀ (default).
 *
 * Where we differ from the reference, on purpose:
 * - `logistic` replaces sklearn's LogisticRegressionCV (lbfgs, 5-fold StratifiedKFold) with Newton's method
 *   on the same L2 objective and a deterministic stratified 5-fold split (folds by rank within class);
 * - `svr`/`svc` are our SMO (smo.ts) with sklearn's defaults C = 1, ε = 0.1, tolerance 1e-8 instead of 1e-3;
 * - `lstsq` with r = 0 on a numerically singular K is an error unless `allowSingular` (the reference
 *   silently returns gelsy's minimum-norm solution; a singular kernel usually means duplicate examples).
 */
import { LmtuneError } from '../util/errors.ts';
import { lstsq, matvecT, spectralNorm } from './linalg.ts';
import { svcDual, svrDual } from './smo.ts';

export const SOLVERS = ['lstsq', 'logistic', 'svr', 'svc', 'asym'] as const;
export type SolverName = (typeof SOLVERS)[number];

/** One kernel problem: train kernel, train→eval kernel, outputs at θ₀ and labels. */
export interface KernelProblem {
  /** outputs per example: C label words, or 1 with --binary */
  classes: number;
  n: number;
  m: number;
  /** [n·C, n·C] */
  trainTrain: Float64Array;
  /** [n·C, m·C] */
  trainEval: Float64Array;
  /** A-SignGD's flipped kernel ⟨sign g(eval), g(train)⟩ [m·C, n·C] */
  evalTrain?: Float64Array;
  f0Train: Float64Array;
  f0Eval: Float64Array;
  labelsTrain: Int32Array;
  labelsEval: Int32Array;
}

export interface SolverOptions {
  /** relative ridge r (default 0) */
  reg?: number;
  /** f₀ scale s (default ∞: f₀ ignored) */
  f0Scaling?: number;
  /** asym: γ (default 1) */
  gamma?: number;
  /** asym: λ (default 0.5) */
  lambda?: number;
  /** svr/svc: C (default 1) */
  C?: number;
  /** svr: ε (default 0.1) */
  epsilon?: number;
  allowSingular?: boolean;
}

export interface SolveResult {
  solver: SolverName;
  metric: 'accuracy';
  value: number;
  n: number;
  /** [m·C] raw predictions */
  predictions: Float64Array;
  /** decoded classes [m] */
  predicted: Int32Array;
  rank?: number;
}

/** targets: one-hot [n·C] for C > 1, ±1 [n] for C = 1 */
export function targets(labels: Int32Array, C: number): Float64Array {
  if (C === 1) return Float64Array.from(labels, (l) => (l === 1 ? 1 : -1));
  const y = new Float64Array(labels.length * C);
  labels.forEach((l, i) => (y[i * C + l] = 1));
  return y;
}

/** predictions [m·C] → classes: argmax per row (first on ties), or sign for one output */
export function decode(pred: Float64Array, C: number): Int32Array {
  const m = pred.length / C;
  const out = new Int32Array(m);
  for (let i = 0; i < m; i++) {
    if (C === 1) {
      out[i] = pred[i]! > 0 ? 1 : 0;
      continue;
    }
    let best = 0;
    for (let c = 1; c < C; c++) if (pred[i * C + c]! > pred[i * C + best]!) best = c;
    out[i] = best;
  }
  return out;
}

/** K + r·‖K‖₂·I for a square [n, n] K (a copy) */
export function regularize(K: Float64Array, n: number, r: number): Float64Array {
  const out = Float64Array.from(K);
  if (r > 0) {
    const add = r * spectralNorm(K, n, n);
    for (let i = 0; i < n; i++) out[i * n + i] = out[i * n + i]! + add;
  }
  return out;
}

function f0Term(f0: Float64Array, s: number): Float64Array | null {
  return Number.isFinite(s) ? Float64Array.from(f0, (v) => v / s) : null;
}

export function solve(name: SolverName, p: KernelProblem, o: SolverOptions = {}): SolveResult {
  const C = p.classes;
  const nc = p.n * C;
  const mc = p.m * C;
  if (p.trainTrain.length !== nc * nc) throw new LmtuneError('SHAPE', `train kernel has ${p.trainTrain.length} entries, expected (${p.n}·${C})²`);
  if (p.trainEval.length !== nc * mc) throw new LmtuneError('SHAPE', `train→eval kernel has ${p.trainEval.length} entries, expected ${p.n}·${C} × ${p.m}·${C}`);
  for (const [which, ls] of [['train', p.labelsTrain], ['eval', p.labelsEval]] as const) {
    const K = Math.max(C, 2);
    for (let i = 0; i < ls.length; i++) if (ls[i]! < 0 || ls[i]! >= K) throw new LmtuneError('DATA', `${which} label ${ls[i]} of example ${i} is outside the task's ${K} classes`);
  }
  const r = o.reg ?? 0;
  const s = o.f0Scaling ?? Infinity;
  const K = regularize(p.trainTrain, nc, r);
  const y = targets(p.labelsTrain, C);
  const f0t = f0Term(p.f0Train, s);
  const f0e = f0Term(p.f0Eval, s);
  let pred: Float64Array;
  let rank: number | undefined;
  switch (name) {
    case 'lstsq': {
      const rhs = f0t ? y.map((v, i) => v - f0t[i]!) : y;
      const sol = lstsq(K, rhs, nc, nc, 1);
      rank = sol.rank;
      if (sol.rank < nc && r === 0 && !o.allowSingular) {
        throw new LmtuneError('NUMERIC', `the train kernel is singular (rank ${sol.rank} of ${nc}) and --reg is 0`, 'pass a ridge, e.g. --reg 1e-6, or --allow-singular for the minimum-norm solution (duplicate training examples make K singular)');
      }
      pred = matvecT(p.trainEval, sol.x, nc, mc);
      break;
    }
    case 'logistic': {
      // the kernel rows are the features (an empirical kernel map); f₀ is ignored, as in the reference
      const yb = Int8Array.from(y, (v) => (v > 0 ? 1 : -1));
      const fit = logisticCV(K, nc, nc, yb);
      const Xe = new Float64Array(mc * nc);
      for (let i = 0; i < nc; i++) for (let j = 0; j < mc; j++) Xe[j * nc + i] = p.trainEval[i * mc + j]!;
      pred = new Float64Array(mc);
      for (let j = 0; j < mc; j++) {
        let z = fit.b;
        for (let i = 0; i < nc; i++) z += fit.w[i]! * Xe[j * nc + i]!;
        pred[j] = z;
      }
      return finish(name, p, pred, undefined);
    }
    case 'svr': {
      const z = f0t ? y.map((v, i) => v - f0t[i]!) : y;
      const d = svrDual(K, nc, z, o.C ?? 1, o.epsilon ?? 0.1);
      pred = matvecT(p.trainEval, d.coef, nc, mc).map((v) => v - d.rho);
      break;
    }
    case 'svc': {
      if (C !== 1) throw new LmtuneError('CONFIG', `--solver svc needs a binary kernel (compute it with --binary); this one has ${C} outputs`);
      if (f0t) throw new LmtuneError('CONFIG', '--solver svc does not use f₀; drop --f0-scaling', 'the reference asserts the same');
      const d = svcDual(K, nc, Int8Array.from(y), o.C ?? 1);
      pred = matvecT(p.trainEval, d.coef, nc, mc).map((v) => (v - d.rho > 0 ? 1 : -1));
      break;
    }
    case 'asym': {
      if (C !== 1) throw new LmtuneError('CONFIG', `--solver asym needs a binary kernel (compute it with --binary); this one has ${C} outputs`);
      if (!p.evalTrain) throw new LmtuneError('CONFIG', '--solver asym needs the flipped kernel eval_train', 'compute the kernels with --formula asymmetric-signgd');
      const a = asymLsSvm(K, p.n, y, o.gamma ?? 1);
      const lambda = o.lambda ?? 0.5;
      pred = new Float64Array(mc);
      for (let j = 0; j < p.m; j++) {
        let u = 0;
        let v = 0;
        for (let i = 0; i < p.n; i++) {
          u += a.alpha[i]! * y[i]! * p.trainEval[i * mc + j]!;
          v += a.beta[i]! * y[i]! * p.evalTrain[j * nc + i]!;
        }
        pred[j] = lambda * u + (1 - lambda) * v;
      }
      break;
    }
  }
  if (f0e) pred = pred.map((v, i) => v + f0e[i]!);
  return finish(name, p, pred, rank);
}

function finish(name: SolverName, p: KernelProblem, pred: Float64Array, rank: number | undefined): SolveResult {
  const predicted = decode(pred, p.classes);
  let correct = 0;
  for (let i = 0; i < p.m; i++) if (predicted[i] === p.labelsEval[i]) correct++;
  return { solver: name, metric: 'accuracy', value: correct / p.m, n: p.m, predictions: pred, predicted, ...(rank !== undefined ? { rank } : {}) };
}

/**
 * Bias-free least-squares SVM for an asymmetric kernel (He et al. 2022, the reference's `asym`):
 * H_ij = y_i K_ij y_j, solve [[I/γ, H], [Hᵀ, I/γ]]·[α; β] = 𝟙 by least squares.
 */
export function asymLsSvm(K: Float64Array, n: number, y: Float64Array, gamma: number): { alpha: Float64Array; beta: Float64Array } {
  const m = 2 * n;
  const A = new Float64Array(m * m);
  for (let i = 0; i < n; i++) {
    A[i * m + i] = 1 / gamma;
    A[(n + i) * m + n + i] = 1 / gamma;
    for (let j = 0; j < n; j++) {
      const h = y[i]! * K[i * n + j]! * y[j]!;
      A[i * m + n + j] = h; // H
      A[(n + j) * m + i] = h; // Hᵀ
    }
  }
  const { x } = lstsq(A, new Float64Array(m).fill(1), m, m, 1);
  return { alpha: x.slice(0, n), beta: x.slice(n) };
}

// ------------------------------------------------------------------ logistic regression

/** sklearn LogisticRegressionCV's default grid: 10 values of C from 1e-4 to 1e4 */
export const LOGISTIC_CS = Array.from({ length: 10 }, (_, i) => 10 ** (-4 + (8 * i) / 9));

/** L2 logistic regression with intercept: min C·Σ log(1 + exp(−y(wᵀx + b))) + ½‖w‖², by Newton's method. */
export function logisticFit(X: Float64Array, n: number, d: number, y: Int8Array, C: number): { w: Float64Array; b: number } {
  const D = d + 1;
  const theta = new Float64Array(D);
  const z = new Float64Array(n);
  const objective = (t: Float64Array): number => {
    let s = 0;
    for (let i = 0; i < n; i++) {
      let v = t[d]!;
      for (let j = 0; j < d; j++) v += t[j]! * X[i * d + j]!;
      const m = y[i]! * v;
      s += m > 0 ? Math.log1p(Math.exp(-m)) : -m + Math.log1p(Math.exp(m));
    }
    let r = 0;
    for (let j = 0; j < d; j++) r += t[j]! ** 2;
    return C * s + r / 2;
  };
  let f = objective(theta);
  for (let iter = 0; iter < 100; iter++) {
    for (let i = 0; i < n; i++) {
      let v = theta[d]!;
      for (let j = 0; j < d; j++) v += theta[j]! * X[i * d + j]!;
      z[i] = v;
    }
    const g = new Float64Array(D);
    const H = new Float64Array(D * D);
    for (let i = 0; i < n; i++) {
      const sg = 1 / (1 + Math.exp(y[i]! * z[i]!)); // σ(−y z)
      const coef = -C * y[i]! * sg;
      const w = C * sg * (1 - sg);
      const xi = (j: number) => (j === d ? 1 : X[i * d + j]!);
      for (let j = 0; j < D; j++) {
        const xj = xi(j);
        g[j] = g[j]! + coef * xj;
        if (w === 0 || xj === 0) continue;
        for (let k = 0; k < D; k++) H[j * D + k] = H[j * D + k]! + w * xj * xi(k);
      }
    }
    for (let j = 0; j < d; j++) {
      g[j] = g[j]! + theta[j]!;
      H[j * D + j] = H[j * D + j]! + 1;
    }
    let gn = 0;
    for (let j = 0; j < D; j++) gn = Math.max(gn, Math.abs(g[j]!));
    if (gn < 1e-10 * Math.max(1, C * n)) break;
    const step = lstsq(H, g, D, D, 1).x;
    let t = 1;
    let improved = false;
    for (let ls = 0; ls < 50; ls++) {
      const cand = theta.map((v, j) => v - t * step[j]!);
      const fc = objective(cand);
      if (fc <= f) {
        theta.set(cand);
        improved = f - fc > 1e-15 * Math.abs(f);
        f = fc;
        break;
      }
      t /= 2;
    }
    if (!improved) break;
  }
  return { w: theta.slice(0, d), b: theta[d]! };
}

/** stratified k-fold: example i goes to fold (its rank within its class) mod k */
export function stratifiedFolds(y: Int8Array, k: number): Int32Array {
  const seen = new Map<number, number>();
  return Int32Array.from(y, (l) => {
    const r = seen.get(l) ?? 0;
    seen.set(l, r + 1);
    return r % k;
  });
}

/** choose C by 5-fold cross-validated accuracy (first best), refit on everything */
export function logisticCV(X: Float64Array, n: number, d: number, y: Int8Array, Cs: readonly number[] = LOGISTIC_CS, k = 5): { w: Float64Array; b: number; C: number } {
  const folds = stratifiedFolds(y, k);
  let bestC = Cs[0]!;
  let bestAcc = -1;
  for (const C of Cs) {
    let correct = 0;
    for (let f = 0; f < k; f++) {
      const tr = [...Array(n).keys()].filter((i) => folds[i] !== f);
      const te = [...Array(n).keys()].filter((i) => folds[i] === f);
      if (te.length === 0 || tr.length === 0) continue;
      const Xt = new Float64Array(tr.length * d);
      tr.forEach((i, r) => Xt.set(X.subarray(i * d, (i + 1) * d), r * d));
      const fit = logisticFit(Xt, tr.length, d, Int8Array.from(tr, (i) => y[i]!), C);
      for (const i of te) {
        let z = fit.b;
        for (let j = 0; j < d; j++) z += fit.w[j]! * X[i * d + j]!;
        if ((z > 0 ? 1 : -1) === y[i]) correct++;
      }
    }
    if (correct > bestAcc) {
      bestAcc = correct;
      bestC = C;
    }
  }
  return { ...logisticFit(X, n, d, y, bestC), C: bestC };
}
