/**
 * Hugging Face checkpoint folders: `config.json` plus either `model.safetensors` or shards listed by
 * `model.safetensors.index.json` (`weight_map`: tensor name → shard file). Loading reads each tensor into
 * its own Float32Array; saving writes the same layout transformers writes (config.json, model.safetensors
 * or `model-0000i-of-0000n.safetensors` + index), so a saved folder loads with `from_pretrained`.
 */
import { LmtuneError } from '../util/errors.ts';
import { stableStringify } from '../util/json.ts';
import { readJsonIn, type Folder } from '../util/folder.ts';
import { asFolder, requireHost, textFile } from '../util/host.ts';
import {
  checkTensors,
  isBufferName,
  parameterCount,
  parseModelConfig,
  reconcileWithTensors,
  type ModelConfig,
  type ModelFamily,
} from './config.ts';
import { parseSafetensors, parseSafetensorsHeader, serializeSafetensors, tensorBytes, type LoadedTensor, type SafetensorsHeader, type TensorToWrite, type WritableDtype } from './safetensors.ts';
import { loadTokenizer, type TokenizerFacts } from './tokenizer.ts';
import { familyOf } from './families/index.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
export const SHARD_RE = /^model-\d{5}-of-\d{5}\.safetensors$/;

export type CheckpointTensor = LoadedTensor;

export interface CheckpointLayout {
  kind: 'single' | 'sharded';
  /** weight files in load order (names in the folder) */
  files: string[];
  /** the index file's name when sharded */
  index: string | null;
  /** tensor name → shard file name, from the index */
  weightMap: Map<string, string> | null;
}

const CONVERT_HINT =
  'convert it to safetensors with transformers: AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out, safe_serialization=True) (AutoModelForMaskedLM for RoBERTa)';

/** Finds the weight files of a folder, as transformers does: model.safetensors first, then the index. */
export function findCheckpointFiles(folder: string | Folder): CheckpointLayout {
  const dir = asFolder(folder, 'reading a checkpoint');
  if (dir.exists(SINGLE_FILE)) return { kind: 'single', files: [SINGLE_FILE], index: null, weightMap: null };
  if (dir.exists(INDEX_FILE)) return readIndex(dir);
  const present = new Set(dir.list());
  const other = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'tf_model.h5', 'flax_model.msgpack'].find((f) => present.has(f));
  if (other) {
    throw new LmtuneError('UNSUPPORTED', `${dir.label}: the weights are in ${other}, which lmtune does not read (only safetensors)`, CONVERT_HINT);
  }
  throw new LmtuneError('CHECKPOINT', `${dir.label}: no ${SINGLE_FILE} or ${INDEX_FILE} in this folder`, 'point lmtune at a Hugging Face model folder');
}

/** a shard name that stays inside the folder */
function isPlainFileName(f: string): boolean {
  return f !== '' && !f.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(f) && !f.split(/[\\/]/).includes('..');
}

function readIndex(dir: Folder): CheckpointLayout {
  const indexPath = dir.path(INDEX_FILE);
  let raw: unknown;
  try {
    raw = readJsonIn(dir, INDEX_FILE, 'safetensors index');
  } catch (e) {
    throw new LmtuneError('CHECKPOINT', (e as Error).message);
  }
  const wm = raw && typeof raw === 'object' ? (raw as Record<string, unknown>).weight_map : undefined;
  if (!wm || typeof wm !== 'object' || Array.isArray(wm)) throw new LmtuneError('CHECKPOINT', `${indexPath}: no "weight_map" object`);
  const weightMap = new Map<string, string>();
  const files: string[] = [];
  for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== 'string' || !isPlainFileName(file)) {
      throw new LmtuneError('CHECKPOINT', `${indexPath}: weight_map['${name}'] is ${JSON.stringify(file)}, expected a file name inside the folder`);
    }
    const f = file.replace(/^\.\//, '');
    if (!files.includes(f)) {
      if (!dir.exists(f)) {
        throw new LmtuneError('CHECKPOINT', `${indexPath}: weight_map puts tensor '${name}' in ${file}, which does not exist in ${dir.label}`, 'the download is incomplete: fetch every shard the index lists');
      }
      files.push(f);
    }
    weightMap.set(name, f);
  }
  if (files.length === 0) throw new LmtuneError('CHECKPOINT', `${indexPath}: weight_map is empty`);
  files.sort(); // shard names sort in shard order
  return { kind: 'sharded', files, index: INDEX_FILE, weightMap };
}

