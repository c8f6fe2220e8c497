/**
 * The scoring kernel of LESS matching over a datastore, as a WebAssembly SIMD module assembled here
 * (no toolchain: the module is ~400 bytes, encoded below).
 *
 * Why WebAssembly: `select match` over 10⁶ rows × 8192 f16 values is 8·10⁹ conversions and K·8·10⁹
 * multiply-adds. In plain JavaScript the f16 table lookup alone costs ~3.5 ns a value (28 s) and a dot
 * product ~0.9 ns a multiply-add; 128-bit SIMD does both ~8× faster. Unlike a BLAS (onnxruntime's
 * MatMul picks AVX2/AVX-512 kernels per machine and splits sums per thread), WebAssembly arithmetic is
 * IEEE and fully specified (no fused multiply-add, no relaxed SIMD), so the scores are the same bits on
 * every machine: selections do not differ across hardware.
 *
 * `rows(src, n, d, f16, scratch, dp, v, k, out)`: for each of n rows at `src` (d values, f16 or f32,
 * contiguous), convert the row to f32 into a scratch row (KERNEL_ROWS rows of dp ≥ d floats at
 * `scratch`, dp a multiple of 16, the padding zero), then write out[r·(k+1) + 0] = ‖row‖² and out[r·(k+1) + 1 + t] = ⟨row, v_t⟩ for the k vectors
 * v_t at v (f32, zero-padded to dp, laid out by `interleavedIndex`), as f64. k must be a multiple of 4 (pad with zero vectors):
 * targets go four at a time so each converted value is loaded once for four products (the loads, not
 * the arithmetic, bound a dot product), and every target gets the same arithmetic whatever k is. Rows
 * go KERNEL_ROWS at a time so that each group of four targets (4 × 32 KB at d = 8192) is read from
 * cache for 8 rows: with MMLU's 57 subtasks the targets (1.9 MB) do not fit a core's L2, and reading
 * them once per row made the kernel memory-bound.
 *
 * The dot products accumulate f32 products in f32x4 accumulators over blocks of 256 values and add each
 * block's sum into an f64 pair, so a sum of 8192 terms carries the rounding of 32-term f32 sums
 * (relative error ~1e-7, far below the f16 storage rounding of ~5e-4). f16 → f32 is exact: the magnitude
 * bits shifted into an f32 and multiplied by 2¹¹² (subnormal halves included); infinities and NaNs are not
 * features and are not handled.
 */

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const I32 = 0x7f;
const V128 = 0x7b;

