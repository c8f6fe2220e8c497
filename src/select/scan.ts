/**
 * Streaming LESS matching over pool datastores larger than memory: every pool row's score against the
 * subtask mean target features (match.ts says why the means suffice), with memory bounded by a few
 * blocks of rows whatever the pool size.
 *
 * Per block of rows (at most `blockRows`, ≤ 16 MiB of stored values per checkpoint):
 *   - the stored bytes (f16 or f32) are read straight into the kernel's WebAssembly memory, two blocks
 *     in flight: the next block's read (libuv's thread pool) overlaps this block's checksum and compute;
 *   - the shard's checksum is updated with the bytes as stored (a damaged or swapped shard is an error
 *     naming the file, before its scores are used);
 *   - the kernel (kernel.ts) converts each row once and takes its dot products with the K subtask means of
 *     every checkpoint and its squared norm; with `threads` > 1 the block's rows are split between this
 *     thread and worker threads running the same kernel over the same shared memory;
 *   - the scores are combined (Σ over checkpoints of the weighted dot product or cosine, max over
 *     subtasks), and each subtask's best and worst rows are kept in bounded heaps for the report.
 * Nothing is allocated per row, and the result is bit-identical for any block size, shard split or thread
 * count (each row's numbers come from the same kernel code whichever thread runs it).
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, read } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { LmtuneError } from '../util/errors.ts';
import { halfTable } from '../models/safetensors.ts';
import { SHARED_IDENTITY, describeField, type FeatureStore, type ShardLocation } from './datastore.ts';
import { stableStringify } from '../node/fsx.ts';
import { join } from 'node:path';
import { KERNEL_ROWS, interleavedIndex, kernelInstance, kernelMemory, kernelModule, paddedDim } from './kernel.ts';
import type { Aggregate } from './match.ts';
import { TopK } from './topk.ts';

export interface ScanOptions {
  aggregate: Aggregate;
  /** checkpoint weights (sum 1), one per store */
  weights: readonly number[];
  /** per checkpoint, the K subtask mean target features [K, dim] */
  means: readonly Float64Array[];
  /** pool indices left unscored (NaN) */
  skipped?: ReadonlySet<number>;
  /** best and worst rows kept per subtask (default 5) */
  extremes?: number;
  /** rows per read (default: as many as fit 16 MiB of stored values, at most a shard) */
  blockRows?: number;
  /** threads scoring each block (this one and threads − 1 workers over shared memory; default 1) */
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface SubtaskExtremes {
  top: { index: number; score: number }[];
  bottom: { index: number; score: number }[];
}

export interface ScanResult {
  scores: Float64Array;
  /** per subtask, the rows scoring highest and lowest against that subtask alone */
  subtasks: SubtaskExtremes[];
  bytesRead: number;
  seconds: { wait: number; verify: number; compute: number; total: number };
}

const BLOCK_BYTES = 16 * 1024 * 1024;
const PAGE = 65536;

/**
 * A worker thread running the kernel on its share of each block, over the same (shared) memory. Its code
 * is plain JavaScript evaluated in the worker (the compiled module comes with workerData), so it needs
 * no TypeScript loader.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const rows = new WebAssembly.Instance(workerData.module, { env: { memory: workerData.memory } }).exports.rows;
parentPort.on('message', (jobs) => {
  for (const a of jobs) rows(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
  parentPort.postMessage(0);
});`;

class KernelWorker {
  private readonly w: Worker;
  private pending: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private failed: Error | null = null;

  constructor(module: object, memory: object) {
    this.w = new Worker(WORKER_SOURCE, { eval: true, workerData: { module, memory } });
    this.w.on('message', () => {
      const p = this.pending;
      this.pending = null;
      p?.resolve();
    });
    this.w.on('error', (e) => this.fail(e));
    this.w.on('exit', (code) => this.fail(new Error(`the scoring worker exited (code ${code})`)));
  }

  private fail(e: Error): void {
    this.failed ??= e;
    const p = this.pending;
    this.pending = null;
    p?.reject(e);
  }

  /** runs the kernel calls (argument lists) in the worker */
  run(jobs: number[][]): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.w.postMessage(jobs);
    });
  }

  async close(): Promise<void> {
    this.w.removeAllListeners('exit');
    await this.w.terminate();
  }
}

