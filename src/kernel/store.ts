/**
 * A kernel folder: `kernels.safetensors` (float64 kernels [N, C, M, C] and f₀ [N, C], int64 labels) and
 * `meta.json` (what produced them). While a computation runs, `partial.safetensors` holds the finished
 * parameter blocks' sums; its metadata names the computation, so a resume with other settings is refused.
 *
 * safetensors' F64/I64 are written here (models/safetensors.ts writes the f32 family only) and read back
 * through its validated header reader, without the f32 conversion its tensor reader applies.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, statSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import { parseSafetensorsHeader } from '../models/safetensors.ts';
import type { Folder } from '../util/folder.ts';
import type { KernelFormula } from './formula.ts';

export const KERNEL_FILE = 'kernels.safetensors';
export const META_FILE = 'meta.json';
export const PARTIAL_FILE = 'partial.safetensors';
export const REPORT_FILE = 'report.html';

export type StoredTensor = { dtype: 'F64'; shape: number[]; data: Float64Array } | { dtype: 'I64'; shape: number[]; data: BigInt64Array };

export interface SetInfo {
  file: string | null;
  sha256: string | null;
  n: number;
}

export interface KernelMeta {
  version: 1;
  model: { dir: string; fingerprint: string; family: string; kind: 'causal' | 'masked' };
  task: string;
  template: string;
  labelWords: string[];
  labelIds: number[];
  formula: KernelFormula;
  binary: boolean;
  /** outputs per example: label words, or 1 with --binary */
  classes: number;
  params: { spec: string; count: number; tensors: number };
  projection: { dim: number; seed: number } | null;
  sets: Record<string, SetInfo>;
  blocks: number;
  gemm: string;
  timings?: { seconds: number; secondsPerBlock: number };
  peakRssMb?: number;
}

