/**
 * A per-matrix Kronecker-factored Johnson–Lindenstrauss projection (LoGra, Choe et al. 2024) of gradients
 * of linear maps y_t = W x_t, computed from the maps' inputs x_t and output gradients δ_t = ∂L/∂y_t.
 *
 * For W of shape [out, in], the gradient is G = Σ_t δ_t x_tᵀ and the feature is
 *
 *   P_out G P_inᵀ = Σ_t (P_out δ_t)(P_in x_t)ᵀ   [kOut, kIn]
 *
 * which is (P_out ⊗ P_in)·vec(G) with vec row-major: a JL projection of G built from two small factors,
 * so neither G nor a per-example P·vector is formed. The cost per token is out·kOut + in·kIn (plus
 * kOut·kIn for the outer product) instead of out·in·d.
 *
 * Factors: P_out and P_in are dense counter-based Rademacher matrices (rademacher.ts) seeded by
 * (seed, matrix name, side), so they are pure functions of the configuration and the projections of
 * x_t and δ_t use its exact integer GEMM: any machine, thread count, batch or shard split gives the same
 * bytes for the same x_t and δ_t. The per-example sum over tokens runs in float64 in token order.
 *
 * Factorization rule (how --proj-dim d is split so that Σ_m keep_m = d exactly):
 * 1. budgets: every matrix gets floor(d/M) coordinates, the first d mod M matrices (in layout order) one
 *    more; a budget above the matrix's size out·in is cut to it and the excess shared out again the same
 *    way among the others (d may not exceed the total gradient size);
 * 2. factors of a budget b: s = ceil(√b); when in < s, kIn = in and kOut = ceil(b/in); else when out < s,
 *    kOut = out and kIn = ceil(b/out); else kOut = s, kIn = ceil(b/s) (so kOut·kIn ≥ b, the small LoRA
 *    side is kept whole, the other side takes the rest);
 * 3. a side kept whole (kOut = out, or kIn = in) uses the identity instead of a square random factor:
 *    a square ±1/√k matrix is not orthogonal and for small k often singular (more than half of random
 *    8×8 ones are), so it would lose or distort directions of G and compress nothing; with the LoRA rank r as the small side this is every
 *    LoRA matrix (A [r, in]: P_out = I; B [out, r]: P_in = I). When both sides would be whole the input
 *    side stays random unless the whole matrix is kept (b = out·in: the block is G itself);
 * 4. the feature keeps the first b of the kOut·kIn coordinates in row-major order, each scaled so the
 *    kept block has E‖z‖² = ‖G‖² and the blocks add up to an unbiased estimate of inner products: with
 *    both factors random every coordinate has E[z²] = ‖G‖²/(kOut·kIn), scale √(kOut·kIn/b); with
 *    P_out = I coordinate (a, c) has E[z²] = ‖G_a,:‖²/kIn, so row a's n_a kept coordinates are scaled by
 *    √(kIn/n_a) (n_a = kIn except for the last row); with P_in = I, column c's n_c kept coordinates by
 *    √(kOut/n_c).
 */
import { LmtuneError } from '../util/errors.ts';
import { seedKey } from '../util/rng.ts';
import type { Backend } from '../engine/index.ts';
import { RademacherProjection } from './rademacher.ts';

export interface KroneckerMatrix {
  /** the parameter's name (seeds its factors) */
  name: string;
  out: number;
  in: number;
}

export interface KroneckerFactor extends KroneckerMatrix {
  kOut: number;
  kIn: number;
  /** coordinates kept (the first `keep` of the row-major [kOut, kIn] block) */
  keep: number;
  /** where this matrix's block starts in the feature */
  offset: number;
  /** per kept coordinate, its unbiasing scale (rule step 4) */
  scales: Float64Array;
  /** Y = X·P with P [out, kOut]: row t of Y is (P_out δ_t)ᵀ; null: the identity (kOut = out, step 3) */
  pOut: RademacherProjection | null;
  /** P [in, kIn]: row t of Y is (P_in x_t)ᵀ; null: the identity (kIn = in) */
  pIn: RademacherProjection | null;
}

/** per-matrix budgets summing to d (rule steps 1), in matrix order */
export function kroneckerBudgets(matrices: readonly KroneckerMatrix[], d: number): number[] {
  const M = matrices.length;
  const size = matrices.map((m) => m.out * m.in);
  const total = size.reduce((a, b) => a + b, 0);
  if (M === 0) throw new LmtuneError('CONFIG', 'a Kronecker projection needs at least one matrix');
  if (!Number.isInteger(d) || d < M) throw new LmtuneError('CONFIG', `the Kronecker projection gives every one of the ${M} LoRA matrices at least one coordinate: --proj-dim must be an integer ≥ ${M}, got ${d}`, `e.g. --proj-dim ${Math.max(8192, M)}`);
  if (d > total) throw new LmtuneError('CONFIG', `--proj-dim ${d} exceeds the LoRA gradient size ${total}`, 'use a smaller --proj-dim (a projection does not add information)');
  const budget = new Array<number>(M).fill(0);
  let open = [...matrices.keys()];
  let left = d;
  while (left > 0) {
    const share = Math.floor(left / open.length);
    const extra = left - share * open.length;
    const next: number[] = [];
    let given = 0;
    open.forEach((m, k) => {
      const want = share + (k < extra ? 1 : 0);
      const got = Math.min(want, size[m]! - budget[m]!);
      budget[m] = budget[m]! + got;
      given += got;
      if (budget[m]! < size[m]!) next.push(m);
    });
    left -= given;
    open = next;
  }
  return budget;
}