function readFully(fd: number, dst: Uint8Array, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const step = (): void => {
      read(fd, dst, done, dst.length - done, position + done, (err, n) => {
        if (err) return reject(err);
        if (n === 0) return reject(new Error(`unexpected end of file at byte ${position + done}`));
        done += n;
        if (done < dst.length) step();
        else resolve();
      });
    };
    step();
  });
}

interface OpenShard {
  loc: ShardLocation;
  fd: number;
  hash: Hash;
}

export async function scanScores(stores: readonly FeatureStore[], o: ScanOptions): Promise<ScanResult> {
  const t0 = performance.now();
  const C = stores.length;
  if (C === 0) throw new LmtuneError('CONFIG', 'matching needs at least one pool datastore');
  const h0 = stores[0]!.header;
  for (const st of stores) {
    const h = st.header;
    if (h.rows !== h0.rows || h.dim !== h0.dim || h.dtype !== h0.dtype || h.shardRows !== h0.shardRows) {
      throw new LmtuneError('SHAPE', `${st.dir}: ${h.rows} rows × ${h.dim} ${h.dtype} in shards of ${h.shardRows}, but ${stores[0]!.dir} has ${h0.rows} × ${h0.dim} ${h0.dtype} in shards of ${h0.shardRows}`, 'the pool datastores of one run come from one `select grads`');
    }
    // checkpoints differ; the model, projection and pool must not, or the summed scores mix spaces
    for (const k of SHARED_IDENTITY) {
      const a = stableStringify(h[k]);
      const b = stableStringify(h0[k]);
      if (a !== b) throw new LmtuneError('CONFIG', `${join(st.dir, 'header.json')}: ${describeField(k)} ${JSON.stringify(JSON.parse(a))} differs from ${join(stores[0]!.dir, 'header.json')}'s ${JSON.stringify(JSON.parse(b))}`, 'the pool datastores of one run come from one `select grads`');
    }
  }
  // a row count edited past the shards fails here, before buffers are sized by it
  for (const st of stores) st.checkComplete();
  if (o.weights.length !== C || o.means.length !== C) throw new LmtuneError('SHAPE', `${C} pool datastores, ${o.weights.length} weights, ${o.means.length} target mean sets`);
  const { rows: N, dim: d, shardRows } = h0;
  const f16 = h0.dtype === 'f16';
  const esz = f16 ? 2 : 4;
  const K = o.means[0]!.length / d;
  if (!Number.isInteger(K) || K < 1 || o.means.some((m) => m.length !== K * d)) throw new LmtuneError('SHAPE', `target means must be [K, ${d}] for every checkpoint`);
  const dp = paddedDim(d);
  // the kernel takes targets four at a time: pad with zero vectors
  const K4 = Math.ceil(K / 4) * 4;
  const B = Math.max(1, Math.min(shardRows, o.blockRows ?? Math.floor(BLOCK_BYTES / (d * esz))));
  const cos = o.aggregate === 'cos-with-mean-grad';

  // threads split each block's rows; no more than there are groups of KERNEL_ROWS rows in a block
  const threads = Math.max(1, Math.min(o.threads ?? 1, Math.ceil(B / KERNEL_ROWS)));
  const shared = threads > 1;

  // WebAssembly memory: targets | scratch rows per thread | outputs | two slots of C blocks
  const align = (x: number): number => Math.ceil(x / 64) * 64;
  const vBytes = align(K4 * dp * 4);
  const vAt = (c: number): number => c * vBytes;
  const scratchAt = (t: number): number => C * vBytes + t * align(KERNEL_ROWS * dp * 4);
  const outBytes = align(B * (K4 + 1) * 8);
  const outAt = (c: number): number => scratchAt(threads) + c * outBytes;
  const blockBytes = align(B * d * esz);
  const slotAt = (slot: number, c: number): number => outAt(C) + (slot * C + c) * blockBytes;
  const total = slotAt(2, 0);
  const memory = kernelMemory(Math.ceil(total / PAGE) + 1, shared);
  const kernel = kernelInstance(memory, shared);

  const mem = memory.buffer;
  // target means as f32 (what the kernel multiplies with), and their norms for the cosine
  const vnorm = o.means.map((mu, c) => {
    const v = new Float32Array(mem, vAt(c), K4 * dp);
    const norms = new Float64Array(K);
    for (let s = 0; s < K; s++) {
      let q = 0;
      for (let k = 0; k < d; k++) {
        const x = Math.fround(mu[s * d + k]!);
        v[interleavedIndex(s, k, dp)] = x;
        q += x * x;
      }
      norms[s] = Math.sqrt(q);
    }
    return norms;
  });
  const outs = stores.map((_, c) => new Float64Array(mem, outAt(c), B * (K4 + 1)));

  const scores = new Float64Array(N).fill(Number.NaN);
  const ex = o.extremes ?? 5;
  const tops = Array.from({ length: K }, () => new TopK(ex));
  const bottoms = Array.from({ length: K }, () => new TopK(ex));
  const x = new Float64Array(K);
  const skipped = o.skipped ?? new Set<number>();

  // the blocks, in pool order
  const blocks: { shard: number; start: number; end: number; last: boolean }[] = [];
  for (let i = 0; i < stores[0]!.shards; i++) {
    const [s, e] = stores[0]!.range(i);
    for (let b = s; b < e; b += B) blocks.push({ shard: i, start: b, end: Math.min(e, b + B), last: b + B >= e });
  }
  const open = new Map<number, OpenShard[]>();
  const openShard = (i: number): OpenShard[] => {
    let sh = open.get(i);
    if (!sh) {
      sh = stores.map((st) => {
        const loc = st.shardLocation(i);
        if (!loc) throw new LmtuneError('IO', `${st.shardPath(i)}: missing, or not a shard of this datastore (rows ${st.range(i).join('–')}, ${st.header.dim} ${st.header.dtype} values each)`, 'rerun `lmtune select grads` to recompute it');
        return { loc, fd: openSync(loc.path, 'r'), hash: createHash('sha256') };
      });
      open.set(i, sh);
    }
    return sh;
  };
  const startRead = (k: number): Promise<void> => {
    const b = blocks[k]!;
    const sh = openShard(b.shard);
    const s0 = stores[0]!.range(b.shard)[0];
    return Promise.all(sh.map((x, c) => readFully(x.fd, new Uint8Array(mem, slotAt(k % 2, c), (b.end - b.start) * d * esz), x.loc.begin + (b.start - s0) * d * esz))).then(() => undefined);
  };

  let bytesRead = 0;
  let tWait = 0;
  let tVerify = 0;
  let tCompute = 0;
  // this thread's scoring rate and last checksum time, for the split of each block between the threads
  let rowsPerMs = 0;
  let lastVerifyMs = 0;
  const table = f16 ? halfTable() : null;
  let pending: Promise<void> | null = null;
  const workers = Array.from({ length: threads - 1 }, () => new KernelWorker(kernelModule(true), memory));
  try {
    pending = blocks.length ? startRead(0) : null;
    for (let k = 0; k < blocks.length; k++) {
      const b = blocks[k]!;
      const n = b.end - b.start;
      let t = performance.now();
      await pending;
      tWait += performance.now() - t;
      pending = k + 1 < blocks.length ? startRead(k + 1) : null;
      // rows [cut[t], cut[t+1]) go to thread t (0: this one); per-row results do not depend on the split.
      // The workers start first, so this thread's checksum work overlaps their scoring. This thread also
      // checksums the block, so it takes fewer rows: n0 such that checksum + n0/rate = (n − n0)/((T−1)·rate),
      // from the previous block's checksum time and scoring rate (an even split until both are measured).
      let n0 = Math.ceil(n / threads / KERNEL_ROWS) * KERNEL_ROWS;
      if (threads > 1 && rowsPerMs > 0) n0 = Math.min(n, Math.max(0, Math.round((n - (threads - 1) * rowsPerMs * lastVerifyMs) / threads / KERNEL_ROWS) * KERNEL_ROWS));
      const perWorker = threads > 1 ? Math.ceil((n - n0) / (threads - 1) / KERNEL_ROWS) * KERNEL_ROWS : 0;
      const cut = threads > 1 ? [0, ...Array.from({ length: threads }, (_, i) => Math.min(n, n0 + i * perWorker))] : [0, n];
      const call = (i: number, c: number): number[] => [slotAt(k % 2, c) + cut[i]! * d * esz, cut[i + 1]! - cut[i]!, d, f16 ? 1 : 0, scratchAt(i), dp, vAt(c), K4, outAt(c) + cut[i]! * (K4 + 1) * 8];
      const others = workers.map((w, i) => (cut[i + 2]! > cut[i + 1]! ? w.run(stores.map((_, c) => call(i + 1, c))) : Promise.resolve()));
      t = performance.now();
      const sh = open.get(b.shard)!;
      let damaged: string | null = null;
      for (let c = 0; c < C; c++) {
        const bytes = new Uint8Array(mem, slotAt(k % 2, c), n * d * esz);
        bytesRead += bytes.length;
        if (sh[c]!.loc.checksum === 'stored-bytes') sh[c]!.hash.update(bytes);
        else if (table) {
          // shards of the first format: checksum of the values as f32
          const h = new Uint16Array(mem, bytes.byteOffset, n * d);
          sh[c]!.hash.update(new Uint8Array(Float32Array.from(h, (v) => table[v]!).buffer));
        } else sh[c]!.hash.update(bytes);
      }
      if (b.last) {
        open.delete(b.shard);
        for (const x of sh) closeSync(x.fd);
        for (const x of sh) if (x.hash.digest('hex') !== x.loc.sha256) damaged ??= x.loc.path;
      }
      lastVerifyMs = performance.now() - t;
      tVerify += lastVerifyMs;
      t = performance.now();
      if (cut[1]! > 0) {
        for (let c = 0; c < C; c++) {
          const a = call(0, c);
          kernel(a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, a[6]!, a[7]!, a[8]!);
        }
        // rows per ms of one thread, smoothed (other processes share the cores)
        const r = cut[1]! / Math.max(1e-3, performance.now() - t);
        rowsPerMs = rowsPerMs > 0 ? 0.8 * rowsPerMs + 0.2 * r : r;
      }
      await Promise.all(others);
      if (damaged) throw new LmtuneError('IO', `${damaged}: checksum mismatch (the shard is damaged)`, 'rerun `lmtune select grads` to recompute it');
      for (let r = 0; r < n; r++) {
        const idx = b.start + r;
        if (skipped.has(idx)) continue;
        x.fill(0);
        const base = r * (K4 + 1);
        for (let c = 0; c < C; c++) {
          const out = outs[c]!;
          const w = o.weights[c]!;
          if (cos) {
            const ng = Math.sqrt(out[base]!);
            const vn = vnorm[c]!;
            for (let s = 0; s < K; s++) if (ng > 0 && vn[s]! > 0) x[s] += (w * out[base + 1 + s]!) / (ng * vn[s]!);
          } else {
            for (let s = 0; s < K; s++) x[s] += w * out[base + 1 + s]!;
          }
        }
        let best = -Infinity;
        for (let s = 0; s < K; s++) {
          const v = x[s]!;
          if (v > best) best = v;
          tops[s]!.push(v, idx);
          bottoms[s]!.push(-v, idx);
        }
        scores[idx] = best;
      }
      tCompute += performance.now() - t;
      o.onProgress?.(b.end, N);
    }
  } finally {
    // after an error, let the read in flight finish before its file is closed under it
    await pending?.catch(() => undefined);
    for (const sh of open.values()) for (const x of sh) closeSync(x.fd);
    await Promise.all(workers.map((w) => w.close()));
  }
  return {
    scores,
    subtasks: tops.map((tp, s) => ({ top: tp.sorted(), bottom: bottoms[s]!.sorted().map((e) => ({ index: e.index, score: -e.score })) })),
    bytesRead,
    seconds: { wait: tWait / 1000, verify: tVerify / 1000, compute: tCompute / 1000, total: (performance.now() - t0) / 1000 },
  };
}
