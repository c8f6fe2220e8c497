/**
 * The gradient-feature datastore: one folder per (checkpoint, data file, projection dimension) holding
 * `header.json` and shards `shard-00000.safetensors`, ... of `shardRows` feature rows each.
 *
 * - The header names everything the features depend on: row count, dimension, storage dtype, the
 *   checkpoint, the model fingerprint, the projection (kind, seed, input dimension), the data file's
 *   sha256, the feature kind and the max length. Opening a folder whose header differs is refused with
 *   the differing field named, so a datastore is never silently mixed across models or pools.
 * - A shard is a safetensors file (`features` [rows, dim], F16 or F32) whose metadata carries its row
 *   range and the sha256 of its values; it is written through a temporary name and renamed, so after a
 *   kill a shard is either whole or absent, and a damaged one fails its checksum and is recomputed.
 * - Features are stored in row order of the data file, so shard i holds rows [i·shardRows, ...).
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import { floatToHalf, halfTable } from '../models/safetensors.ts';
import { readSafetensorsHeader, writeSafetensors } from '../node/safetensors-file.ts';

export type StoreDtype = 'f16' | 'f32';

/** what the features are of; equal identities mean interchangeable datastores */
export interface StoreIdentity {
  model: string;
  checkpoint: string;
  projection: { kind: 'rademacher' | 'srht' | 'kronecker'; seed: number; inDim: number };
  data: { file: string; sha256: string };
  /** 'adam-factored': the Kronecker path's factored Adam approximation (select/kronecker.ts) */
  feature: 'adam' | 'adam-factored' | 'sgd';
  maxLength: number;
}

export interface StoreHeader extends StoreIdentity {
  format: 'lmtune-less-features';
  version: 1;
  rows: number;
  dim: number;
  dtype: StoreDtype;
  shardRows: number;
}

const DESCRIBE: Record<string, string> = {
  model: 'model (fingerprint)',
  checkpoint: 'warmup checkpoint',
  projection: 'projection',
  data: 'data file (sha256)',
  feature: 'feature kind',
  maxLength: 'max length',
  rows: 'row count',
  dim: 'projection dimension',
  dtype: 'storage dtype',
  shardRows: 'rows per shard',
  format: 'format',
  version: 'format version',
};

/** values rounded to the storage dtype, as they read back */
export function roundToDtype(x: Float32Array, dtype: StoreDtype): Float32Array {
  if (dtype === 'f32') return x;
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const table = halfTable();
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = table[floatToHalf(bits[i]!)]!;
  return out;
}

function sha256Of(x: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength)).digest('hex');
}

function sha256OfBytes(x: Uint8Array): string {
  return createHash('sha256').update(x).digest('hex');
}

/**
 * Shards written since the streaming matcher carry `checksum: sha256-stored-bytes`: the sha256 of the
 * tensor's bytes as stored (f16 bytes for f16), which a reader checks without converting anything and
 * which hashes half the bytes of the first format's (the sha256 of the values as f32, still accepted).
 */
export const STORED_BYTES = 'sha256-stored-bytes';

export interface ShardLocation {
  path: string;
  dtype: 'F16' | 'F32';
  /** absolute byte range of the values in the file */
  begin: number;
  end: number;
  rows: number;
  sha256: string;
  /** what sha256 is of: the stored bytes, or (older shards) the values as f32 */
  checksum: 'stored-bytes' | 'f32-values';
}

/** the bytes of values as stored: f16 bits (round to nearest even, as roundToDtype), or the f32 bytes */
export function storedBytes(stored: Float32Array, dtype: StoreDtype): Uint8Array {
  if (dtype === 'f32') return new Uint8Array(stored.buffer, stored.byteOffset, stored.byteLength);
  const bits = new Uint32Array(stored.buffer, stored.byteOffset, stored.length);
  const out = new Uint16Array(stored.length);
  for (let i = 0; i < stored.length; i++) out[i] = floatToHalf(bits[i]!);
  return new Uint8Array(out.buffer);
}

function bytesToF32(bytes: Uint8Array, dtype: 'F16' | 'F32'): Float32Array {
  if (dtype === 'F32') return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const h = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const table = halfTable();
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = table[h[i]!]!;
  return out;
}

/** the most rows a datastore may claim (2^31: scores are one Float64Array; LESS pools are ~10^5 rows) */
const MAX_ROWS = 2 ** 31;

