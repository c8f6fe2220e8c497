/**
 * The three eNTK formulas of Malladi et al. (2023), as the reference computes them (spec A1), with
 * g(x) = ∇θ f(x) ∈ R^{C×P} and i the outer (training) example:
 *
 *   sgd                K[(i,c),(j,c')] = ⟨g_c(x_i), g_c'(x_j)⟩
 *   signgd             K[(i,c),(j,c')] = ⟨sign g_c(x_i), sign g_c'(x_j)⟩
 *   asymmetric-signgd  K[(i,c),(j,c')] = ⟨sign g_c(x_i), g_c'(x_j)⟩       (sign on the outer side only)
 *
 * Why the sign sits on the training example for A-SignGD: one SignGD step on x_i moves θ by
 * −η·sign(χ_i)·sign g(x_i), so the output at ξ moves by −η·sign(χ_i)·⟨g(ξ), sign g(x_i)⟩.
 *
 * Every kernel is a sum over parameter blocks of  op_out(A) · op_in(B)ᵀ  for gradient row blocks A, B;
 * `Gemm` computes one such product in float64 (a plain loop) or float32 (onnxruntime, as the reference's
 * fp32 jvp; sign products stay exact integers in float32 below 2^24 columns per block).
 */
import { Graph, compile, type Executable } from '../engine/index.ts';
import { LmtuneError } from '../util/errors.ts';

export const KERNEL_FORMULAS = ['sgd', 'signgd', 'asymmetric-signgd'] as const;
export type KernelFormula = (typeof KERNEL_FORMULAS)[number];

export type Rows = Float32Array | Float64Array;

/** whether the outer (training) side of the product is replaced by its sign */
export function outerIsSign(f: KernelFormula): boolean {
  return f !== 'sgd';
}
/** whether the inner side is replaced by its sign */
export function innerIsSign(f: KernelFormula): boolean {
  return f === 'signgd';
}

/** sign(x) ∈ {−1, 0, 1} elementwise, as torch.sign */
export function signOf(x: Rows): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    out[i] = v > 0 ? 1 : v < 0 ? -1 : 0;
  }
  return out;
}

/** out[i, j] += Σ_k a[i, k] · b[j, k]  for a [n, p], b [m, p]; out [n, m] with row stride `ld` at offset `at` */
export interface Gemm {
  readonly name: 'float64' | 'ort';
  addABt(a: Rows, n: number, b: Rows, m: number, p: number, out: Float64Array, ld: number, at?: number): Promise<void>;
}

/** the exact reference: float64 products and sums, any input precision */
export const float64Gemm: Gemm = {
  name: 'float64',
  addABt(a, n, b, m, p, out, ld, at = 0) {
    addABtFloat64(a, n, b, m, p, out, ld, at);
    return Promise.resolve();
  },
};

/** the synchronous float64 product behind `float64Gemm` */
export function addABtFloat64(a: Rows, n: number, b: Rows, m: number, p: number, out: Float64Array, ld: number, at = 0): void {
  check(a, n, b, m, p);
  for (let i = 0; i < n; i++) {
    const ao = i * p;
    for (let j = 0; j < m; j++) {
      const bo = j * p;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      let k = 0;
      for (; k + 3 < p; k += 4) {
        s0 += a[ao + k]! * b[bo + k]!;
        s1 += a[ao + k + 1]! * b[bo + k + 1]!;
        s2 += a[ao + k + 2]! * b[bo + k + 2]!;
        s3 += a[ao + k + 3]! * b[bo + k + 3]!;
      }
      for (; k < p; k++) s0 += a[ao + k]! * b[bo + k]!;
      const o = at + i * ld + j;
      out[o] = out[o]! + (s0 + s1 + s2 + s3);
    }
  }
}

function check(a: Rows, n: number, b: Rows, m: number, p: number): void {
  if (a.length !== n * p || b.length !== m * p) throw new LmtuneError('SHAPE', `kernel block product: [${a.length}] and [${b.length}] values for ${n}×${p} and ${m}×${p}`);
}

/**
 * onnxruntime SGEMM over column chunks of a fixed width (zero-padded), each chunk's float32 product added
 * into the float64 result: the reference's fp32 inner products with float64 accumulation across blocks.
 */
export class OrtGemm implements Gemm {
  readonly name = 'ort';
  private readonly exes = new Map<string, Promise<Executable>>();
  constructor(
    private readonly threads?: number,
    private readonly chunk = 16384,
  ) {}

  private exe(n: number, m: number): Promise<Executable> {
    const key = `${n}x${m}`;
    let e = this.exes.get(key);
    if (!e) {
      const g = new Graph('kernel-gemm');
      const y = g.input('a', [n, this.chunk]).matmul(g.input('b', [m, this.chunk]), { transB: true });
      e = compile({ y }, 'ort', this.threads !== undefined ? { threads: this.threads } : {});
      this.exes.set(key, e);
      if (this.exes.size > 8) this.exes.delete(this.exes.keys().next().value as string);
    }
    return e;
  }

  async addABt(a: Rows, n: number, b: Rows, m: number, p: number, out: Float64Array, ld: number, at = 0): Promise<void> {
    check(a, n, b, m, p);
    const W = this.chunk;
    const exe = await this.exe(n, m);
    const ca = new Float32Array(n * W);
    const cb = new Float32Array(m * W);
    for (let k0 = 0; k0 < p; k0 += W) {
      const w = Math.min(W, p - k0);
      if (w < W) {
        ca.fill(0);
        cb.fill(0);
      }
      for (let i = 0; i < n; i++) ca.set(a.subarray(i * p + k0, i * p + k0 + w), i * W);
      for (let j = 0; j < m; j++) cb.set(b.subarray(j * p + k0, j * p + k0 + w), j * W);
      const y = (await exe.run({ a: ca, b: cb })).y!.data as Float32Array;
      for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) out[at + i * ld + j] = out[at + i * ld + j]! + y[i * m + j]!;
    }
  }
}
