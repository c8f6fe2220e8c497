/**
 * The "kernel-block" job kind: `lmtune kernel compute` split into one job per parameter block. A worker
 * computes block b's share of every sum from zero (src/kernel/accumulate.ts `blockContribution`, the
 * single-machine code) and writes it as OUT/blocks/block-<b>.safetensors (float64, atomic, with the
 * computation's key and a sha256 of the values); the coordinator adds the shares in block order with one
 * addition per value (`addBlock`), exactly as one process does, so kernels.safetensors is byte-identical.
 */
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { stableStringify } from '../node/fsx.ts';
import { loadTransformer, type TransformerModel } from '../heads/model.ts';
import { loadExamples, resolveTask } from '../tasks/run-eval.ts';
import { addBlock, blockContribution, finishKernels, type KernelState } from '../kernel/accumulate.ts';
import { finishKernelSets, kernelOptions, prepareKernel, type ComputeRequest, type ComputeResult, type KernelSet, type PreparedKernel } from '../kernel/compute.ts';
import { KERNEL_FORMULAS, type KernelFormula } from '../kernel/formula.ts';
import { prepareOutDir, readF64Safetensors, writeF64Safetensors, type StoredTensor } from '../kernel/store.ts';
import { runJobs, type QueueProgress } from './coordinator.ts';
import { CODE_VERSION, JobRefused, fingerprintModelDir, registerJobKind, type JobEnvelope } from './jobs.ts';

export const KERNEL_BLOCK = 'kernel-block';
export const BLOCKS_DIR = 'blocks';

/** What `kernel compute` was asked, in the form a worker can rebuild the computation from (paths absolute). */
export interface KernelSpec {
  readonly task: string;
  /** set name → data file and how many of its first examples (null: all) */
  readonly sets: Record<string, { file: string; limit: number | null }>;
  readonly formula: KernelFormula;
  readonly params: string;
  readonly binary: boolean;
  readonly projDim: number | null;
  readonly projSeed: number;
  readonly batch: number;
  readonly memBytes: number;
  readonly threads: number | null;
}

export interface KernelBlockPayload {
  readonly out: string;
  /** the computation's key (src/kernel/compute.ts): the worker's rebuilt computation must have the same */
  readonly key: string;
  readonly block: number;
  readonly spec: KernelSpec;
}

export interface KernelBlockResult {
  readonly block: number;
  readonly sha256: string;
  readonly seconds: number;
}

export function blockPath(out: string, b: number): string {
  return join(out, BLOCKS_DIR, `block-${String(b).padStart(5, '0')}.safetensors`);
}