/** every field a reader relies on, with its type and range; an LmtuneError naming the file and field */
function checkHeader(h: StoreHeader, path: string): void {
  const bad = (field: string, want: string): never => {
    throw new LmtuneError('IO', `${path}: datastore header field "${field}" must be ${want}, got ${JSON.stringify(h[field as keyof StoreHeader] ?? null)}`, 'rerun `lmtune select grads` to recompute the datastore');
  };
  const int = (v: unknown, lo: number, hi: number): boolean => typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
  if (!int(h.rows, 0, MAX_ROWS)) bad('rows', `an integer in [0, ${MAX_ROWS}]`);
  if (!int(h.dim, 1, 2 ** 24)) bad('dim', 'an integer in [1, 2^24]');
  if (!int(h.shardRows, 1, MAX_ROWS)) bad('shardRows', 'a positive integer');
  if (h.dtype !== 'f16' && h.dtype !== 'f32') bad('dtype', '"f16" or "f32"');
  if (typeof h.model !== 'string') bad('model', 'a string');
  if (typeof h.checkpoint !== 'string') bad('checkpoint', 'a string');
  if (!['adam', 'adam-factored', 'sgd'].includes(h.feature)) bad('feature', '"adam", "adam-factored" or "sgd"');
  if (!int(h.maxLength, 1, Number.MAX_SAFE_INTEGER)) bad('maxLength', 'a positive integer');
  const p = h.projection as unknown;
  if (p === null || typeof p !== 'object' || !['rademacher', 'srht', 'kronecker'].includes((p as StoreIdentity['projection']).kind) || !Number.isInteger((p as StoreIdentity['projection']).seed) || !Number.isInteger((p as StoreIdentity['projection']).inDim)) {
    bad('projection', 'an object {kind, seed, inDim}');
  }
  const d = h.data as unknown;
  if (d === null || typeof d !== 'object' || typeof (d as StoreIdentity['data']).file !== 'string' || typeof (d as StoreIdentity['data']).sha256 !== 'string') bad('data', 'an object {file, sha256}');
}

/** the identity fields that every checkpoint's datastore of one pool shares (all but the checkpoint) */
export const SHARED_IDENTITY = ['model', 'projection', 'data', 'feature', 'maxLength'] as const;

/** the description of a header field, for messages */
export function describeField(k: string): string {
  return DESCRIBE[k] ?? k;
}

export class FeatureStore {
  private constructor(
    readonly dir: string,
    readonly header: StoreHeader,
  ) {}

  /** Opens `dir` for writing: creates it with `header`, or checks that the existing header is the same. */
  static open(dir: string, header: StoreHeader): FeatureStore {
    const path = join(dir, 'header.json');
    if (existsSync(path)) {
      const old = readJson<StoreHeader>(path, 'datastore header');
      for (const k of Object.keys(DESCRIBE) as (keyof StoreHeader)[]) {
        const a = stableStringify(old[k] ?? null).trim();
        const b = stableStringify(header[k]).trim();
        if (a !== b) {
          throw new LmtuneError(
            'CONFIG',
            `${dir}: this datastore was computed with a different ${DESCRIBE[k]}: it holds ${a}, this run has ${b}`,
            'features from another model, projection or pool cannot be reused: choose another --out, or remove this folder to recompute it',
          );
        }
      }
      return new FeatureStore(dir, old);
    }
    if (!(header.rows >= 0 && header.dim >= 1 && header.shardRows >= 1)) throw new LmtuneError('CONFIG', `${dir}: invalid datastore shape (${header.rows} rows × ${header.dim}, ${header.shardRows} per shard)`);
    mkdirSync(dir, { recursive: true });
    atomicWrite(path, stableStringify(header));
    return new FeatureStore(dir, header);
  }

  /** Opens an existing datastore for reading. */
  static read(dir: string): FeatureStore {
    const path = join(dir, 'header.json');
    if (!existsSync(path)) throw new LmtuneError('IO', `${dir}: not a feature datastore (no header.json)`, 'run `lmtune select grads` first');
    const h = readJson<StoreHeader>(path, 'datastore header');
    if (h === null || typeof h !== 'object' || Array.isArray(h)) throw new LmtuneError('IO', `${path}: not an lmtune feature datastore header (not a JSON object)`);
    if (h.format !== 'lmtune-less-features' || h.version !== 1) throw new LmtuneError('IO', `${path}: not an lmtune feature datastore header (format ${String(h.format)}, version ${String(h.version)})`);
    checkHeader(h, path);
    return new FeatureStore(dir, h);
  }

