/**
 * `kernel compute` as a library function: a model, a task and example sets in; a kernel folder (or the
 * kernels in memory) out. Resumable: after each parameter block the partial sums are saved, and rerunning
 * the same computation into the same folder continues from the last finished block.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import type { TransformerModel } from '../heads/model.ts';
import { attachPeft } from '../peft/index.ts';
import type { Example, Task } from '../tasks/index.ts';
import { RademacherProjection } from '../projection/rademacher.ts';
import { binarySource, computeKernels, type JacobianSource, type KernelOptions, type KernelProgress, type KernelState, type Kernels } from './accumulate.ts';
import { OrtGemm, float64Gemm, type Gemm, type KernelFormula } from './formula.ts';
import { ModelJacobianSource, encodeForKernel, selectParams } from './model-source.ts';
import { PARTIAL_FILE, REPORT_FILE, modelFingerprint, prepareOutDir, readF64Safetensors, sha256File, writeF64Safetensors, writeKernelFolder, type KernelMeta, type StoredTensor } from './store.ts';
import type { KernelProblem } from './solvers.ts';
import { kernelReport } from './report.ts';

export interface KernelSet {
  examples: readonly Example[];
  /** the data file (hashed into meta.json), or null for in-memory sets */
  file: string | null;
}

export interface ComputeRequest {
  model: TransformerModel;
  task: Task;
  /** `train` required; `eval`, `dev` optional */
  sets: Record<string, KernelSet>;
  formula: KernelFormula;
  /** all | lora | bitfit | a name regex */
  params?: string;
  binary?: boolean;
  projDim?: number;
  projSeed?: number;
  /** examples per graph call (default 8) */
  batch?: number;
  /** memory for one parameter block's training Jacobian (default 1 GiB) */
  memBytes?: number;
  threads?: number;
  /** folder to write (resumable); omitted: kernels stay in memory */
  out?: string;
  onProgress?: (p: KernelProgress) => void;
}

export interface ComputeResult {
  kernels: Kernels;
  labels: Record<string, Int32Array>;
  meta: KernelMeta;
}

/** Everything the sums need, derived from the request: the Jacobian source, its blocks, the product, the identity key. */
export interface PreparedKernel {
  readonly src: JacobianSource;
  readonly source: ModelJacobianSource;
  readonly projector: RademacherProjection | undefined;
  readonly gemm: Gemm;
  readonly names: string[];
  readonly enc: ReturnType<typeof encodeForKernel>;
  readonly fingerprint: string;
  readonly sets: KernelMeta['sets'];
  readonly paramSpec: string;
  /** sha256 (16 hex digits) of everything the sums depend on: a partial or block file of another computation is refused */
  readonly key: string;
}

/** Checks the request, attaches adapters if asked, selects the parameters and blocks, and derives the key. */
export async function prepareKernel(req: ComputeRequest): Promise<PreparedKernel> {
  const { model, task, formula } = req;
  const binary = req.binary ?? false;
  if (formula === 'asymmetric-signgd' && !binary) {
    throw new LmtuneError('CONFIG', '--formula asymmetric-signgd needs --binary', 'the reference asserts it: the A-SignGD solver is a binary LS-SVM');
  }
  if (!req.sets.train) throw new LmtuneError('CONFIG', 'a training set is required (--train)');
  const paramSpec = req.params ?? 'all';
  if (paramSpec === 'lora') await attachPeft(model, { kind: 'lora', rank: 8, alpha: 16, dropout: 0, targets: [] }, 0);
  const names = selectParams(model, paramSpec);
  // a NaN/Inf weight makes every kernel entry NaN: refuse before any work, naming it
  for (const name of model.allParamNames()) {
    const d = model.tensor(name);
    const i = d.findIndex((x) => !Number.isFinite(x));
    if (i >= 0) throw new LmtuneError('NUMERIC', `kernel: ${model.dir ?? 'the model'}: weight '${name}' holds ${d[i]} at index ${i}`, 'the kernel of a model with non-finite weights is all NaN; check the checkpoint with `lmtune info`');
  }
  const enc = encodeForKernel(task, model, Object.fromEntries(Object.entries(req.sets).map(([k, v]) => [k, v.examples])));
  const Cm = enc.labelIds.length;
  const N = req.sets.train.examples.length;
  const memBytes = req.memBytes ?? 2 ** 30;
  // the training rows of a block in float32, plus their sign copy
  const blockElements = Math.max(1, Math.floor(memBytes / (8 * N * Cm)));
  const source = new ModelJacobianSource(model, enc, { params: names, blockElements, batch: req.batch ?? 8 });
  const src = binary ? binarySource(source) : source;
  const projector = req.projDim ? new RademacherProjection({ seed: req.projSeed ?? 0, inDim: source.paramCount, outDim: req.projDim, backend: model.backend, ...(req.threads ? { threads: req.threads } : {}) }) : undefined;
  const gemm = model.backend === 'ref' ? float64Gemm : new OrtGemm(req.threads);

  const fingerprint = modelFingerprint(model.cfg.raw as Record<string, unknown>, names.map((n) => [n, { shape: model.adapters?.has(n) ? model.adapters.get(n).shape : model.weights.get(n).shape, data: model.tensor(n) }] as const));
  const sets: KernelMeta['sets'] = {};
  for (const [k, v] of Object.entries(req.sets)) sets[k] = { file: v.file, sha256: v.file ? sha256File(v.file) : null, n: v.examples.length };
  const identity = { fingerprint, task: task.name, formula, binary, params: names, projection: req.projDim ? { dim: req.projDim, seed: req.projSeed ?? 0 } : null, sets, blocks: src.blocks, labelIds: enc.labelIds, examples: Object.fromEntries(Object.entries(req.sets).map(([k, v]) => [k, v.examples.map((e) => e.id)])) };
  const key = createHash('sha256').update(stableStringify(identity)).digest('hex').slice(0, 16);
  return { src, source, projector, gemm, names, enc, fingerprint, sets, paramSpec, key };
}

