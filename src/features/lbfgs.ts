/**
 * Limited-memory BFGS in float64 for smooth convex objectives (the probes' L2-regularized
 * log-likelihood). Two-loop recursion for the direction, a backtracking Armijo line search (enough for
 * a strictly convex objective: the curvature pair is kept only when sᵀy > 0), and a stop on the largest
 * gradient entry relative to the first one, so the tolerance means the same thing for every C.
 */
import { LmtuneError } from '../util/errors.ts';

/** f(x) and ∇f(x) written into `grad` */
export type Objective = (x: Float64Array, grad: Float64Array) => number;

export interface LbfgsOptions {
  /** stop when ‖∇f‖∞ ≤ gtol · max(1, ‖∇f(x₀)‖∞) */
  gtol?: number;
  maxIter?: number;
  /** curvature pairs kept */
  memory?: number;
}

export interface LbfgsResult {
  x: Float64Array;
  f: number;
  iterations: number;
  gradInf: number;
  converged: boolean;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function infNorm(a: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

export function minimizeLbfgs(fn: Objective, x0: Float64Array, opts: LbfgsOptions = {}): LbfgsResult {
  const gtol = opts.gtol ?? 1e-8;
  const maxIter = opts.maxIter ?? 1000;
  const m = opts.memory ?? 10;
  const n = x0.length;
  let x = Float64Array.from(x0);
  let g = new Float64Array(n);
  let f = fn(x, g);
  if (!Number.isFinite(f)) throw new LmtuneError('NUMERIC', `L-BFGS: the objective is ${f} at the starting point`);
  const target = gtol * Math.max(1, infNorm(g));
  const S: Float64Array[] = [];
  const Y: Float64Array[] = [];
  const rho: number[] = [];
  const alpha = new Float64Array(m);
  const d = new Float64Array(n);
  let xNew = new Float64Array(n);
  let gNew = new Float64Array(n);
  let it = 0;
  let stalled = 0;
  for (; it < maxIter; it++) {
    if (infNorm(g) <= target) break;
    // two-loop recursion: d = −H g
    for (let i = 0; i < n; i++) d[i] = -g[i]!;
    for (let j = S.length - 1; j >= 0; j--) {
      alpha[j] = rho[j]! * dot(S[j]!, d);
      const y = Y[j]!;
      const a = alpha[j]!;
      for (let i = 0; i < n; i++) d[i] = d[i]! - a * y[i]!;
    }
    const gamma = S.length ? dot(S[S.length - 1]!, Y[Y.length - 1]!) / dot(Y[Y.length - 1]!, Y[Y.length - 1]!) : 1 / Math.max(1e-300, infNorm(g));
    for (let i = 0; i < n; i++) d[i] = d[i]! * gamma;
    for (let j = 0; j < S.length; j++) {
      const b = rho[j]! * dot(Y[j]!, d);
      const s = S[j]!;
      const c = alpha[j]! - b;
      for (let i = 0; i < n; i++) d[i] = d[i]! + c * s[i]!;
    }
    let slope = dot(g, d);
    if (!(slope < 0)) {
      // not a descent direction (numerical trouble): restart from steepest descent
      S.length = Y.length = rho.length = 0;
      for (let i = 0; i < n; i++) d[i] = -g[i]! / Math.max(1e-300, infNorm(g));
      slope = dot(g, d);
    }
    let step = 1;
    let fNew = Number.NaN;
    let accepted = false;
    for (let ls = 0; ls < 60; ls++) {
      for (let i = 0; i < n; i++) xNew[i] = x[i]! + step * d[i]!;
      fNew = fn(xNew, gNew);
      if (Number.isFinite(fNew) && fNew <= f + 1e-4 * step * slope) {
        accepted = true;
        break;
      }
      // near the optimum f changes below its rounding error: accept a step that shrinks the gradient
      if (Number.isFinite(fNew) && Math.abs(fNew - f) <= 1e-13 * Math.abs(f) && infNorm(gNew) < infNorm(g)) {
        accepted = true;
        break;
      }
      step *= 0.5;
    }
    if (!accepted) break; // no decrease representable in float64: as close as we can get
    const s = new Float64Array(n);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      s[i] = xNew[i]! - x[i]!;
      y[i] = gNew[i]! - g[i]!;
    }
    const sy = dot(s, y);
    if (sy > 1e-300) {
      if (S.length === m) {
        S.shift();
        Y.shift();
        rho.shift();
      }
      S.push(s);
      Y.push(y);
      rho.push(1 / sy);
    }
    stalled = f - fNew <= 1e-16 * Math.max(1, Math.abs(f)) ? stalled + 1 : 0;
    if (stalled > 0 && infNorm(gNew) < infNorm(g)) stalled = 0;
    [x, xNew] = [xNew, x];
    [g, gNew] = [gNew, g];
    f = fNew;
    if (stalled >= 10) break;
  }
  const gradInf = infNorm(g);
  return { x, f, iterations: it, gradInf, converged: gradInf <= target };
}
