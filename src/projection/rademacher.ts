/**
 * A dense Rademacher (±1) Johnson–Lindenstrauss projection that never exists as a whole matrix and gives
 * the same bytes on every machine, thread count, batch split and shard.
 *
 * Why counter-based: entry P[i, j] is a pure function of (seed, i, j) — one Philox block per (row,
 * 128-column chunk), one bit per entry — so any block of rows can be generated on its own, by any
 * worker, in any order. LESS's reference draws its matrix per GPU tile (fast_jl) or per 128-column block
 * with torch's generator, so its features differ across GPU models; this one does not.
 *
 * Why the arithmetic is exact: a GEMM's summation order depends on the BLAS kernel and thread split, so
 * floating-point X·P is not reproducible across machines. We quantize each row of each 1024-row block of
 * X to a 26-bit integer (two 13-bit limbs, power-of-two scale from the block row's max), so every partial
 * sum of ±limbs over 1024 rows is an integer below 2^23: exact in float32 in any order. The fast
 * onnxruntime SGEMM and a plain loop therefore return identical integers, and the blocks are combined in
 * float64 in a fixed order. The quantization keeps 26 bits relative to the largest entry of each block
 * row, more than float32's 24.
 *
 * Scaled by 1/√outDim, so E‖Px‖² = ‖x‖² and ⟨Px, Py⟩ ≈ ⟨x, y⟩ (the reference's projector is unscaled;
 * cosines, which LESS uses, are the same).
 */
import { LmtuneError } from '../util/errors.ts';
import { philox4x32, seedKey } from '../util/rng.ts';
import { Graph, compile, type Backend, type Executable } from '../engine/index.ts';

/** rows of P per exact block: 1024 · (2^13 − 1) < 2^23 keeps every float32 partial sum exact */
export const BLOCK_ROWS = 1024;
const LIMB = 8192; // 2^13
const STREAM = 0x4a4c5250; // 'JLRP': the projection's Philox stream, apart from MeZO's and the Rng's

/**
 * Compiled ±1 GEMM graphs by shape and thread count, shared by every projection: the matrix is an input,
 * not a constant, so a Kronecker projection's many small per-layer factors (kronecker.ts) reuse one graph
 * per shape instead of compiling their own.
 */
const GEMMS = new Map<string, Promise<Executable>>();
const MAX_GEMMS = 32;

export interface RademacherOptions {
  seed: number;
  inDim: number;
  outDim: number;
  /** 'ort' (onnxruntime SGEMM, default) or 'ref' (a plain loop); both give identical bytes */
  backend?: Backend;
  threads?: number;
}

export class RademacherProjection {
  readonly seed: number;
  readonly inDim: number;
  readonly outDim: number;
  readonly backend: Backend;
  private readonly threads: number | undefined;
  private readonly key: [number, number];

  constructor(opts: RademacherOptions) {
    if (!Number.isInteger(opts.inDim) || opts.inDim < 1) throw new LmtuneError('CONFIG', `projection input dimension must be a positive integer, got ${opts.inDim}`);
    if (!Number.isInteger(opts.outDim) || opts.outDim < 1) throw new LmtuneError('CONFIG', `projection dimension must be a positive integer, got ${opts.outDim}`, 'e.g. --proj-dim 8192');
    this.seed = opts.seed;
    this.inDim = opts.inDim;
    this.outDim = opts.outDim;
    this.backend = opts.backend ?? 'ort';
    this.threads = opts.threads;
    this.key = seedKey(opts.seed);
  }

  /** P[i, j] = ±1/√outDim */
  entry(i: number, j: number): number {
    const buf = new Uint32Array(4);
    philox4x32(i >>> 0, Math.floor(i / 4294967296) >>> 0, Math.floor(j / 128), STREAM, this.key[0], this.key[1], buf, 0);
    const b = j % 128;
    const bit = (buf[b >>> 5]! >>> (b & 31)) & 1;
    return (bit ? 1 : -1) / Math.sqrt(this.outDim);
  }

  /** rows [rowStart, rowStart + rows) of P, row-major [rows, outDim], as ±1/√outDim */
  block(rowStart: number, rows: number): Float32Array {
    const out = this.signs(rowStart, rows);
    const s = 1 / Math.sqrt(this.outDim);
    for (let i = 0; i < out.length; i++) out[i] = out[i]! * s;
    return out;
  }

  /** the same rows as ±1 (unscaled): what the exact GEMM multiplies */
  private signs(rowStart: number, rows: number, out = new Float32Array(rows * this.outDim)): Float32Array {
    const D = this.outDim;
    const buf = new Uint32Array(4);
    // ±1.0 differ only in the sign bit: write 0x3f800000 with bit 31 taken from the random bit
    const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
    const [k0, k1] = this.key;
    for (let r = 0; r < rows; r++) {
      const i = rowStart + r;
      const c0 = i >>> 0;
      const c1 = Math.floor(i / 4294967296) >>> 0;
      const base = r * D;
      for (let chunk = 0; chunk * 128 < D; chunk++) {
        philox4x32(c0, c1, chunk, STREAM, k0, k1, buf, 0);
        const end = Math.min(128, D - chunk * 128);
        const o = base + chunk * 128;
        for (let w = 0; w * 32 < end; w++) {
          // a set bit means +1: flip it into the sign bit's "clear" state
          const word = ~buf[w]!;
          const lim = Math.min(32, end - w * 32);
          const ow = o + w * 32;
          for (let b = 0; b < lim; b++) bits[ow + b] = 0x3f800000 | ((word << (31 - b)) & 0x80000000);
        }
      }
    }
    return out;
  }