/** (kOut, kIn) for a budget (rule step 2) */
export function kroneckerShape(out: number, inDim: number, b: number): { kOut: number; kIn: number } {
  const s = Math.ceil(Math.sqrt(b));
  if (inDim < s) return { kIn: inDim, kOut: Math.ceil(b / inDim) };
  if (out < s) return { kOut: out, kIn: Math.ceil(b / out) };
  return { kOut: s, kIn: Math.ceil(b / s) };
}

/**
 * Which sides are the identity and the scale of each kept coordinate (rule steps 3 and 4). Exported for
 * the tests, which check the unbiasedness it promises.
 */
export function kroneckerScales(out: number, inDim: number, kOut: number, kIn: number, keep: number): { idOut: boolean; idIn: boolean; scales: Float64Array } {
  const idOut = kOut === out;
  const idIn = kIn === inDim && (!idOut || keep === out * inDim);
  const scales = new Float64Array(keep);
  if (idOut && idIn) scales.fill(1);
  else if (idOut) {
    // rows 0..kOut−2 are whole; the last row keeps keep − (kOut−1)·kIn ≥ 1 coordinates
    for (let j = 0; j < keep; j++) {
      const a = Math.floor(j / kIn);
      const na = a < kOut - 1 ? kIn : keep - (kOut - 1) * kIn;
      scales[j] = Math.sqrt(kIn / na);
    }
  } else if (idIn) {
    // column c is kept in every row but the last, which keeps columns 0..lastCols−1
    const lastCols = keep - (kOut - 1) * kIn;
    for (let j = 0; j < keep; j++) scales[j] = Math.sqrt(kOut / (j % kIn < lastCols ? kOut : kOut - 1));
  } else scales.fill(Math.sqrt((kOut * kIn) / keep));
  return { idOut, idIn, scales };
}

/** a numeric seed in [0, 2^53) from a name: the factor's own Rademacher matrix */
function factorSeed(seed: number, name: string, side: 'in' | 'out'): number {
  const [h0, h1] = seedKey(`kronecker/${seed}/${name}/${side}`);
  return h0 + (h1 & 0x1fffff) * 4294967296;
}

export interface KroneckerOptions {
  seed: number;
  matrices: readonly KroneckerMatrix[];
  outDim: number;
  backend?: Backend;
  threads?: number;
}

export class KroneckerProjection {
  readonly kind = 'kronecker';
  readonly seed: number;
  readonly outDim: number;
  /** Σ out·in: the dimension of the gradient it projects */
  readonly inDim: number;
  readonly factors: KroneckerFactor[];

  constructor(opts: KroneckerOptions) {
    this.seed = opts.seed;
    this.outDim = opts.outDim;
    this.inDim = opts.matrices.reduce((a, m) => a + m.out * m.in, 0);
    const budgets = kroneckerBudgets(opts.matrices, opts.outDim);
    let offset = 0;
    const common = { ...(opts.backend ? { backend: opts.backend } : {}), ...(opts.threads !== undefined ? { threads: opts.threads } : {}) };
    this.factors = opts.matrices.map((m, i) => {
      const keep = budgets[i]!;
      const { kOut, kIn } = kroneckerShape(m.out, m.in, keep);
      const { idOut, idIn, scales } = kroneckerScales(m.out, m.in, kOut, kIn, keep);
      const f: KroneckerFactor = {
        ...m,
        kOut,
        kIn,
        keep,
        offset,
        scales,
        pOut: idOut ? null : new RademacherProjection({ seed: factorSeed(opts.seed, m.name, 'out'), inDim: m.out, outDim: kOut, ...common }),
        pIn: idIn ? null : new RademacherProjection({ seed: factorSeed(opts.seed, m.name, 'in'), inDim: m.in, outDim: kIn, ...common }),
      };
      offset += keep;
      return f;
    });
  }

