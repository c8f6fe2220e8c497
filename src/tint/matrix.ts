/**
 * A small dense float64 matrix type for the TinT construction and its oracle. Row-major Float64Array, no
 * broadcasting, no views: every function returns a fresh matrix unless its name ends in `InPlace`.
 *
 * Every TinT module is written as a composition of the few operations below (matmul, structured head maps,
 * row softmax, elementwise maps); `engine-*.ts` replaces these calls one for one with engine graph nodes.
 */

export interface Mat {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float64Array;
}

export function zeros(rows: number, cols: number): Mat {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

export function identity(n: number): Mat {
  const m = zeros(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

export function fromRows(rows: readonly (readonly number[])[]): Mat {
  const r = rows.length;
  const c = r === 0 ? 0 : rows[0]!.length;
  const m = zeros(r, c);
  for (let i = 0; i < r; i++) {
    if (rows[i]!.length !== c) throw new RangeError(`fromRows: row ${i} has ${rows[i]!.length} entries, expected ${c}`);
    m.data.set(rows[i]!, i * c);
  }
  return m;
}

export function fromData(rows: number, cols: number, data: ArrayLike<number>): Mat {
  if (data.length !== rows * cols) throw new RangeError(`fromData: ${data.length} values for a ${rows}x${cols} matrix`);
  return { rows, cols, data: Float64Array.from(data) };
}

export function clone(a: Mat): Mat {
  return { rows: a.rows, cols: a.cols, data: a.data.slice() };
}

export function at(a: Mat, i: number, j: number): number {
  return a.data[i * a.cols + j]!;
}

/** Row i as a view (shares memory). */
export function row(a: Mat, i: number): Float64Array {
  return a.data.subarray(i * a.cols, (i + 1) * a.cols);
}

function sameShape(a: Mat, b: Mat, what: string): void {
  if (a.rows !== b.rows || a.cols !== b.cols) {
    throw new RangeError(`${what}: shapes ${a.rows}x${a.cols} and ${b.rows}x${b.cols} differ`);
  }
}

/** a @ b */
export function matmul(a: Mat, b: Mat): Mat {
  if (a.cols !== b.rows) throw new RangeError(`matmul: ${a.rows}x${a.cols} @ ${b.rows}x${b.cols}`);
  const out = zeros(a.rows, b.cols);
  const n = b.cols;
  for (let i = 0; i < a.rows; i++) {
    const oi = i * n;
    for (let k = 0; k < a.cols; k++) {
      const aik = a.data[i * a.cols + k]!;
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) out.data[oi + j]! += aik * b.data[bk + j]!;
    }
  }
  return out;
}

/** a @ bᵀ */
export function matmulT(a: Mat, b: Mat): Mat {
  if (a.cols !== b.cols) throw new RangeError(`matmulT: ${a.rows}x${a.cols} @ (${b.rows}x${b.cols})ᵀ`);
  const out = zeros(a.rows, b.rows);
  const k = a.cols;
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.rows; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a.data[i * k + t]! * b.data[j * k + t]!;
      out.data[i * b.rows + j] = s;
    }
  }
  return out;
}

export function transpose(a: Mat): Mat {
  const out = zeros(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) out.data[j * a.rows + i] = a.data[i * a.cols + j]!;
  return out;
}

export function add(a: Mat, b: Mat): Mat {
  sameShape(a, b, 'add');
  const out = clone(a);
  for (let i = 0; i < out.data.length; i++) out.data[i]! += b.data[i]!;
  return out;
}

export function sub(a: Mat, b: Mat): Mat {
  sameShape(a, b, 'sub');
  const out = clone(a);
  for (let i = 0; i < out.data.length; i++) out.data[i]! -= b.data[i]!;
  return out;
}

export function scale(a: Mat, s: number): Mat {
  const out = clone(a);
  for (let i = 0; i < out.data.length; i++) out.data[i]! *= s;
  return out;
}

/** a += s * b */
export function axpyInPlace(a: Mat, s: number, b: Mat): void {
  sameShape(a, b, 'axpy');
  for (let i = 0; i < a.data.length; i++) a.data[i]! += s * b.data[i]!;
}

/** Rows [r0, r1) as a new matrix. */
export function sliceRows(a: Mat, r0: number, r1: number): Mat {
  return { rows: r1 - r0, cols: a.cols, data: a.data.slice(r0 * a.cols, r1 * a.cols) };
}

/** Columns [c0, c1) as a new matrix. */
export function sliceCols(a: Mat, c0: number, c1: number): Mat {
  const w = c1 - c0;
  const out = zeros(a.rows, w);
  for (let i = 0; i < a.rows; i++) out.data.set(a.data.subarray(i * a.cols + c0, i * a.cols + c1), i * w);
  return out;
}

/** Writes src into dst with its top-left corner at (r0, c0). */
export function setBlockInPlace(dst: Mat, r0: number, c0: number, src: Mat): void {
  if (r0 + src.rows > dst.rows || c0 + src.cols > dst.cols) throw new RangeError('setBlock: block does not fit');
  for (let i = 0; i < src.rows; i++) dst.data.set(src.data.subarray(i * src.cols, (i + 1) * src.cols), (r0 + i) * dst.cols + c0);
}

/** Stacks matrices with equal column counts on top of each other. */
export function vstack(parts: readonly Mat[]): Mat {
  const cols = parts[0]!.cols;
  const rows = parts.reduce((s, p) => s + p.rows, 0);
  const out = zeros(rows, cols);
  let r = 0;
  for (const p of parts) {
    if (p.cols !== cols) throw new RangeError('vstack: column counts differ');
    out.data.set(p.data, r * cols);
    r += p.rows;
  }
  return out;
}

export function map(a: Mat, f: (x: number) => number): Mat {
  const out = zeros(a.rows, a.cols);
  for (let i = 0; i < a.data.length; i++) out.data[i] = f(a.data[i]!);
  return out;
}

export function maxAbs(a: Mat): number {
  let m = 0;
  for (const x of a.data) m = Math.max(m, Math.abs(x));
  return m;
}

export function maxAbsDiff(a: Mat, b: Mat): number {
  sameShape(a, b, 'maxAbsDiff');
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  return m;
}

/** Numerically stable softmax of a vector (used by the oracle and the LM-head loss gradient). */
export function softmaxVector(x: ArrayLike<number>): Float64Array {
  let mx = -Infinity;
  for (let i = 0; i < x.length; i++) mx = Math.max(mx, x[i]!);
  const out = new Float64Array(x.length);
  let s = 0;
  for (let i = 0; i < x.length; i++) {
    out[i] = Math.exp(x[i]! - mx);
    s += out[i]!;
  }
  for (let i = 0; i < x.length; i++) out[i]! /= s;
  return out;
}