// opcodes (WebAssembly core 2.0, SIMD prefix 0xfd)
const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  if: [0x04, 0x40],
  else: [0x05],
  end: [0x0b],
  br: (l: number) => [0x0c, ...uleb(l)],
  brIf: (l: number) => [0x0d, ...uleb(l)],
  select: [0x1b],
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  i32: (x: number) => [0x41, ...sleb(x)],
  f32: (bits: number) => [0x43, bits & 0xff, (bits >>> 8) & 0xff, (bits >>> 16) & 0xff, (bits >>> 24) & 0xff],
  i32Load: (offset = 0) => [0x28, 2, ...uleb(offset)],
  i32Load16u: (offset = 0) => [0x2f, 1, ...uleb(offset)],
  i32Store: (offset = 0) => [0x36, 2, ...uleb(offset)],
  f64Store: (offset = 0) => [0x39, 3, ...uleb(offset)],
  i32Eqz: [0x45],
  i32LtU: [0x49],
  i32GtU: [0x4b],
  i32GeU: [0x4f],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Mul: [0x6c],
  i32And: [0x71],
  i32Or: [0x72],
  i32Shl: [0x74],
  f32Mul: [0x94],
  f64Add: [0xa0],
  i32ReinterpretF32: [0xbc],
  f32ReinterpretI32: [0xbe],
  simd: (code: number, ...imm: number[]) => [0xfd, ...uleb(code), ...imm],
};
const v128Load = (offset = 0): number[] => op.simd(0x00, 0, ...uleb(offset));
const v128Load16x4u = (offset = 0): number[] => op.simd(0x04, 0, ...uleb(offset));
const v128Store = (offset = 0): number[] => op.simd(0x0b, 0, ...uleb(offset));
const v128Zero = (): number[] => op.simd(0x0c, ...new Array<number>(16).fill(0));
const swapHalves = (): number[] => op.simd(0x0d, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
const i32x4Splat = op.simd(0x11);
const f32x4Splat = op.simd(0x13);
const f64x2Lane = (l: number): number[] => op.simd(0x21, l);
const v128And = op.simd(0x4e);
const v128Or = op.simd(0x50);
const f64x2PromoteLow = op.simd(0x5f);
const i32x4Shl = op.simd(0xab);
const f32x4Add = op.simd(0xe4);
const f32x4Mul = op.simd(0xe6);
const f64x2Add = op.simd(0xf0);

/** 2¹¹² as f32 bits: scales an f16's magnitude bits, shifted into an f32, to the f16's value */
const POW2_112 = 0x77800000;

/** rows converted and kept in the scratch area at once: their dot products reuse each target group from cache */
export const KERNEL_ROWS = 8;

function body(): number[] {
  // params
  const SRC = 0, N = 1, D = 2, F16 = 3, SCR = 4, DP = 5, V = 6, K = 7, OUT = 8;
  // i32 locals
  const R = 9, J = 10, P = 11, T = 12, W0 = 13, BE = 14, DPB = 15, H = 16, XE = 17, I = 18, NB = 19, XR = 20;
  // v128 locals
  const A0 = 21, A1 = 22, A2 = 23, A3 = 24, ACC = 25, S = 26, MS = 27, MM = 28, SC = 29, X0 = 30, X1 = 31;
  const CS = [32, 33, 34, 35];
  const BS = [36, 37, 38, 39, 40, 41, 42, 43];
  const c: number[] = [];
  const emit = (...xs: number[][]): void => {
    for (const x of xs) c.push(...x);
  };
  /** BE = min(J + 1024, XE): the end of the 256-value block starting at J */
  const blockEnd = (): void => emit(op.get(J), op.i32(1024), op.i32Add, op.get(XE), op.get(J), op.i32(1024), op.i32Add, op.get(XE), op.i32LtU, op.select, op.set(BE));
  /** out[(R + I)·(K+1) + extra] address, extra given as emitted code */
  const outAddr = (extra: number[][]): void => {
    emit(op.get(OUT), op.get(R), op.get(I), op.i32Add, op.get(K), op.i32(1), op.i32Add, op.i32Mul);
    emit(...extra, op.i32Add, op.i32(8), op.i32Mul, op.i32Add);
  };
  // constants
  emit(op.i32(0x8000), i32x4Splat, op.set(MS));
  emit(op.i32(0x7fff), i32x4Splat, op.set(MM));
  emit(op.f32(POW2_112), f32x4Splat, op.set(SC));
  emit(op.get(DP), op.i32(4), op.i32Mul, op.set(DPB));
  emit(op.i32(0), op.set(R));
  emit(op.block, op.loop);
  {
    emit(op.get(R), op.get(N), op.i32GeU, op.brIf(1));
    // NB = min(KERNEL_ROWS, N − R)
    emit(op.i32(KERNEL_ROWS), op.get(N), op.get(R), op.i32Sub, op.i32(KERNEL_ROWS), op.get(N), op.get(R), op.i32Sub, op.i32LtU, op.select, op.set(NB));
    // phase 1: convert rows R .. R+NB−1 into scratch rows 0 .. NB−1, and their squared norms
    emit(op.i32(0), op.set(I));
    emit(op.block, op.loop);
    {
      emit(op.get(I), op.get(NB), op.i32GeU, op.brIf(1));
      // P = SRC + (R+I)·D·(F16 ? 2 : 4); XR = SCR + I·DPB
      emit(op.get(SRC), op.get(R), op.get(I), op.i32Add, op.get(D), op.i32Mul, op.i32(2), op.i32(4), op.get(F16), op.select, op.i32Mul, op.i32Add, op.set(P));
      emit(op.get(SCR), op.get(I), op.get(DPB), op.i32Mul, op.i32Add, op.set(XR));
      emit(op.i32(0), op.set(J));
      emit(op.get(F16), op.if);
      {
        // four halves at a time
        emit(op.block, op.loop);
        emit(op.get(J), op.i32(4), op.i32Add, op.get(D), op.i32GtU, op.brIf(1));
        emit(op.get(XR), op.get(J), op.i32(4), op.i32Mul, op.i32Add); // store address
        emit(op.get(P), op.get(J), op.i32(2), op.i32Mul, op.i32Add, v128Load16x4u(), op.set(S));
        emit(op.get(S), op.get(MM), v128And, op.i32(13), i32x4Shl, op.get(SC), f32x4Mul);
        emit(op.get(S), op.get(MS), v128And, op.i32(16), i32x4Shl, v128Or);
        emit(v128Store());
        emit(op.get(J), op.i32(4), op.i32Add, op.set(J), op.br(0));
        emit(op.end, op.end);
        // the tail, one at a time
        emit(op.block, op.loop);
        emit(op.get(J), op.get(D), op.i32GeU, op.brIf(1));
        emit(op.get(XR), op.get(J), op.i32(4), op.i32Mul, op.i32Add);
        emit(op.get(P), op.get(J), op.i32(2), op.i32Mul, op.i32Add, op.i32Load16u(), op.set(H));
        emit(op.get(H), op.i32(0x7fff), op.i32And, op.i32(13), op.i32Shl, op.f32ReinterpretI32, op.f32(POW2_112), op.f32Mul, op.i32ReinterpretF32);
        emit(op.get(H), op.i32(0x8000), op.i32And, op.i32(16), op.i32Shl, op.i32Or);
        emit(op.i32Store());
        emit(op.get(J), op.i32(1), op.i32Add, op.set(J), op.br(0));
        emit(op.end, op.end);
      }
      emit(op.else);
      {
        emit(op.block, op.loop);
        emit(op.get(J), op.i32(4), op.i32Add, op.get(D), op.i32GtU, op.brIf(1));
        emit(op.get(XR), op.get(J), op.i32(4), op.i32Mul, op.i32Add);
        emit(op.get(P), op.get(J), op.i32(4), op.i32Mul, op.i32Add, v128Load());
        emit(v128Store());
        emit(op.get(J), op.i32(4), op.i32Add, op.set(J), op.br(0));
        emit(op.end, op.end);
        emit(op.block, op.loop);
        emit(op.get(J), op.get(D), op.i32GeU, op.brIf(1));
        emit(op.get(XR), op.get(J), op.i32(4), op.i32Mul, op.i32Add);
        emit(op.get(P), op.get(J), op.i32(4), op.i32Mul, op.i32Add, op.i32Load());
        emit(op.i32Store());
        emit(op.get(J), op.i32(1), op.i32Add, op.set(J), op.br(0));
        emit(op.end, op.end);
      }
      emit(op.end);
      // the squared norm: four accumulators over 64-byte steps, one f64 pair per 256-value block
      emit(v128Zero(), op.set(ACC));
      emit(op.get(XR), op.set(J));
      emit(op.get(XR), op.get(DPB), op.i32Add, op.set(XE));
      emit(op.block, op.loop);
      {
        emit(op.get(J), op.get(XE), op.i32GeU, op.brIf(1));
        emit(v128Zero(), op.set(A0), v128Zero(), op.set(A1), v128Zero(), op.set(A2), v128Zero(), op.set(A3));
        blockEnd();
        emit(op.loop);
        for (const [a, off] of [
          [A0, 0],
          [A1, 16],
          [A2, 32],
          [A3, 48],
        ] as const) {
          emit(op.get(a), op.get(J), v128Load(off), op.get(J), v128Load(off), f32x4Mul, f32x4Add, op.set(a));
        }
        emit(op.get(J), op.i32(64), op.i32Add, op.set(J));
        emit(op.get(J), op.get(BE), op.i32LtU, op.brIf(0));
        emit(op.end);
        emit(op.get(A0), op.get(A1), f32x4Add, op.get(A2), op.get(A3), f32x4Add, f32x4Add, op.set(S));
        emit(op.get(ACC), op.get(S), f64x2PromoteLow, f64x2Add, op.get(S), op.get(S), swapHalves(), f64x2PromoteLow, f64x2Add, op.set(ACC));
        emit(op.br(0));
      }
      emit(op.end, op.end);
      outAddr([op.i32(0)]);
      emit(op.get(ACC), f64x2Lane(0), op.get(ACC), f64x2Lane(1), op.f64Add, op.f64Store());
      emit(op.get(I), op.i32(1), op.i32Add, op.set(I), op.br(0));
    }
    emit(op.end, op.end);
    // phase 2: the targets, four at a time (k is a multiple of 4), stored interleaved (`interleavedIndex`),
    // each group against the NB scratch rows while it is in cache. Each converted value is loaded once for
    // four products and one moving pointer per stream keeps address arithmetic out of the loop; two
    // accumulators per target over 32-byte steps, one f64 pair per 256-value block.
    emit(op.i32(0), op.set(T));
    emit(op.block, op.loop);
    {
      emit(op.get(T), op.get(K), op.i32GeU, op.brIf(1));
      emit(op.i32(0), op.set(I));
      emit(op.block, op.loop);
      {
        emit(op.get(I), op.get(NB), op.i32GeU, op.brIf(1));
        emit(op.get(V), op.get(T), op.get(DPB), op.i32Mul, op.i32Add, op.set(W0));
        emit(op.get(SCR), op.get(I), op.get(DPB), op.i32Mul, op.i32Add, op.set(J));
        emit(op.get(J), op.get(DPB), op.i32Add, op.set(XE));
        for (const cc of CS) emit(v128Zero(), op.set(cc));
        emit(op.block, op.loop);
        {
          emit(op.get(J), op.get(XE), op.i32GeU, op.brIf(1));
          for (const b of BS) emit(v128Zero(), op.set(b));
          blockEnd();
          emit(op.loop);
          emit(op.get(J), v128Load(0), op.set(X0));
          emit(op.get(J), v128Load(16), op.set(X1));
          for (let t = 0; t < 4; t++) {
            emit(op.get(BS[2 * t]!), op.get(X0), op.get(W0), v128Load(16 * t), f32x4Mul, f32x4Add, op.set(BS[2 * t]!));
            emit(op.get(BS[2 * t + 1]!), op.get(X1), op.get(W0), v128Load(64 + 16 * t), f32x4Mul, f32x4Add, op.set(BS[2 * t + 1]!));
          }
          emit(op.get(J), op.i32(32), op.i32Add, op.set(J));
          emit(op.get(W0), op.i32(128), op.i32Add, op.set(W0));
          emit(op.get(J), op.get(BE), op.i32LtU, op.brIf(0));
          emit(op.end);
          CS.forEach((cc, t) => {
            emit(op.get(BS[2 * t]!), op.get(BS[2 * t + 1]!), f32x4Add, op.set(S));
            emit(op.get(cc), op.get(S), f64x2PromoteLow, f64x2Add, op.get(S), op.get(S), swapHalves(), f64x2PromoteLow, f64x2Add, op.set(cc));
          });
          emit(op.br(0));
        }
        emit(op.end, op.end);
        // out[(R+I)·(K+1) + 1 + T + t] = C_t.lane0 + C_t.lane1
        CS.forEach((cc, t) => {
          outAddr([op.get(T), op.i32(1 + t), op.i32Add]);
          emit(op.get(cc), f64x2Lane(0), op.get(cc), f64x2Lane(1), op.f64Add, op.f64Store());
        });
        emit(op.get(I), op.i32(1), op.i32Add, op.set(I), op.br(0));
      }
      emit(op.end, op.end);
      emit(op.get(T), op.i32(4), op.i32Add, op.set(T), op.br(0));
    }
    emit(op.end, op.end);
    emit(op.get(R), op.get(NB), op.i32Add, op.set(R), op.br(0));
  }
  emit(op.end, op.end);
  emit(op.end);
  const locals = [...uleb(2), ...uleb(12), I32, ...uleb(23), V128];
  const fn = [...locals, ...c];
  return [...uleb(fn.length), ...fn];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function str(s: string): number[] {
  const b = [...new TextEncoder().encode(s)];
  return [...uleb(b.length), ...b];
}

/** the module's bytes: imports env.memory (shared, for worker threads, when `shared`), exports `rows` */
export function kernelModuleBytes(shared = false): Uint8Array {
  const type = section(1, [1, 0x60, 9, ...new Array<number>(9).fill(I32), 0]);
  const limits = shared ? [0x03, 1, ...uleb(65536)] : [0x00, 1];
  const imports = section(2, [1, ...str('env'), ...str('memory'), 0x02, ...limits]);
  const funcs = section(3, [1, 0]);
  const exports = section(7, [1, ...str('rows'), 0x00, 0]);
  const code = section(10, [1, ...body()]);
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...type, ...imports, ...funcs, ...exports, ...code]);
}