  /** Y[n, outDim] = X[n, inDim] · P, X row-major */
  async project(x: Float32Array | Float64Array, n: number): Promise<Float32Array> {
    if (x.length !== n * this.inDim) throw new LmtuneError('SHAPE', `projection input: ${x.length} values for ${n} rows of ${this.inDim}`);
    const acc = new Float64Array(n * this.outDim);
    await this.accumulateExact(x, n, this.inDim, 0, this.inDim, acc);
    return this.finish(acc);
  }

  /**
   * Y[n, outDim] += X_block[n, rows] · P[rowStart : rowStart + rows, :], streaming over parameter blocks.
   * Results are identical for any thread count and machine; splitting X into different blocks gives the
   * same bytes when every block starts at a multiple of BLOCK_ROWS (the exact blocks are global).
   */
  async accumulate(xBlock: Float32Array | Float64Array, n: number, rowStart: number, rows: number, y: Float64Array): Promise<void> {
    if (xBlock.length !== n * rows) throw new LmtuneError('SHAPE', `projection block: ${xBlock.length} values for ${n} rows of ${rows}`);
    if (rowStart < 0 || rowStart + rows > this.inDim) throw new LmtuneError('SHAPE', `projection block rows [${rowStart}, ${rowStart + rows}) outside [0, ${this.inDim})`);
    if (y.length !== n * this.outDim) throw new LmtuneError('SHAPE', `projection output: ${y.length} values for ${n} rows of ${this.outDim}`);
    await this.accumulateExact(xBlock, n, rows, rowStart, rows, y);
  }

  /** the float64 accumulator scaled by 1/√outDim, rounded to float32 */
  finish(acc: Float64Array): Float32Array {
    const s = 1 / Math.sqrt(this.outDim);
    const out = new Float32Array(acc.length);
    for (let i = 0; i < acc.length; i++) out[i] = acc[i]! * s;
    return out;
  }

  private async accumulateExact(x: Float32Array | Float64Array, n: number, stride: number, rowStart: number, rows: number, acc: Float64Array): Promise<void> {
    const D = this.outDim;
    let r0 = rowStart;
    const end = rowStart + rows;
    while (r0 < end) {
      const r1 = Math.min(end, (Math.floor(r0 / BLOCK_ROWS) + 1) * BLOCK_ROWS);
      const R = r1 - r0;
      // two 13-bit limbs per entry: rows 0..n-1 hold the high limbs, n..2n-1 the low ones
      const limbs = new Float32Array(2 * n * R);
      const scales = new Float64Array(n);
      for (let e = 0; e < n; e++) {
        const off = e * stride + (r0 - rowStart);
        let max = 0;
        for (let k = 0; k < R; k++) {
          const v = Math.abs(x[off + k]!);
          if (v > max || v !== v) max = v; // NaN propagates to the check below
        }
        if (!Number.isFinite(max)) throw new LmtuneError('NUMERIC', `projection input row ${e} has a non-finite value in rows [${r0}, ${r1})`);
        if (max === 0) continue;
        // scale = 2^e with max/scale < 2^26: q = round(x/scale) fits in 26 bits + sign
        const exp = Math.floor(Math.log2(max)) + 1 - 26;
        const scale = 2 ** exp;
        scales[e] = scale;
        for (let k = 0; k < R; k++) {
          const q = Math.round(x[off + k]! / scale);
          const hi = Math.trunc(q / LIMB);
          limbs[e * R + k] = hi;
          limbs[(n + e) * R + k] = q - hi * LIMB;
        }
      }
      const prod = await this.gemm(limbs, 2 * n, R, this.signs(r0, R));
      for (let e = 0; e < n; e++) {
        const s = scales[e]!;
        if (s === 0) continue;
        const hi = e * D;
        const lo = (n + e) * D;
        const a = e * D;
        for (let j = 0; j < D; j++) acc[a + j] = acc[a + j]! + (prod[hi + j]! * LIMB + prod[lo + j]!) * s;
      }
      r0 = r1;
    }
  }

  /** [m, k] · [k, D] of integer-valued float32 whose products sum exactly */
  private async gemm(a: Float32Array, m: number, k: number, b: Float32Array): Promise<Float32Array> {
    const D = this.outDim;
    if (this.backend === 'ref') {
      const out = new Float32Array(m * D);
      for (let i = 0; i < m; i++) {
        for (let t = 0; t < k; t++) {
          const v = a[i * k + t]!;
          if (v === 0) continue;
          const bo = t * D;
          const oo = i * D;
          for (let j = 0; j < D; j++) out[oo + j] = out[oo + j]! + v * b[bo + j]!;
        }
      }
      return out;
    }
    const key = `${m}x${k}x${D}|${this.threads ?? ''}`;
    let exe = GEMMS.get(key);
    if (!exe) {
      const g = new Graph('projection');
      const out = g.input('a', [m, k]).matmul(g.input('b', [k, D]));
      exe = compile({ y: out }, 'ort', this.threads !== undefined ? { threads: this.threads } : {});
      GEMMS.set(key, exe);
      if (GEMMS.size > MAX_GEMMS) GEMMS.delete(GEMMS.keys().next().value as string);
    }
    const res = await (await exe).run({ a, b });
    return res.y!.data as Float32Array;
  }
}
