/**
 * eNTK kernels from gradient rows, in blocks of parameters and examples with bounded memory.
 *
 * For each parameter block b (a slice of the flat parameter vector), the training set's Jacobian
 * restricted to b, A_b [N·C, P_b], is assembled from example batches and kept; every other set (eval,
 * dev) is streamed batch by batch against it. The kernels are sums over blocks,
 *
 *   K(train, train) = Σ_b op_out(A_b) op_in(A_b)ᵀ     K(train, S) = Σ_b op_out(A_b) op_in(B_b)ᵀ
 *   K(S, train)     = Σ_b op_out(B_b) op_in(A_b)ᵀ     (A-SignGD only: the "flipped" kernel)
 *
 * so memory is N·C·P_b + one batch, never P×P and never all Jacobians. With a projection, the rows are
 * JL-projected instead (Σ_b op(X_b)·P_b accumulates the projected rows, exactly over blocks) and the kernel
 * is the Gram matrix of the projections. After each block the state can be saved; a resumed computation
 * gives the same sums.
 *
 * Row order is example-major, class-minor: row e·C + c is ∇f_c(x_e), so the [N·C, M·C] matrices are the
 * row-major reshapes of the reference's [N, C, M, C] tensors.
 */
import { LmtuneError } from '../util/errors.ts';
import { addABtFloat64, float64Gemm, innerIsSign, outerIsSign, signOf, type Gemm, type KernelFormula, type Rows } from './formula.ts';

export interface JacobianBatch {
  /** [count·C, P_b] gradient rows, row e·C + c = ∇f_c(x_{start+e}) restricted to the block */
  rows: Rows;
  /** [count·C] outputs f_c(x) at θ₀ */
  f: Float64Array;
}

/** Anything that yields per-example Jacobians by parameter block: a transformer, or a toy model in tests. */
export interface JacobianSource {
  readonly classes: number;
  /** examples per set; `train` is required */
  readonly sizes: Readonly<Record<string, number>>;
  /** parameter block sizes, in flat parameter order */
  readonly blocks: readonly number[];
  jacobian(set: string, start: number, count: number, block: number): Promise<JacobianBatch>;
  /** the parameter tensor holding column `column` of block `block` (messages), when the source knows */
  paramAt?(block: number, column: number): string;
}

/** What projection is used for: accumulate Y[n, d] += X_block[n, rows] · P[rowStart : rowStart+rows] */
export interface Projector {
  readonly outDim: number;
  readonly inDim: number;
  accumulate(x: Rows, n: number, rowStart: number, rows: number, y: Float64Array): Promise<void>;
}

export interface KernelState {
  /** blocks finished */
  nextBlock: number;
  /** partial sums (kernels or projections) and f₀ by name */
  tensors: Record<string, Float64Array>;
}

export interface KernelProgress {
  block: number;
  blocks: number;
  done: number;
  total: number;
  seconds: number;
  etaSeconds: number;
}

export interface KernelOptions {
  formula: KernelFormula;
  /** examples per Jacobian call (default 8) */
  batch?: number;
  gemm?: Gemm;
  projector?: Projector;
  /** resume from saved partial sums */
  state?: KernelState;
  onProgress?: (p: KernelProgress) => void;
  /** called after each finished block with the state to save */
  onBlockDone?: (s: KernelState) => Promise<void> | void;
}

export interface Kernels {
  formula: KernelFormula;
  classes: number;
  sizes: Record<string, number>;
  /** 'train_train' [N·C, N·C], 'train_<S>' [N·C, M·C], and for A-SignGD '<S>_train' [M·C, N·C] */
  kernels: Record<string, Float64Array>;
  /** f₀ by set, [n·C] */
  f0: Record<string, Float64Array>;
}

function proj(set: string, side: 'out' | 'in'): string {
  return `proj_${set}_${side}`;
}

/**
 * Block b's share of every sum, each starting from zero: the kernels (or projections) of this parameter
 * block, and f₀ from block 0. `computeKernels` adds the shares in block order with one addition per value
 * (`addBlock`), so a block computed elsewhere (a queue worker, src/distributed/kernel-blocks.ts) and added
 * the same way gives the same bytes.
 */
