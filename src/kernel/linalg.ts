/**
 * The dense float64 linear algebra the kernel solvers need, on row-major Float64Arrays: a one-sided
 * Jacobi SVD (accurate small singular values, which a minimum-norm least squares and the rank need),
 * the symmetric eigenvalues for PSD checks, and the products around them. Kernel systems are at most
 * a few thousand rows (N·C pseudo-examples), where O(n³) Jacobi sweeps take seconds.
 */
import { LmtuneError } from '../util/errors.ts';

export interface Svd {
  /** [m, k] left singular vectors (k = min(m, n)) */
  u: Float64Array;
  /** k singular values, descending */
  s: Float64Array;
  /** [n, k] right singular vectors */
  v: Float64Array;
  m: number;
  n: number;
  k: number;
}

/** Aᵀ for a row-major [m, n] matrix */
export function transpose(a: Float64Array, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j]!;
  return t;
}

/** [m, k] · [k, n] */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < k; t++) {
      const v = a[i * k + t]!;
      if (v === 0) continue;
      const bo = t * n;
      const oo = i * n;
      for (let j = 0; j < n; j++) out[oo + j] = out[oo + j]! + v * b[bo + j]!;
    }
  }
  return out;
}

/** y = A x for A [m, n] */
export function matvec(a: Float64Array, x: Float64Array, m: number, n: number): Float64Array {
  const y = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += a[i * n + j]! * x[j]!;
    y[i] = s;
  }
  return y;
}

/** y = Aᵀ x for A [m, n] */
export function matvecT(a: Float64Array, x: Float64Array, m: number, n: number): Float64Array {
  const y = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    const xi = x[i]!;
    if (xi === 0) continue;
    for (let j = 0; j < n; j++) y[j] = y[j]! + a[i * n + j]! * xi;
  }
  return y;
}

/**
 * One-sided Jacobi SVD (Hestenes): orthogonalize the columns of A (or of Aᵀ when m < n) by plane
 * rotations until every pair is orthogonal to working precision.
 */
export function svd(a: Float64Array, m: number, n: number): Svd {
  if (a.length !== m * n) throw new LmtuneError('SHAPE', `svd: ${a.length} values for a ${m}×${n} matrix`);
  if (m < n) {
    const t = svd(transpose(a, m, n), n, m);
    return { u: t.v, s: t.s, v: t.u, m, n, k: t.k };
  }
  // columns of W = A (as column-major copies) are rotated; V accumulates the rotations
  const w = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) w[j * m + i] = a[i * n + j]!;
  const v = new Float64Array(n * n);
  for (let j = 0; j < n; j++) v[j * n + j] = 1;
  const eps = 2.220446049250313e-16;
  for (let sweep = 0; sweep < 60; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        const po = p * m;
        const qo = q * m;
        for (let i = 0; i < m; i++) {
          const x = w[po + i]!;
          const y = w[qo + i]!;
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const x = w[po + i]!;
          const y = w[qo + i]!;
          w[po + i] = c * x - s * y;
          w[qo + i] = s * x + c * y;
        }
        for (let i = 0; i < n; i++) {
          const x = v[i * n + p]!;
          const y = v[i * n + q]!;
          v[i * n + p] = c * x - s * y;
          v[i * n + q] = s * x + c * y;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < m; i++) s += w[j * m + i]! ** 2;
    norms[j] = Math.sqrt(s);
  }
  const order = Array.from({ length: n }, (_, j) => j).sort((x, y) => norms[y]! - norms[x]! || x - y);
  const u = new Float64Array(m * n);
  const s = new Float64Array(n);
  const vs = new Float64Array(n * n);
  order.forEach((j, r) => {
    const sv = norms[j]!;
    s[r] = sv;
    for (let i = 0; i < m; i++) u[i * n + r] = sv > 0 ? w[j * m + i]! / sv : 0;
    for (let i = 0; i < n; i++) vs[i * n + r] = v[i * n + j]!;
  });
  return { u, s, v: vs, m, n, k: n };
}

/** the largest singular value ‖A‖₂ */
export function spectralNorm(a: Float64Array, m: number, n: number): number {
  return svd(a, m, n).s[0] ?? 0;
}

export interface LstsqResult {
  /** [n, r] solution (r right-hand sides) */
  x: Float64Array;
  rank: number;
  singularValues: Float64Array;
}

/**
 * Minimum-norm least squares A X = B (A [m, n], B [m, r]), as LAPACK's gelsy/gelsd: singular values
 * below rcond·σ_max count as zero. rcond defaults to eps·max(m, n), numpy's and torch's default.
 */
export function lstsq(a: Float64Array, b: Float64Array, m: number, n: number, r: number, rcond?: number): LstsqResult {
  if (b.length !== m * r) throw new LmtuneError('SHAPE', `lstsq: right-hand side has ${b.length} values, expected ${m}×${r}`);
  const d = svd(a, m, n);
  const cut = (rcond ?? 2.220446049250313e-16 * Math.max(m, n)) * (d.s[0] ?? 0);
  let rank = 0;
  for (let i = 0; i < d.k; i++) if (d.s[i]! > cut) rank++;
  const x = new Float64Array(n * r);
  for (let c = 0; c < r; c++) {
    for (let k = 0; k < rank; k++) {
      let dot = 0;
      for (let i = 0; i < m; i++) dot += d.u[i * d.k + k]! * b[i * r + c]!;
      const coef = dot / d.s[k]!;
      for (let j = 0; j < n; j++) x[j * r + c] = x[j * r + c]! + d.v[j * d.k + k]! * coef;
    }
  }
  return { x, rank, singularValues: d.s };
}

/** eigenvalues of a symmetric matrix (ascending), by the SVD of A + shift·I with a shift making it PSD */
export function symmetricEigenvalues(a: Float64Array, n: number): Float64Array {
  // Gershgorin bound: A + ρI is PSD, so its singular values are its eigenvalues
  let rho = 0;
  for (let i = 0; i < n; i++) {
    let r = 0;
    for (let j = 0; j < n; j++) r += Math.abs(a[i * n + j]!);
    rho = Math.max(rho, r);
  }
  const shifted = Float64Array.from(a);
  for (let i = 0; i < n; i++) shifted[i * n + i] = shifted[i * n + i]! + rho;
  const s = svd(shifted, n, n).s;
  return Float64Array.from(s, (x) => x - rho).sort();
}