/** The parsed config.json of a folder, untouched. */
export function readConfigJson(folder: string | Folder): Record<string, unknown> {
  const dir = asFolder(folder, 'reading config.json');
  const path = dir.path('config.json');
  if (!dir.exists('config.json')) throw new LmtuneError('CHECKPOINT', `${dir.label}: no config.json in this folder`, 'point lmtune at a Hugging Face model folder');
  let raw: unknown;
  try {
    raw = readJsonIn(dir, 'config.json', 'config.json');
  } catch (e) {
    throw new LmtuneError('CHECKPOINT', (e as Error).message);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new LmtuneError('CHECKPOINT', `${path}: not a JSON object`);
  return raw as Record<string, unknown>;
}

/** Checks that every tensor the index names is in the shard it names, and no tensor is in two shards. */
function crossCheckShards(dir: Folder, layout: CheckpointLayout, headers: readonly SafetensorsHeader[]): void {
  const owner = new Map<string, string>();
  headers.forEach((h, i) => {
    const file = layout.files[i]!;
    for (const name of h.tensors.keys()) {
      const prev = owner.get(name);
      if (prev) throw new LmtuneError('CHECKPOINT', `tensor '${name}' is stored twice: in ${dir.path(prev)} and in ${dir.path(file)}`);
      owner.set(name, file);
    }
  });
  if (!layout.weightMap) return;
  for (const [name, file] of layout.weightMap) {
    if (owner.get(name) !== file) {
      const where = owner.has(name) ? `it is in ${dir.path(owner.get(name)!)}` : 'no shard holds it';
      throw new LmtuneError('CHECKPOINT', `${dir.path(layout.index!)}: weight_map puts tensor '${name}' in ${dir.path(file)}, but ${where}`);
    }
  }
}

/** Headers of every weight file (cheap: no tensor data is read). */
export function readCheckpointHeaders(folder: string | Folder): { layout: CheckpointLayout; headers: SafetensorsHeader[] } {
  const dir = asFolder(folder, 'reading a checkpoint');
  const layout = findCheckpointFiles(dir);
  const headers = layout.files.map((f) => parseSafetensorsHeader(dir, f));
  crossCheckShards(dir, layout, headers);
  return { layout, headers };
}

/**
 * Loads config.json and every tensor of a folder (converted to f32; `dtype` says what was stored), in
 * file order. Errors name the folder, file and tensor.
 */
export async function loadCheckpointTensors(folder: string | Folder): Promise<{ config: Record<string, unknown>; tensors: Map<string, CheckpointTensor> }> {
  const dir = asFolder(folder, 'loading a checkpoint');
  const config = readConfigJson(dir);
  const { layout } = readCheckpointHeaders(dir);
  const tensors = new Map<string, CheckpointTensor>();
  for (const f of layout.files) {
    for (const [name, t] of parseSafetensors(dir, f).tensors) tensors.set(name, t);
  }
  return { config, tensors };
}

export interface SaveOptions {
  /** shard when the tensors' bytes exceed this (transformers' default is 5 GB); default: never shard */
  maxShardBytes?: number;
  /** storage dtype: 'F32' (default), 'F16', 'BF16', or 'keep' (each tensor's `dtype` when writable, else F32) */
  dtype?: WritableDtype | 'keep';
  /** told (once per tensor) when a tensor is stored as F32 because its values overflow the asked dtype */
  onWarning?: (message: string) => void;
}

export interface SavedCheckpoint {
  files: string[];
  totalTensorBytes: number;
  /** tensors stored as F32 instead of F16/BF16 because they would overflow it (see `planCheckpoint`) */
  widened: string[];
}

const TORCH_DTYPE: Readonly<Record<WritableDtype, string>> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

function storageDtype(t: { dtype?: string }, opt: SaveOptions['dtype']): WritableDtype {
  if (opt === undefined || opt === 'F32') return 'F32';
  if (opt !== 'keep') return opt;
  return t.dtype === 'F16' || t.dtype === 'BF16' ? t.dtype : 'F32';
}

/** What a save writes: weight files (in order), the index when sharded, and config.json last. */
export interface CheckpointPlan {
  weightFiles: { name: string; tensors: [string, TensorToWrite][] }[];
  /** model.safetensors.index.json's text when sharded */
  index: string | null;
  config: string;
  totalTensorBytes: number;
  /** tensors kept in F32 because a value overflows the asked F16/BF16 (largest finite f16: 65504) */
  widened: string[];
}

/** the first value rounding to ±Inf in `dtype`, or null (f16: |x| ≥ 65520; bf16: |x| past 3.3961e38) */
function overflowingValue(data: Float32Array, dtype: 'F16' | 'BF16'): { index: number; value: number } | null {
  const limit = dtype === 'F16' ? 65520 : 2 ** 127 * (511 / 256);
  for (let i = 0; i < data.length; i++) if (Math.abs(data[i]!) >= limit) return { index: i, value: data[i]! };
  return null;
}

/**
 * The storage dtype of each tensor, checked against its values: a NaN/Inf value is refused (a checkpoint
 * of a diverged model is not written, as load refuses it), and a finite value that F16/BF16 cannot hold
 * keeps that tensor in F32 with a warning, so nothing is ever written as an Inf it was not.
 */
function checkedEntries(where: string, tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array; dtype?: string }>, opts: SaveOptions): { entries: [string, TensorToWrite][]; widened: string[] } {
  const widened: string[] = [];
  const entries = [...tensors].map(([name, t]): [string, TensorToWrite] => {
    let dtype = storageDtype(t, opts.dtype);
    const d = t.data;
    let s = 0;
    for (let i = 0; i < d.length; i++) s += d[i]! * 0;
    if (s !== 0) {
      const i = d.findIndex((x) => !Number.isFinite(x));
      throw new LmtuneError('NUMERIC', `${where}: tensor '${name}' holds ${d[i]} at index ${i}; refusing to save a checkpoint with non-finite weights`, 'the model diverged; resume from an earlier checkpoint with a lower learning rate');
    }
    if (dtype === 'F16' || dtype === 'BF16') {
      const o = overflowingValue(d, dtype);
      if (o) {
        opts.onWarning?.(`${where}: tensor '${name}' is saved as F32, not ${dtype}: its value ${o.value} (index ${o.index}) overflows ${dtype}`);
        widened.push(name);
        dtype = 'F32';
      }
    }
    return [name, { shape: t.shape, data: d, dtype }];
  });
  return { entries, widened };
}