export async function blockContribution(src: JacobianSource, b: number, opts: KernelOptions, tick: (n: number) => void = () => undefined): Promise<Record<string, Float64Array>> {
  const C = src.classes;
  const N = src.sizes.train;
  if (N === undefined || N < 1) throw new LmtuneError('DATA', 'kernel: the training set is empty');
  if (!Number.isInteger(b) || b < 0 || b >= src.blocks.length) throw new LmtuneError('CONFIG', `kernel: parameter block ${b} does not exist (${src.blocks.length} blocks)`);
  const others = Object.keys(src.sizes).filter((s) => s !== 'train');
  const batch = opts.batch ?? 8;
  const gemm = opts.gemm ?? float64Gemm;
  const f = opts.formula;
  const asym = f === 'asymmetric-signgd';
  const NC = N * C;
  const pr = opts.projector ?? null;
  const totalP = src.blocks.reduce((a, x) => a + x, 0);
  if (pr && pr.inDim !== totalP) throw new LmtuneError('SHAPE', `projection input dimension ${pr.inDim} is not the parameter count ${totalP}`);
  const t: Record<string, Float64Array> = {};
  const need = (name: string, n: number): Float64Array => (t[name] ??= new Float64Array(n));
  // the sides that differ: SignGD uses sign on both sides, so one projection per set suffices
  const sides = (): ('out' | 'in')[] => (f === 'asymmetric-signgd' ? ['out', 'in'] : ['out']);
  const offset = src.blocks.slice(0, b).reduce((a, x) => a + x, 0);
  const P = src.blocks[b]!;
  let A: Rows | null = null;
  for (let e = 0; e < N; e += batch) {
    const n = Math.min(batch, N - e);
    const got = await src.jacobian('train', e, n, b);
    checkBatch(got, n, C, P, 'train', b, e, src);
    A ??= got.rows instanceof Float64Array ? new Float64Array(NC * P) : new Float32Array(NC * P);
    A.set(got.rows, e * C * P);
    if (b === 0) need('f0_train', NC).set(got.f, e * C);
    tick(n);
  }
  const out = outerIsSign(f) ? signOf(A!) : A!;
  const inn = innerIsSign(f) ? out : A!;
  if (pr) {
    await pr.accumulate(out, NC, offset, P, need(proj('train', 'out'), NC * pr.outDim));
    if (asym) await pr.accumulate(inn, NC, offset, P, need(proj('train', 'in'), NC * pr.outDim));
  } else {
    await gemm.addABt(out, NC, inn, NC, P, need('train_train', NC * NC), NC);
  }
  for (const s of others) {
    const M = src.sizes[s]!;
    const MC = M * C;
    // projection: buffer rows so each (costly to generate) block of P is used for many rows at once
    const cap = Math.max(batch, N);
    let buf: { rows: Rows[]; first: number; count: number } = { rows: [], first: 0, count: 0 };
    const flush = async (): Promise<void> => {
      if (!pr || buf.count === 0) return;
      const all = concat(buf.rows, buf.count * C * P);
      const sideRows = { out: outerIsSign(f) ? signOf(all) : all, in: innerIsSign(f) ? signOf(all) : all };
      for (const side of sides()) {
        const y = need(proj(s, side), MC * pr.outDim);
        const part = new Float64Array(buf.count * C * pr.outDim);
        await pr.accumulate(sideRows[side], buf.count * C, offset, P, part);
        const at = buf.first * C * pr.outDim;
        for (let i = 0; i < part.length; i++) y[at + i] = y[at + i]! + part[i]!;
      }
      buf = { rows: [], first: buf.first + buf.count, count: 0 };
    };
    for (let e = 0; e < M; e += batch) {
      const n = Math.min(batch, M - e);
      const got = await src.jacobian(s, e, n, b);
      checkBatch(got, n, C, P, s, b, e, src);
      if (b === 0) need(`f0_${s}`, MC).set(got.f, e * C);
      if (pr) {
        buf.rows.push(got.rows);
        buf.count += n;
        if (buf.count >= cap) await flush();
      } else {
        const bOut = outerIsSign(f) ? signOf(got.rows) : got.rows;
        const bIn = innerIsSign(f) ? bOut : got.rows;
        await gemm.addABt(out, NC, bIn, n * C, P, need(`train_${s}`, NC * MC), MC, e * C);
        if (asym) await gemm.addABt(bOut, n * C, inn, NC, P, need(`${s}_train`, MC * NC), NC, e * C * NC);
      }
      tick(n);
    }
    await flush();
  }
  return t;
}