/** the options `computeKernels` / `blockContribution` take for a prepared computation */
export function kernelOptions(req: ComputeRequest, prep: PreparedKernel): KernelOptions {
  return { formula: req.formula, batch: req.batch ?? 8, gemm: prep.gemm, ...(prep.projector ? { projector: prep.projector } : {}) };
}

/** Computes the kernels of `req` (and writes the folder when `req.out` is given). */
export async function computeKernelSets(req: ComputeRequest): Promise<ComputeResult> {
  const start = performance.now();
  const prep = await prepareKernel(req);
  const { src, key } = prep;
  let state: KernelState | undefined;
  if (req.out) {
    const { partial } = prepareOutDir(req.out);
    if (partial) {
      const p = readF64Safetensors(join(req.out, PARTIAL_FILE));
      if (p.metadata.key !== key) {
        throw new LmtuneError('IO', `${join(req.out, PARTIAL_FILE)} belongs to a different computation (model, data, formula, parameters or blocks differ)`, 'rerun with exactly the same flags to resume, or choose a new --out folder');
      }
      state = { nextBlock: Number(p.metadata.nextBlock), tensors: Object.fromEntries(Object.entries(p.tensors).map(([k, t]) => [k, t.data as Float64Array])) };
    }
  }
  let rss = process.memoryUsage().rss;
  const kernels = await computeKernels(src, {
    ...kernelOptions(req, prep),
    ...(state ? { state } : {}),
    ...(req.onProgress ? { onProgress: req.onProgress } : {}),
    onBlockDone: (s) => {
      rss = Math.max(rss, process.memoryUsage().rss);
      if (!req.out || s.nextBlock === src.blocks.length) return;
      const tensors: Record<string, StoredTensor> = {};
      for (const [k, v] of Object.entries(s.tensors)) tensors[k] = { dtype: 'F64', shape: [v.length], data: v };
      writeF64Safetensors(join(req.out, PARTIAL_FILE), tensors, { key, nextBlock: String(s.nextBlock) });
    },
  });
  return finishKernelSets(req, prep, kernels, { seconds: (performance.now() - start) / 1000, rss });
}