/**
 * Plans config.json (keys sorted) and the tensors (in the given order) as model.safetensors, or as
 * shards + model.safetensors.index.json when they exceed `maxShardBytes`; src/node/checkpoint-files.ts
 * writes the plan. Deterministic: the same input gives the same bytes, and save → load → save
 * reproduces every file. `where` names the destination in messages.
 */
export function planCheckpoint(
  where: string,
  config: Record<string, unknown>,
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array; dtype?: string }>,
  opts: SaveOptions = {},
): CheckpointPlan {
  const { entries, widened } = checkedEntries(where, tensors, opts);
  if (entries.length === 0) throw new LmtuneError('CHECKPOINT', `${where}: refusing to save a checkpoint with no tensors`);
  const sizes = entries.map(([, t]) => tensorBytes(t.shape, t.dtype ?? 'F32'));
  const total = sizes.reduce((a, b) => a + b, 0);

  const max = opts.maxShardBytes;
  if (max !== undefined && !(Number.isSafeInteger(max) && max > 0)) throw new LmtuneError('CONFIG', `maxShardBytes must be a positive integer, got ${max}`);
  const shards: [string, TensorToWrite][][] = [];
  if (max === undefined || total <= max) {
    shards.push(entries);
  } else {
    let cur: [string, TensorToWrite][] = [];
    let curBytes = 0;
    entries.forEach((e, i) => {
      // a tensor larger than the limit gets a shard of its own, as in transformers
      if (cur.length > 0 && curBytes + sizes[i]! > max) {
        shards.push(cur);
        cur = [];
        curBytes = 0;
      }
      cur.push(e);
      curBytes += sizes[i]!;
    });
    shards.push(cur);
  }

  let weightFiles: CheckpointPlan['weightFiles'];
  let index: string | null = null;
  if (shards.length === 1) {
    weightFiles = [{ name: SINGLE_FILE, tensors: shards[0]! }];
  } else {
    const n = shards.length;
    const weightMap: Record<string, string> = {};
    weightFiles = shards.map((shard, i) => {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
      for (const [t] of shard) weightMap[t] = name;
      return { name, tensors: shard };
    });
    index = stableStringify({ metadata: { total_size: total }, weight_map: weightMap });
  }

  // config.json states the storage dtype, as save_pretrained does
  const dtypes = new Set(entries.map(([, t]) => t.dtype ?? 'F32'));
  const cfg: Record<string, unknown> = { ...config };
  if (dtypes.size === 1) {
    const td = TORCH_DTYPE[[...dtypes][0] as WritableDtype];
    if ('dtype' in cfg) cfg.dtype = td;
    else cfg.torch_dtype = td;
  }
  return { weightFiles, index, config: stableStringify(cfg), totalTensorBytes: total, widened };
}