export type RowsFn = (src: number, n: number, d: number, f16: number, scratch: number, dp: number, v: number, k: number, out: number) => void;

/** the part of the WebAssembly API used here (the project's TypeScript libs do not declare it) */
export interface KernelMemory {
  readonly buffer: ArrayBuffer;
}
interface WasmApi {
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => KernelMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}
const WASM = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** a zeroed memory of `pages` × 64 KiB for the kernel; `shared` (a SharedArrayBuffer) for worker threads */
export function kernelMemory(pages: number, shared = false): KernelMemory {
  return shared ? new WASM.Memory({ initial: pages, maximum: pages, shared: true }) : new WASM.Memory({ initial: pages });
}

const compiled = new Map<boolean, object>();

/** the compiled module (a WebAssembly.Module: it can be posted to a worker thread) */
export function kernelModule(shared = false): object {
  let m = compiled.get(shared);
  if (!m) {
    m = new WASM.Module(kernelModuleBytes(shared));
    compiled.set(shared, m);
  }
  return m;
}

/** an instance of the kernel over `memory` (made by kernelMemory with the same `shared`) */
export function kernelInstance(memory: KernelMemory, shared = false): RowsFn {
  const inst = new WASM.Instance(kernelModule(shared), { env: { memory } });
  return inst.exports.rows as RowsFn;
}

/**
 * Where value j of target s lies in the kernel's target area (in f32 units): targets come in groups of
 * four, and a group stores its four targets' values interleaved by 4-value chunks (chunk c of target t at
 * (c·4 + t)·4), so one pointer walks all four as the row's values go by.
 */
export function interleavedIndex(s: number, j: number, dp: number): number {
  return (s >> 2) * 4 * dp + ((j >> 2) * 4 + (s & 3)) * 4 + (j & 3);
}

/** the padded row length the kernel works on: d rounded up to a multiple of 16 */
export function paddedDim(d: number): number {
  return Math.ceil(d / 16) * 16;
}