/** Adds block `b`'s share into the running sums (f₀ is copied from block 0): one addition per value. */
export function addBlock(state: KernelState, b: number, part: Record<string, Float64Array>): void {
  if (b !== state.nextBlock) throw new LmtuneError('RUNTIME', `kernel: block ${b} added after ${state.nextBlock} finished blocks (blocks must be added in order)`);
  for (const [k, v] of Object.entries(part)) {
    if (k.startsWith('f0_')) {
      state.tensors[k] = v;
      continue;
    }
    // a sum starts at +0 (so a −0 share reads back as +0, as it always has)
    const cur = (state.tensors[k] ??= new Float64Array(v.length));
    if (cur.length !== v.length) throw new LmtuneError('SHAPE', `kernel: block ${b}'s '${k}' has ${v.length} values, the sum ${cur.length}`);
    for (let i = 0; i < v.length; i++) cur[i] = cur[i]! + v[i]!;
  }
  state.nextBlock = b + 1;
}

/** The kernels of `src` under `opts.formula`. */
export async function computeKernels(src: JacobianSource, opts: KernelOptions): Promise<Kernels> {
  const N = src.sizes.train;
  if (N === undefined || N < 1) throw new LmtuneError('DATA', 'kernel: the training set is empty');
  const state: KernelState = opts.state ?? { nextBlock: 0, tensors: {} };
  const start = performance.now();
  const perBlock = Object.values(src.sizes).reduce((a, b) => a + b, 0);
  const total = perBlock * src.blocks.length;
  let done = state.nextBlock * perBlock;
  const firstDone = done;
  for (let b = state.nextBlock; b < src.blocks.length; b++) {
    const tick = (n: number): void => {
      done += n;
      const secs = (performance.now() - start) / 1000;
      const rate = (done - firstDone) / Math.max(secs, 1e-9);
      opts.onProgress?.({ block: b, blocks: src.blocks.length, done, total, seconds: secs, etaSeconds: rate > 0 ? (total - done) / rate : Number.POSITIVE_INFINITY });
    };
    addBlock(state, b, await blockContribution(src, b, opts, tick));
    await opts.onBlockDone?.(state);
  }
  return finishKernels(src, opts, state);
}

/** The kernels from the sums over every block: as summed, or the Gram matrices of the summed projections. */
export function finishKernels(src: JacobianSource, opts: Pick<KernelOptions, 'formula' | 'projector'>, state: KernelState): Kernels {
  if (state.nextBlock !== src.blocks.length) throw new LmtuneError('RUNTIME', `kernel: ${state.nextBlock} of ${src.blocks.length} parameter blocks summed`);
  const C = src.classes;
  const NC = src.sizes.train! * C;
  const others = Object.keys(src.sizes).filter((s) => s !== 'train');
  const f = opts.formula;
  const asym = f === 'asymmetric-signgd';
  const pr = opts.projector ?? null;
  const t = state.tensors;
  const kernels: Record<string, Float64Array> = {};
  if (pr) {
    const d = pr.outDim;
    const Yo = t[proj('train', 'out')]!;
    const Yi = asym ? t[proj('train', 'in')]! : Yo;
    kernels.train_train = gram(Yo, NC, Yi, NC, d);
    for (const s of others) {
      const MC = src.sizes[s]! * C;
      const So = t[proj(s, 'out')]!;
      const Si = asym ? t[proj(s, 'in')]! : So;
      kernels[`train_${s}`] = gram(Yo, NC, Si, MC, d);
      if (asym) kernels[`${s}_train`] = gram(So, MC, Yi, NC, d);
    }
  } else {
    kernels.train_train = t.train_train!;
    for (const s of others) {
      kernels[`train_${s}`] = t[`train_${s}`]!;
      if (asym) kernels[`${s}_train`] = t[`${s}_train`]!;
    }
  }
  const f0: Record<string, Float64Array> = {};
  for (const s of Object.keys(src.sizes)) f0[s] = t[`f0_${s}`]!;
  return { formula: f, classes: C, sizes: { ...src.sizes }, kernels, f0 };
}

