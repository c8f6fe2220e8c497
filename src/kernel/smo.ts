/**
 * Sequential minimal optimization for the dual problems of SVC and ε-SVR with a precomputed kernel,
 * following libsvm's `Solver` (Fan, Chen, Lin 2005: second-order working-set selection):
 *
 *   min_a ½ aᵀQa + pᵀa   subject to  yᵀa = 0,  0 ≤ a_i ≤ C,  y_i ∈ {−1, +1}
 *
 * SVC: Q_ij = y_i y_j K_ij, p = −1. SVR: 2n variables [α; α*], y = [+1…; −1…], p = [ε − z; ε + z].
 * The bias is −ρ, ρ computed from the free variables as libsvm does.
 */
import { LmtuneError } from '../util/errors.ts';

const TAU = 1e-12;

export interface QpResult {
  a: Float64Array;
  rho: number;
  iterations: number;
  objective: number;
}

/** Solve the dual with Q given by a function of (i, j) (the signed matrix y_i y_j K). */
export function smo(n: number, q: (i: number, j: number) => number, p: Float64Array, y: Int8Array, C: number, opts: { eps?: number; maxIter?: number } = {}): QpResult {
  const eps = opts.eps ?? 1e-8;
  const maxIter = opts.maxIter ?? Math.max(10_000_000, 100 * n);
  const a = new Float64Array(n);
  const G = Float64Array.from(p);
  const QD = Float64Array.from({ length: n }, (_, i) => q(i, i));
  const row = (i: number): Float64Array => Float64Array.from({ length: n }, (_, k) => q(i, k));
  const rows = new Map<number, Float64Array>();
  const Q = (i: number): Float64Array => {
    let r = rows.get(i);
    if (!r) {
      r = row(i);
      rows.set(i, r);
    }
    return r;
  };
  const upper = (t: number) => a[t]! >= C;
  const lower = (t: number) => a[t]! <= 0;
  let it = 0;
  for (; it < maxIter; it++) {
    let Gmax = -Infinity;
    let i = -1;
    for (let t = 0; t < n; t++) {
      if (y[t] === 1) {
        if (!upper(t) && -G[t]! >= Gmax) {
          Gmax = -G[t]!;
          i = t;
        }
      } else if (!lower(t) && G[t]! >= Gmax) {
        Gmax = G[t]!;
        i = t;
      }
    }
    if (i < 0) break;
    const Qi = Q(i);
    let Gmax2 = -Infinity;
    let j = -1;
    let best = Infinity;
    for (let t = 0; t < n; t++) {
      if (y[t] === 1) {
        if (lower(t)) continue;
        const gd = Gmax + G[t]!;
        if (G[t]! >= Gmax2) Gmax2 = G[t]!;
        if (gd > 0) {
          const quad = QD[i]! + QD[t]! - 2 * y[i]! * Qi[t]!;
          const obj = -(gd * gd) / (quad > 0 ? quad : TAU);
          if (obj <= best) {
            best = obj;
            j = t;
          }
        }
      } else {
        if (upper(t)) continue;
        const gd = Gmax - G[t]!;
        if (-G[t]! >= Gmax2) Gmax2 = -G[t]!;
        if (gd > 0) {
          const quad = QD[i]! + QD[t]! + 2 * y[i]! * Qi[t]!;
          const obj = -(gd * gd) / (quad > 0 ? quad : TAU);
          if (obj <= best) {
            best = obj;
            j = t;
          }
        }
      }
    }
    if (Gmax + Gmax2 < eps || j < 0) break;
    const Qj = Q(j);
    const oi = a[i]!;
    const oj = a[j]!;
    if (y[i] !== y[j]) {
      let quad = QD[i]! + QD[j]! + 2 * Qi[j]!;
      if (quad <= 0) quad = TAU;
      const delta = (-G[i]! - G[j]!) / quad;
      const diff = oi - oj;
      a[i] = oi + delta;
      a[j] = oj + delta;
      if (diff > 0) {
        if (a[j]! < 0) {
          a[j] = 0;
          a[i] = diff;
        }
      } else if (a[i]! < 0) {
        a[i] = 0;
        a[j] = -diff;
      }
      if (diff > 0) {
        if (a[i]! > C) {
          a[i] = C;
          a[j] = C - diff;
        }
      } else if (a[j]! > C) {
        a[j] = C;
        a[i] = C + diff;
      }
    } else {
      let quad = QD[i]! + QD[j]! - 2 * Qi[j]!;
      if (quad <= 0) quad = TAU;
      const delta = (G[i]! - G[j]!) / quad;
      const sum = oi + oj;
      a[i] = oi - delta;
      a[j] = oj + delta;
      if (sum > C) {
        if (a[i]! > C) {
          a[i] = C;
          a[j] = sum - C;
        }
      } else if (a[j]! < 0) {
        a[j] = 0;
        a[i] = sum;
      }
      if (sum > C) {
        if (a[j]! > C) {
          a[j] = C;
          a[i] = sum - C;
        }
      } else if (a[i]! < 0) {
        a[i] = 0;
        a[j] = sum;
      }
    }
    const di = a[i]! - oi;
    const dj = a[j]! - oj;
    for (let k = 0; k < n; k++) G[k] = G[k]! + Qi[k]! * di + Qj[k]! * dj;
  }
  if (it >= maxIter) throw new LmtuneError('NUMERIC', `SMO did not converge in ${maxIter} iterations`, 'add a ridge (--reg) or rescale the kernel');
  // ρ from the free variables (libsvm calculate_rho)
  let ub = Infinity;
  let lb = -Infinity;
  let nFree = 0;
  let sumFree = 0;
  for (let t = 0; t < n; t++) {
    const yG = y[t]! * G[t]!;
    if (upper(t)) {
      if (y[t] === -1) ub = Math.min(ub, yG);
      else lb = Math.max(lb, yG);
    } else if (lower(t)) {
      if (y[t] === 1) ub = Math.min(ub, yG);
      else lb = Math.max(lb, yG);
    } else {
      nFree++;
      sumFree += yG;
    }
  }
  const rho = nFree > 0 ? sumFree / nFree : (ub + lb) / 2;
  let objective = 0;
  for (let t = 0; t < n; t++) objective += a[t]! * (G[t]! + p[t]!);
  return { a, rho, iterations: it, objective: objective / 2 };
}