  /**
   * Adds matrix m's block of the features of examples 0..n−1 into y [n, outDim]. Token rows: x [rows, in]
   * (inputs) and delta [rows, out] (output gradients), example e owning rows [seg[e], seg[e+1]).
   * Optional per-coordinate scales multiply x_t and δ_t first (the factored Adam preconditioner).
   * `weight` multiplies the block (float64). Rows may be padded with zeros beyond seg[n].
   */
  async accumulate(
    m: number,
    x: Float32Array,
    delta: Float32Array,
    seg: Int32Array,
    y: Float64Array,
    o: { inScale?: Float64Array; outScale?: Float64Array; weight?: number } = {},
  ): Promise<void> {
    const f = this.factors[m]!;
    const n = seg.length - 1;
    const rows = x.length / f.in;
    if (!Number.isInteger(rows) || delta.length !== rows * f.out || rows < seg[n]!) throw new LmtuneError('SHAPE', `Kronecker block '${f.name}': ${x.length} inputs and ${delta.length} output gradients for ${seg[n]} token rows of ${f.in} and ${f.out}`);
    if (y.length !== n * this.outDim) throw new LmtuneError('SHAPE', `Kronecker output: ${y.length} values for ${n} rows of ${this.outDim}`);
    const xs = o.inScale ? scaleColumns(x, f.in, o.inScale) : x;
    const ds = o.outScale ? scaleColumns(delta, f.out, o.outScale) : delta;
    const px = f.pIn ? await f.pIn.project(xs, rows) : xs;
    const pd = f.pOut ? await f.pOut.project(ds, rows) : ds;
    const { kOut, kIn, keep, scales } = f;
    const w = o.weight ?? 1;
    const acc = new Float64Array(kOut * kIn);
    for (let e = 0; e < n; e++) {
      acc.fill(0);
      for (let t = seg[e]!; t < seg[e + 1]!; t++) {
        for (let a = 0; a < kOut; a++) {
          const da = pd[t * kOut + a]!;
          if (da === 0) continue;
          const ao = a * kIn;
          const xo = t * kIn;
          for (let c = 0; c < kIn; c++) acc[ao + c] = acc[ao + c]! + da * px[xo + c]!;
        }
      }
      const yo = e * this.outDim + f.offset;
      for (let j = 0; j < keep; j++) y[yo + j] = y[yo + j]! + w * scales[j]! * acc[j]!;
    }
  }

  /** matrix m's block of a whole matrix C [out, in] (row-major): scales ∘ (P_out C P_inᵀ) flattened, kept part */
  async projectMatrix(m: number, c: Float32Array): Promise<Float64Array> {
    const f = this.factors[m]!;
    if (c.length !== f.out * f.in) throw new LmtuneError('SHAPE', `Kronecker block '${f.name}': a matrix of ${c.length} values, expected ${f.out}×${f.in}`);
    const right = f.pIn ? await f.pIn.project(c, f.out) : c; // C P_inᵀ [out, kIn]
    const t = new Float32Array(f.kIn * f.out);
    for (let a = 0; a < f.out; a++) for (let b = 0; b < f.kIn; b++) t[b * f.out + a] = right[a * f.kIn + b]!;
    const both = f.pOut ? await f.pOut.project(t, f.kIn) : t; // (P_out C P_inᵀ)ᵀ [kIn, kOut]
    const res = new Float64Array(f.keep);
    for (let j = 0; j < f.keep; j++) res[j] = f.scales[j]! * both[(j % f.kIn) * f.kOut + Math.floor(j / f.kIn)]!;
    return res;
  }

  /**
   * Y[n, outDim] from already-formed gradients X[n, inDim] (matrices concatenated in order, each
   * row-major): the same map as `accumulate`, for callers that hold per-example gradients (the exact
   * Adam feature, comparisons). The structured path (select/kronecker.ts) never calls it.
   */
  async project(x: Float32Array | Float64Array, n: number): Promise<Float32Array> {
    if (x.length !== n * this.inDim) throw new LmtuneError('SHAPE', `Kronecker projection input: ${x.length} values for ${n} rows of ${this.inDim}`);
    const y = new Float32Array(n * this.outDim);
    for (let e = 0; e < n; e++) {
      let o = e * this.inDim;
      for (const [m, f] of this.factors.entries()) {
        const size = f.out * f.in;
        y.set(await this.projectMatrix(m, Float32Array.from(x.subarray(o, o + size))), e * this.outDim + f.offset);
        o += size;
      }
    }
    return y;
  }

  /** the kept rows of scales ∘ (P_out ⊗ P_in) for matrix m, [keep, out·in] float64 (tests: the dense equivalent) */
  denseRows(m: number): Float64Array {
    const f = this.factors[m]!;
    const identity = (k: number): Float32Array => Float32Array.from({ length: k * k }, (_, i) => (i % (k + 1) === 0 ? 1 : 0));
    const po = f.pOut ? f.pOut.block(0, f.out) : identity(f.out); // [out, kOut]
    const pi = f.pIn ? f.pIn.block(0, f.in) : identity(f.in); // [in, kIn]
    const D = f.out * f.in;
    const res = new Float64Array(f.keep * D);
    for (let j = 0; j < f.keep; j++) {
      const a = Math.floor(j / f.kIn);
      const c = j % f.kIn;
      for (let p = 0; p < f.out; p++) for (let q = 0; q < f.in; q++) res[j * D + p * f.in + q] = f.scales[j]! * po[p * f.kOut + a]! * pi[q * f.kIn + c]!;
    }
    return res;
  }
}

function scaleColumns(x: Float32Array, cols: number, s: Float64Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! * s[i % cols]!;
  return out;
}