/** ⟨a_i, b_j⟩ of projected rows, scaled by the projection's 1/√d² = 1/d */
function gram(a: Float64Array, n: number, b: Float64Array, m: number, d: number): Float64Array {
  const out = new Float64Array(n * m);
  addABtFloat64(a, n, b, m, d, out, m);
  for (let i = 0; i < out.length; i++) out[i] = out[i]! / d;
  return out;
}

function concat(parts: Rows[], n: number): Rows {
  if (parts.length === 1) return parts[0]!;
  const out = parts[0] instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function checkBatch(got: JacobianBatch, n: number, C: number, P: number, set: string, b: number, start: number, src: JacobianSource): void {
  if (got.rows.length !== n * C * P) throw new LmtuneError('SHAPE', `Jacobian of ${set} block ${b}: ${got.rows.length} values for ${n}×${C} rows of ${P}`);
  if (got.f.length !== n * C) throw new LmtuneError('SHAPE', `outputs of ${set}: ${got.f.length} values for ${n}×${C}`);
  // one NaN/Inf gradient entry makes whole kernel rows and columns NaN, and the solvers then fit
  // garbage (or fail deep inside a factorization): stop here, naming the example, class and tensor
  const hint = 'the model holds non-finite weights or overflows on this input; check it with `lmtune info` (its tensor check reads every weight)';
  for (let r = 0; r < n * C; r++) {
    if (!Number.isFinite(got.f[r]!)) throw new LmtuneError('NUMERIC', `kernel: the output f_${r % C} of ${set} example ${start + Math.floor(r / C)} is ${got.f[r]}`, hint);
  }
  const x = got.rows;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * 0;
  if (s === 0) return;
  for (let i = 0; i < x.length; i++) {
    if (Number.isFinite(x[i]!)) continue;
    const row = Math.floor(i / P);
    const col = i % P;
    const where = src.paramAt ? `'${src.paramAt(b, col)}'` : `column ${col}`;
    throw new LmtuneError('NUMERIC', `kernel: the gradient of f_${row % C} for ${set} example ${start + Math.floor(row / C)} holds ${x[i]} in parameter block ${b} (${where})`, hint);
  }
}

/** `--binary`: f = f₁ − f₀, so C = 1 and the rows are ∇f₁ − ∇f₀ (labels become ±1). */
export function binarySource(src: JacobianSource): JacobianSource {
  if (src.classes !== 2) throw new LmtuneError('CONFIG', `--binary needs a task with two classes, this one has ${src.classes}`);
  return {
    classes: 1,
    sizes: src.sizes,
    blocks: src.blocks,
    ...(src.paramAt ? { paramAt: src.paramAt.bind(src) } : {}),
    async jacobian(set, start, count, block) {
      const { rows, f } = await src.jacobian(set, start, count, block);
      const P = src.blocks[block]!;
      const out = rows instanceof Float64Array ? new Float64Array(count * P) : new Float32Array(count * P);
      const fo = new Float64Array(count);
      for (let e = 0; e < count; e++) {
        const r0 = 2 * e * P;
        const r1 = r0 + P;
        for (let k = 0; k < P; k++) out[e * P + k] = rows[r1 + k]! - rows[r0 + k]!;
        fo[e] = f[2 * e + 1]! - f[2 * e]!;
      }
      return { rows: out, f: fo };
    },
  };
}