/** sha256 over the block's tensors (name, then float64 bytes), in name order */
function digest(tensors: Record<string, Float64Array>): string {
  const h = createHash('sha256');
  for (const k of Object.keys(tensors).sort()) {
    const v = tensors[k]!;
    h.update(`${k}\0`);
    h.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  return h.digest('hex');
}

/** block b's share from its file when whole and of this computation, else null */
export function readBlock(out: string, key: string, b: number): { tensors: Record<string, Float64Array>; sha256: string } | null {
  const p = blockPath(out, b);
  if (!existsSync(p)) return null;
  try {
    const f = readF64Safetensors(p);
    const tensors: Record<string, Float64Array> = {};
    for (const [k, t] of Object.entries(f.tensors)) {
      if (t.dtype !== 'F64') return null;
      tensors[k] = t.data;
    }
    const sha = digest(tensors);
    if (f.metadata.key !== key || f.metadata.block !== String(b) || f.metadata.sha256 !== sha) return null;
    return { tensors, sha256: sha };
  } catch (e) {
    if (e instanceof LmtuneError) return null;
    throw e;
  }
}

export function kernelSets(spec: KernelSpec): { task: ReturnType<typeof resolveTask>; sets: Record<string, KernelSet> } {
  const task = resolveTask(spec.task);
  const sets: Record<string, KernelSet> = {};
  for (const [name, s] of Object.entries(spec.sets)) {
    const all = loadExamples(task, s.file);
    sets[name] = { examples: s.limit === null ? all : all.slice(0, s.limit), file: s.file };
  }
  return { task, sets };
}

export function kernelRequest(model: TransformerModel, spec: KernelSpec, out?: string): ComputeRequest {
  const { task, sets } = kernelSets(spec);
  return {
    model,
    task,
    sets,
    formula: spec.formula,
    params: spec.params,
    binary: spec.binary,
    ...(spec.projDim !== null ? { projDim: spec.projDim, projSeed: spec.projSeed } : {}),
    batch: spec.batch,
    memBytes: spec.memBytes,
    ...(spec.threads !== null ? { threads: spec.threads } : {}),
    ...(out !== undefined ? { out } : {}),
  };
}

function parseSpec(raw: unknown): KernelSpec {
  const r = (raw ?? {}) as Record<string, unknown>;
  const bad = (what: string): never => {
    throw new LmtuneError('DATA', `${KERNEL_BLOCK} payload: ${what}`);
  };
  if (typeof r['task'] !== 'string') bad('spec.task must be a string');
  if (!KERNEL_FORMULAS.includes(r['formula'] as KernelFormula)) bad(`spec.formula must be one of ${KERNEL_FORMULAS.join(', ')}`);
  const sets = r['sets'];
  if (typeof sets !== 'object' || sets === null) bad('spec.sets must be an object');
  for (const [k, v] of Object.entries(sets as Record<string, unknown>)) {
    const s = v as Record<string, unknown>;
    if (typeof s?.['file'] !== 'string' || !(s['limit'] === null || (typeof s['limit'] === 'number' && s['limit'] > 0))) bad(`spec.sets.${k} must be {file, limit}`);
  }
  const int = (k: string, nullable = false): number | null => {
    const v = r[k];
    if (v === null && nullable) return null;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return bad(`spec.${k} must be a non-negative number`);
    return v;
  };
  return {
    task: r['task'] as string,
    sets: sets as KernelSpec['sets'],
    formula: r['formula'] as KernelFormula,
    params: typeof r['params'] === 'string' ? r['params'] : 'all',
    binary: r['binary'] === true,
    projDim: int('projDim', true),
    projSeed: int('projSeed')!,
    batch: int('batch')!,
    memBytes: int('memBytes')!,
    threads: int('threads', true),
  };
}

export function parseKernelBlockPayload(raw: unknown): KernelBlockPayload {
  if (typeof raw !== 'object' || raw === null) throw new LmtuneError('DATA', `${KERNEL_BLOCK} payload must be an object`);
  const r = raw as Record<string, unknown>;
  if (typeof r['out'] !== 'string' || typeof r['key'] !== 'string') throw new LmtuneError('DATA', `${KERNEL_BLOCK} payload: out and key must be strings`);
  const b = r['block'];
  if (typeof b !== 'number' || !Number.isInteger(b) || b < 0) throw new LmtuneError('DATA', `${KERNEL_BLOCK} payload: block must be a non-negative integer`);
  return { out: r['out'], key: r['key'], block: b, spec: parseSpec(r['spec']) };
}

// one prepared computation per worker process, reused by every block job of the same kernel
let cached: { key: string; prep: Promise<PreparedKernel & { req: ComputeRequest }> } | null = null;

function preparedFor(modelDir: string, p: KernelBlockPayload): Promise<PreparedKernel & { req: ComputeRequest }> {
  const key = `${modelDir}\0${stableStringify(p.spec)}`;
  if (cached?.key === key) return cached.prep;
  const prep = (async () => {
    const model = await loadTransformer(modelDir, p.spec.threads !== null ? { threads: p.spec.threads } : {});
    const req = kernelRequest(model, p.spec);
    return { ...(await prepareKernel(req)), req };
  })();
  cached = { key, prep };
  prep.catch(() => {
    if (cached?.key === key) cached = null;
  });
  return prep;
}

registerJobKind<KernelBlockPayload, KernelBlockResult>({
  name: KERNEL_BLOCK,
  parsePayload: parseKernelBlockPayload,
  run: async (job, p) => {
    const t0 = performance.now();
    const done = readBlock(p.out, p.key, p.block);
    if (done) return { block: p.block, sha256: done.sha256, seconds: 0 };
    const prep = await preparedFor(job.modelDir, p);
    if (prep.key !== p.key) {
      throw new JobRefused(`this worker's kernel computation has key ${prep.key}, the job's is ${p.key}: the model, data files, formula, parameters or blocks differ on this machine`);
    }
    const blocks = prep.src.blocks.length;
    let seen = 0;
    const perBlock = Object.values(prep.src.sizes).reduce((a, b) => a + b, 0);
    const part = await blockContribution(prep.src, p.block, kernelOptions(prep.req, prep), (n) => {
      seen += n;
      void job.progress(seen / perBlock);
    });
    const sha256 = digest(part);
    const tensors: Record<string, StoredTensor> = {};
    for (const [k, v] of Object.entries(part)) tensors[k] = { dtype: 'F64', shape: [v.length], data: v };
    writeF64Safetensors(blockPath(p.out, p.block), tensors, { key: p.key, block: String(p.block), blocks: String(blocks), sha256 });
    return { block: p.block, sha256, seconds: (performance.now() - t0) / 1000 };
  },
});

export interface QueuedKernelOptions {
  readonly queueUrl: string;
  /** the model folder as workers see it */
  readonly modelDir: string;
  readonly fingerprint?: (dir: string) => string;
  readonly codeVersion?: string;
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  readonly onQueueProgress?: (p: QueueProgress) => void;
  readonly onMessage?: (m: string) => void;
}

/**
 * `computeKernelSets` with its parameter blocks computed by the workers of a queue: the same
 * kernels.safetensors bytes. `model` is this process's copy (for the blocks, the key and meta.json);
 * block files already whole in OUT/blocks are reused, so a rerun after a crash resumes.
 */
export async function computeKernelSetsQueued(model: TransformerModel, spec: KernelSpec, out: string, o: QueuedKernelOptions): Promise<ComputeResult> {
  const start = performance.now();
  const req = kernelRequest(model, spec, out);
  const prep = await prepareKernel(req);
  prepareOutDir(out);
  const blocks = prep.src.blocks.length;
  const envelopes: JobEnvelope<KernelBlockPayload>[] = [];
  const fp = { dir: o.modelDir, fingerprint: (o.fingerprint ?? fingerprintModelDir)(o.modelDir) };
  for (let b = 0; b < blocks; b++) {
    if (!readBlock(out, prep.key, b)) envelopes.push({ kind: KERNEL_BLOCK, model: fp, codeVersion: o.codeVersion ?? CODE_VERSION, payload: { out, key: prep.key, block: b, spec } });
  }
  o.onMessage?.(`kernel: ${envelopes.length} of ${blocks} parameter blocks to compute on the workers of ${o.queueUrl}`);
  const results = await runJobs<KernelBlockResult>(o.queueUrl, envelopes, {
    idsByContent: true,
    redoCompleted: true,
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
    onConnectionError: (m) => o.onMessage?.(`kernel: queue connection: ${m} (reconnecting)`),
    ...(o.onQueueProgress ? { onProgress: o.onQueueProgress } : {}),
  });
  const reported = new Map(results.map((r) => [r.block, r.sha256]));
  // the shares in block order, one addition per value: what one process computes
  const state: KernelState = { nextBlock: 0, tensors: {} };
  let rss = process.memoryUsage().rss;
  for (let b = 0; b < blocks; b++) {
    const part = readBlock(out, prep.key, b);
    const want = reported.get(b);
    if (!part || (want !== undefined && want !== part.sha256)) {
      throw new LmtuneError('IO', `${blockPath(out, b)}: ${part ? 'holds other values than the worker reported' : 'missing or damaged'} after the queue finished`, 'OUT must be one folder every worker sees at the same path; run the same command again to recompute the block');
    }
    addBlock(state, b, part.tensors);
    rss = Math.max(rss, process.memoryUsage().rss);
  }
  const kernels = finishKernels(prep.src, kernelOptions(req, prep), state);
  const res = finishKernelSets(req, prep, kernels, { seconds: (performance.now() - start) / 1000, rss });
  rmSync(join(out, BLOCKS_DIR), { recursive: true, force: true });
  return res;
}