/** meta.json, and with `req.out` the kernel folder and its report: the end of a computation on one machine or a queue. */
export function finishKernelSets(req: ComputeRequest, prep: PreparedKernel, kernels: Kernels, run: { seconds: number; rss: number; gemm?: string }): ComputeResult {
  const { model, task, formula } = req;
  const { src, source, projector, gemm } = prep;
  const N = req.sets.train!.examples.length;
  // finite rows can still sum past the float64 range: never write (or solve with) an Inf kernel
  for (const [name, k] of Object.entries(kernels.kernels)) {
    const i = k.findIndex((x) => !Number.isFinite(x));
    if (i >= 0) throw new LmtuneError('NUMERIC', `kernel: '${name}' holds ${k[i]} at entry ${i} (the gradients overflow)`, 'use --proj-dim, or fewer parameters with --params');
  }
  const labels: Record<string, Int32Array> = {};
  for (const [k, v] of Object.entries(req.sets)) labels[k] = Int32Array.from(v.examples, (e) => e.label);
  const meta: KernelMeta = {
    version: 1,
    model: { dir: model.dir ?? '(in memory)', fingerprint: prep.fingerprint, family: model.cfg.family, kind: model.kind },
    task: task.name,
    template: prep.enc.template,
    labelWords: prep.enc.labelWords,
    labelIds: prep.enc.labelIds,
    formula,
    binary: req.binary ?? false,
    classes: kernels.classes,
    params: { spec: prep.paramSpec, count: source.paramCount, tensors: prep.names.length },
    projection: req.projDim ? { dim: req.projDim, seed: req.projSeed ?? 0 } : null,
    sets: prep.sets,
    blocks: src.blocks.length,
    gemm: run.gemm ?? (projector ? `projection (${projector.backend})` : gemm.name),
    timings: { seconds: run.seconds, secondsPerBlock: run.seconds / src.blocks.length },
    peakRssMb: Math.round(Math.max(run.rss, process.memoryUsage().rss) / 2 ** 20),
  };
  if (req.out) {
    writeKernelFolder(req.out, meta, kernelTensors(kernels, labels));
    if (existsSync(join(req.out, PARTIAL_FILE))) rmSync(join(req.out, PARTIAL_FILE));
    const title = `${task.name}: ${formula} kernel of ${model.dir ?? 'a model'} (${N} training examples)`;
    atomicWrite(join(req.out, REPORT_FILE), kernelReport(title, [{ name: 'train_train', K: kernels.kernels.train_train!, n: N, C: kernels.classes, labels: labels.train! }]));
  }
  return { kernels, labels, meta };
}

/** the file layout: kernels [n, C, m, C], f₀ [n, C], labels [n] */
export function kernelTensors(k: Kernels, labels: Record<string, Int32Array>): Record<string, StoredTensor> {
  const C = k.classes;
  const out: Record<string, StoredTensor> = {};
  for (const [name, data] of Object.entries(k.kernels)) {
    const [a, b] = name.split('_') as [string, string];
    out[name] = { dtype: 'F64', shape: [k.sizes[a]!, C, k.sizes[b]!, C], data };
  }
  for (const [s, data] of Object.entries(k.f0)) out[`f0_${s}`] = { dtype: 'F64', shape: [k.sizes[s]!, C], data };
  for (const [s, l] of Object.entries(labels)) out[`labels_${s}`] = { dtype: 'I64', shape: [l.length], data: BigInt64Array.from(l, (x) => BigInt(x)) };
  return out;
}

/** A solver problem (train vs `evalSet`) from stored tensors, every shape checked against the others. */
export function problemFromTensors(tensors: Record<string, StoredTensor>, classes: number, evalSet: string, where: string): KernelProblem {
  const get = (name: string, dtype: 'F64' | 'I64'): StoredTensor => {
    const t = tensors[name];
    if (!t) throw new LmtuneError('DATA', `${where}: no tensor '${name}'`, evalSet !== 'eval' ? `compute the kernels with --${evalSet} FILE` : 'compute the kernels with --eval FILE');
    if (t.dtype !== dtype) throw new LmtuneError('DATA', `${where}: tensor '${name}' is ${t.dtype}, expected ${dtype}`);
    return t;
  };
  const lt = get('labels_train', 'I64');
  const le = get(`labels_${evalSet}`, 'I64');
  const n = lt.shape[0]!;
  const m = le.shape[0]!;
  const C = classes;
  const expect = (name: string, shape: number[]): Float64Array => {
    const t = get(name, 'F64');
    if (t.shape.join(',') !== shape.join(',')) {
      throw new LmtuneError('DATA', `${where}: tensor '${name}' has shape [${t.shape.join(', ')}], but the labels and meta.json say [${shape.join(', ')}]`, 'the folder mixes kernels of different data or settings; recompute it');
    }
    return t.data as Float64Array;
  };
  const p: KernelProblem = {
    classes: C,
    n,
    m,
    trainTrain: expect('train_train', [n, C, n, C]),
    trainEval: expect(`train_${evalSet}`, [n, C, m, C]),
    f0Train: expect('f0_train', [n, C]),
    f0Eval: expect(`f0_${evalSet}`, [m, C]),
    labelsTrain: Int32Array.from(lt.data as BigInt64Array, (x) => Number(x)),
    labelsEval: Int32Array.from(le.data as BigInt64Array, (x) => Number(x)),
  };
  if (tensors[`${evalSet}_train`]) p.evalTrain = expect(`${evalSet}_train`, [m, C, n, C]);
  return p;
}

/** The same problem from kernels in memory. */
export function problemFromKernels(k: Kernels, labels: Record<string, Int32Array>, evalSet: string): KernelProblem {
  return problemFromTensors(kernelTensors(k, labels), k.classes, evalSet, '(in memory)');
}