/** SVC dual on a precomputed kernel K [n, n] with labels ±1: decision(x) = Σ coef_i K(x_i, x) − ρ */
export function svcDual(K: Float64Array, n: number, labels: Int8Array, C: number): { coef: Float64Array; rho: number; objective: number } {
  const p = new Float64Array(n).fill(-1);
  const r = smo(n, (i, j) => labels[i]! * labels[j]! * K[i * n + j]!, p, labels, C);
  return { coef: Float64Array.from(r.a, (v, i) => v * labels[i]!), rho: r.rho, objective: r.objective };
}

/** ε-SVR dual on a precomputed kernel with targets z: decision(x) = Σ coef_i K(x_i, x) − ρ */
export function svrDual(K: Float64Array, n: number, z: Float64Array, C: number, epsilon: number): { coef: Float64Array; rho: number; objective: number } {
  const y = new Int8Array(2 * n);
  const p = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    y[i] = 1;
    y[i + n] = -1;
    p[i] = epsilon - z[i]!;
    p[i + n] = epsilon + z[i]!;
  }
  const r = smo(2 * n, (i, j) => y[i]! * y[j]! * K[(i % n) * n + (j % n)]!, p, y, C);
  return { coef: Float64Array.from({ length: n }, (_, i) => r.a[i]! - r.a[i + n]!), rho: r.rho, objective: r.objective };
}