/** Writes F64/I64 tensors (deterministic bytes) through a temporary name. */
export function writeF64Safetensors(path: string, tensors: Record<string, StoredTensor>, metadata: Record<string, string> = {}): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  const names = Object.keys(tensors);
  for (const n of names) {
    const t = tensors[n]!;
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new LmtuneError('SHAPE', `${path}: tensor '${n}' has shape [${t.shape.join(', ')}] but ${t.data.length} values`);
    header[n] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + 8 * count] };
    off += 8 * count;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const hb = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    const put = (b: Uint8Array): void => {
      let o = 0;
      while (o < b.length) o += writeSync(fd, b, o, b.length - o);
    };
    put(len);
    put(hb);
    for (const n of names) {
      const d = tensors[n]!.data;
      put(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** the folder holding `path`, for the core's parsers (positioned reads, nothing cached) */
function folderOf(path: string): Folder {
  const dir = dirname(path);
  return {
    label: dir,
    path: (name) => join(dir, name),
    exists: (name) => existsSync(join(dir, name)),
    list: () => readdirSync(dir),
    size: (name) => statSync(join(dir, name)).size,
    readInto(name, position, target) {
      const fd = openSync(join(dir, name), 'r');
      try {
        let done = 0;
        while (done < target.length) {
          const n = readSync(fd, target, done, target.length - done, position + done);
          if (n === 0) throw new LmtuneError('CHECKPOINT', `${join(dir, name)}: unexpected end of file`);
          done += n;
        }
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** Reads F64/I64 tensors exactly (the header is validated by models/safetensors.ts). */
export function readF64Safetensors(path: string): { tensors: Record<string, StoredTensor>; metadata: Record<string, string> } {
  if (!existsSync(path)) throw new LmtuneError('IO', `${path}: not found`);
  const h = parseSafetensorsHeader(folderOf(path), basename(path));
  const fd = openSync(path, 'r');
  try {
    const tensors: Record<string, StoredTensor> = {};
    for (const [name, info] of h.tensors) {
      const bytes = new Uint8Array(new ArrayBuffer(info.end - info.begin));
      let done = 0;
      while (done < bytes.length) {
        const n = readSync(fd, bytes, done, bytes.length - done, info.begin + done);
        if (n === 0) throw new LmtuneError('CHECKPOINT', `${path}: truncated tensor '${name}'`);
        done += n;
      }
      if (info.dtype === 'F64') tensors[name] = { dtype: 'F64', shape: info.shape, data: new Float64Array(bytes.buffer) };
      else if (info.dtype === 'I64') tensors[name] = { dtype: 'I64', shape: info.shape, data: new BigInt64Array(bytes.buffer) };
      else throw new LmtuneError('CHECKPOINT', `${path}: tensor '${name}' is ${info.dtype}; a kernel file holds F64 and I64 only`);
    }
    return { tensors, metadata: h.metadata };
  } finally {
    closeSync(fd);
  }
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A content fingerprint of a model: its config and every parameter's name, shape and bytes. */
export function modelFingerprint(raw: Record<string, unknown>, tensors: Iterable<readonly [string, { shape: readonly number[]; data: Float32Array }]>): string {
  const h = createHash('sha256');
  h.update(stableStringify(raw));
  for (const [name, t] of [...tensors].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    h.update(`${name}:${t.shape.join('x')}\n`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex').slice(0, 16);
}

/**
 * Prepares an output folder: refuses one lmtune did not make (non-empty without our files) and one that
 * already holds finished kernels; returns whether partial sums exist.
 */
export function prepareOutDir(dir: string): { partial: boolean } {
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true });
    return { partial: false };
  }
  const entries = readdirSync(dir).filter((e) => !e.startsWith('.'));
  if (entries.includes(KERNEL_FILE) || entries.includes(META_FILE)) {
    throw new LmtuneError('IO', `${dir} already holds finished kernels (${KERNEL_FILE})`, 'choose another --out folder, or delete this one yourself');
  }
  // blocks/: the shares of `kernel compute --queue`'s workers (src/distributed/kernel-blocks.ts)
  const ours = new Set([PARTIAL_FILE, REPORT_FILE, 'blocks']);
  const foreign = entries.filter((e) => !ours.has(e));
  if (foreign.length) throw new LmtuneError('IO', `${dir} is not empty and was not made by lmtune kernel compute (it holds ${foreign.slice(0, 3).join(', ')})`, 'choose a new --out folder');
  return { partial: entries.includes(PARTIAL_FILE) };
}

export interface KernelFolder {
  meta: KernelMeta;
  tensors: Record<string, StoredTensor>;
}

export function readKernelFolder(dir: string): KernelFolder {
  const metaPath = join(dir, META_FILE);
  const kpath = join(dir, KERNEL_FILE);
  if (!existsSync(kpath)) {
    const hint = existsSync(join(dir, PARTIAL_FILE)) ? 'the computation did not finish: rerun the same kernel compute command to resume it' : 'compute it with lmtune kernel compute --out DIR';
    throw new LmtuneError('IO', `${dir}: no ${KERNEL_FILE}`, hint);
  }
  const meta = readJson<KernelMeta>(metaPath, 'kernel meta.json');
  const { tensors, metadata } = readF64Safetensors(kpath);
  // the two files must describe one computation: a meta.json copied from elsewhere is caught here
  if (metadata.formula !== meta.formula || metadata.fingerprint !== meta.model.fingerprint) {
    throw new LmtuneError('DATA', `${kpath} holds ${metadata.formula} kernels of model ${metadata.fingerprint}, but ${metaPath} says ${meta.formula} of ${meta.model.fingerprint}`, 'the folder mixes two computations; recompute it');
  }
  for (const [set, info] of Object.entries(meta.sets)) {
    const l = tensors[`labels_${set}`];
    if (!l || l.shape[0] !== info.n) throw new LmtuneError('DATA', `${kpath}: labels_${set} has ${l?.shape[0] ?? 'no'} examples, ${metaPath} says ${info.n}`, 'the folder mixes two computations; recompute it');
  }
  return { meta, tensors };
}

export function writeKernelFolder(dir: string, meta: KernelMeta, tensors: Record<string, StoredTensor>): void {
  writeF64Safetensors(join(dir, KERNEL_FILE), tensors, { formula: meta.formula, fingerprint: meta.model.fingerprint });
  atomicWrite(join(dir, META_FILE), stableStringify(meta));
}

/** ‖A − B‖_F / ‖B‖_F for every kernel tensor two folders share (B is the reference, e.g. the exact kernel). */
export function compareKernelFolders(a: KernelFolder, b: KernelFolder): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, tb] of Object.entries(b.tensors)) {
    const ta = a.tensors[name];
    if (!ta || tb.dtype !== 'F64' || name.startsWith('labels_')) continue;
    if (ta.shape.join(',') !== tb.shape.join(',')) throw new LmtuneError('DATA', `tensor '${name}' has shape [${ta.shape.join(', ')}] in one folder and [${tb.shape.join(', ')}] in the other`);
    let d = 0;
    let n = 0;
    for (let i = 0; i < tb.data.length; i++) {
      const x = Number(ta.data[i]!);
      const y = Number(tb.data[i]!);
      d += (x - y) ** 2;
      n += y * y;
    }
    out[name] = Math.sqrt(d / Math.max(n, Number.MIN_VALUE));
  }
  return out;
}