/**
 * Writes a checkpoint folder through the host (atomic files, config.json last so a folder whose weights
 * failed to write keeps its old, matching config). A weight file of the other layout left by an earlier
 * save is removed, so the folder is never ambiguous.
 */
export function saveCheckpoint(
  dir: string,
  config: Record<string, unknown>,
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array; dtype?: string }>,
  opts: SaveOptions = {},
): SavedCheckpoint {
  const plan = planCheckpoint(dir, config, tensors, opts);
  const files = [
    ...plan.weightFiles.map((w) => ({ name: w.name, write: (sink: Parameters<typeof serializeSafetensors>[0]) => void serializeSafetensors(sink, w.tensors, { format: 'pt' }, w.name) })),
    ...(plan.index !== null ? [textFile(INDEX_FILE, plan.index)] : []),
    textFile('config.json', plan.config),
  ];
  const written = requireHost('saving a checkpoint').writeFiles(dir, files, (f) => f === SINGLE_FILE || f === INDEX_FILE || SHARD_RE.test(f));
  // config.json first in the list, as callers have always been told
  return { files: [written[written.length - 1]!, ...written.slice(0, -1)], totalTensorBytes: plan.totalTensorBytes, widened: plan.widened };
}

// ---------------------------------------------------------------------------------------------------
// What `lmtune info` reports

export interface CheckpointInfo {
  dir: string;
  family: ModelFamily;
  modelType: string;
  architectures: string[];
  layout: 'single' | 'sharded';
  files: { name: string; bytes: number }[];
  tensorCount: number;
  /** elements of all stored parameter tensors (buffers such as causal masks excluded; a tied head once) */
  parameters: number;
  /** the same, computed from config.json (after the weights settle the MLP width) */
  expectedParameters: number;
  /** stored elements per dtype */
  dtypes: Record<string, number>;
  config: Record<string, string | number | boolean | null>;
  /** 'ok', or the problem checkTensors found */
  tensorCheck: string;
  notes: string[];
  tokenizer: TokenizerFacts | { error: string };
}

function highlights(c: ModelConfig): Record<string, string | number | boolean | null> {
  const base: Record<string, string | number | boolean | null> = {
    vocabSize: c.vocabSize,
    hiddenSize: c.hiddenSize,
    numLayers: c.numLayers,
    numHeads: c.numHeads,
    headDim: c.headDim,
    intermediateSize: c.intermediateSize,
    maxPositions: c.maxPositions,
    tieWordEmbeddings: c.tieWordEmbeddings,
    bosTokenId: c.bosTokenId,
    eosTokenId: c.eosTokenId,
    padTokenId: c.padTokenId,
  };
  return { ...base, ...familyOf(c).highlights(c) };
}

const FLOAT_WEIGHT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/**
 * What `TransformerModel.load` would refuse in the weights: the first weight stored as a non-float dtype
 * (from the headers), else, with `readValues`, the first holding NaN/Inf (read one tensor at a time, so
 * memory stays at one tensor). Null when every weight is a finite float.
 */