  /**
   * Checks that the last shard the header implies is there and matches (its header only): a row count
   * edited past the data fails here, naming the file, before a reader sizes buffers by it.
   */
  checkComplete(): void {
    const last = this.shards - 1;
    if (last >= 0 && !this.shardLocation(last)) {
      throw new LmtuneError('IO', `${this.shardPath(last)}: missing, or not a shard of this datastore (header.json says ${this.header.rows} rows × ${this.header.dim} ${this.header.dtype} in shards of ${this.header.shardRows})`, 'rerun `lmtune select grads` to recompute it');
    }
  }

  get shards(): number {
    return Math.ceil(this.header.rows / this.header.shardRows);
  }

  range(i: number): [number, number] {
    const s = i * this.header.shardRows;
    return [s, Math.min(this.header.rows, s + this.header.shardRows)];
  }

  shardPath(i: number): string {
    return join(this.dir, `shard-${String(i).padStart(5, '0')}.safetensors`);
  }

  /** Writes shard i (rows of its range, [rows, dim]) atomically, with its checksum. */
  writeShard(i: number, features: Float32Array): void {
    const [s, e] = this.range(i);
    const { dim, dtype } = this.header;
    if (features.length !== (e - s) * dim) throw new LmtuneError('SHAPE', `shard ${i}: ${features.length} values for rows [${s}, ${e}) × ${dim}`);
    // one f32 → f16 pass gives both the stored bytes (for the checksum) and the values as they read back
    const bytes = storedBytes(features, dtype);
    const stored = dtype === 'f16' ? bytesToF32(bytes, 'F16') : features;
    writeSafetensors(this.shardPath(i), [['features', { shape: [e - s, dim], data: stored, dtype: dtype === 'f16' ? 'F16' : 'F32' }]], {
      format: 'lmtune-less-features',
      shard: String(i),
      row_start: String(s),
      rows: String(e - s),
      checksum: STORED_BYTES,
      sha256: sha256OfBytes(bytes),
    });
  }

  /**
   * Where shard i's values lie in its file, checked against the header (dtype, shape, row range); null
   * when the file is absent or does not match. Readers that stream (select match) read the bytes
   * themselves and check them against `sha256` as `checksum` says.
   */
  shardLocation(i: number): ShardLocation | null {
    const p = this.shardPath(i);
    if (!existsSync(p)) return null;
    let h: ReturnType<typeof readSafetensorsHeader>;
    try {
      h = readSafetensorsHeader(p);
    } catch (err) {
      if (err instanceof LmtuneError) return null;
      throw err;
    }
    const t = h.tensors.get('features');
    const [s, e] = this.range(i);
    const dtype = this.header.dtype === 'f16' ? 'F16' : 'F32';
    const m = h.metadata;
    if (!t || t.dtype !== dtype || t.shape.length !== 2 || t.shape[0] !== e - s || t.shape[1] !== this.header.dim) return null;
    if (m.row_start !== String(s) || m.rows !== String(e - s) || typeof m.sha256 !== 'string') return null;
    return { path: p, dtype, begin: t.begin, end: t.end, rows: e - s, sha256: m.sha256, checksum: m.checksum === STORED_BYTES ? 'stored-bytes' : 'f32-values' };
  }

  /** shard i's features, checked against its checksum and range; null when absent or damaged */
  tryReadShard(i: number): Float32Array | null {
    return this.checkedShard(i)?.data ?? null;
  }

  /** the sha256 of shard i's values when the shard is whole (what a queue worker reports), else null */
  shardChecksum(i: number): string | null {
    return this.checkedShard(i)?.sha256 ?? null;
  }

  private checkedShard(i: number): { data: Float32Array; sha256: string } | null {
    const loc = this.shardLocation(i);
    if (!loc) return null;
    const bytes = new Uint8Array(loc.end - loc.begin);
    const fd = openSync(loc.path, 'r');
    try {
      if (readSync(fd, bytes, 0, bytes.length, loc.begin) !== bytes.length) return null;
    } finally {
      closeSync(fd);
    }
    const data = bytesToF32(bytes, loc.dtype);
    const sha = loc.checksum === 'stored-bytes' ? sha256OfBytes(bytes) : sha256Of(data);
    if (sha !== loc.sha256) return null;
    return { data, sha256: sha };
  }

  readShard(i: number): Float32Array {
    const x = this.tryReadShard(i);
    if (!x) throw new LmtuneError('IO', `${this.shardPath(i)}: missing or damaged (checksum)`, 'rerun `lmtune select grads` to recompute it');
    return x;
  }

  /** shards that are absent or fail their checksum */
  missing(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.shards; i++) if (!this.tryReadShard(i)) out.push(i);
    return out;
  }
}