function weightValueProblem(dir: Folder, headers: readonly SafetensorsHeader[], files: readonly string[], weights: ReadonlySet<string>, readValues: boolean): string | null {
  for (let f = 0; f < files.length; f++) {
    for (const [name, t] of headers[f]!.tensors) {
      if (weights.has(name) && !FLOAT_WEIGHT_DTYPES.has(t.dtype)) return `${dir.path(files[f]!)}: tensor '${name}' is stored as ${t.dtype}; model weights must be floating point (F32, F16, BF16 or F64)`;
    }
  }
  if (!readValues) return null;
  for (let f = 0; f < files.length; f++) {
    for (const name of headers[f]!.tensors.keys()) {
      if (!weights.has(name)) continue;
      const data = parseSafetensors(dir, files[f]!, new Set([name])).tensors.get(name)!.data;
      let nan = 0;
      let inf = 0;
      for (let i = 0; i < data.length; i++) {
        const x = data[i]!;
        if (x !== x) nan++;
        else if (x === Infinity || x === -Infinity) inf++;
      }
      if (nan + inf === 0) continue;
      const what = nan === data.length ? 'is all NaN' : inf === data.length ? 'is all Inf' : `holds ${nan} NaN and ${inf} Inf value(s) of ${data.length}`;
      return `${dir.path(files[f]!)}: tensor '${name}' ${what}`;
    }
  }
  return null;
}

/**
 * Facts about a checkpoint folder, read from config.json, the safetensors headers and the tokenizer;
 * with `values` (the default) the tensor check also reads every weight once (a tensor at a time) for
 * integer dtypes and NaN/Inf, the garbage a header cannot show.
 */
export async function describeCheckpoint(folder: string | Folder, opts: { values?: boolean } = {}): Promise<CheckpointInfo> {
  const dir = asFolder(folder, 'describing a checkpoint');
  const raw = readConfigJson(dir);
  const parsed = parseModelConfig(raw, dir.path('config.json'));
  const { layout, headers } = readCheckpointHeaders(dir);
  const shapes = new Map<string, { shape: number[]; dtype: string }>();
  for (const h of headers) for (const [name, t] of h.tensors) shapes.set(name, { shape: t.shape, dtype: t.dtype });
  const { config, notes } = reconcileWithTensors(parsed, shapes);

  let parameters = 0;
  const dtypes: Record<string, number> = {};
  for (const [name, t] of shapes) {
    const n = t.shape.reduce((p, d) => p * d, 1);
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
    if (!isBufferName(name)) parameters += n;
  }
  let tensorCheck = 'ok';
  try {
    const check = checkTensors(config, shapes, dir.path(layout.index ?? layout.files[0]!));
    if (check.tiedHeadAbsent) notes.push('LM head tied to the token embedding (no head tensor stored)');
    if (check.buffers.length) notes.push(`${check.buffers.length} buffer tensor(s) ignored (e.g. ${check.buffers[0]})`);
    if (check.unexpected.length) notes.push(`${check.unexpected.length} tensor(s) the config does not use (e.g. ${check.unexpected[0]})`);
    tensorCheck = weightValueProblem(dir, headers, layout.files, new Set(check.resolved.values()), opts.values !== false) ?? 'ok';
    if (opts.values === false) notes.push('tensor values not read for NaN/Inf (--no-values)');
  } catch (e) {
    if (!(e instanceof LmtuneError)) throw e;
    tensorCheck = e.message;
  }
  let tokenizer: CheckpointInfo['tokenizer'];
  try {
    tokenizer = (await loadTokenizer(dir, config.family)).facts();
    // hf-internal-testing models say bos/eos 98 while their tokenizer's <|endoftext|> is 0: report, don't "fix"
    for (const [what, cfgId, tok] of [['bos', config.bosTokenId, tokenizer.bos], ['eos', config.eosTokenId, tokenizer.eos]] as const) {
      if (cfgId !== null && tok !== null && cfgId !== tok.id) {
        notes.push(`config.json ${what}_token_id ${cfgId} differs from the tokenizer's ${tok.token} (${tok.id}); encoding uses the tokenizer's`);
      }
    }
  } catch (e) {
    if (!(e instanceof LmtuneError)) throw e;
    tokenizer = { error: e.message };
  }
  return {
    dir: dir.label,
    family: config.family,
    modelType: config.modelType,
    architectures: config.architectures,
    layout: layout.kind,
    files: [...layout.files, ...(layout.index ? [layout.index] : [])].map((f) => ({ name: f, bytes: dir.size(f) })),
    tensorCount: shapes.size,
    parameters,
    expectedParameters: parameterCount(config),
    dtypes,
    config: highlights(config),
    tensorCheck,
    notes,
    tokenizer,
  };
}
