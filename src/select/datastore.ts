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
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import { floatToHalf, halfTable } from '../models/safetensors.ts';
import { readSafetensors, writeSafetensors } from '../node/safetensors-file.ts';

export type StoreDtype = 'f16' | 'f32';

/** what the features are of; equal identities mean interchangeable datastores */
export interface StoreIdentity {
  model: string;
  checkpoint: string;
  projection: { kind: 'rademacher' | 'srht'; seed: number; inDim: number };
  data: { file: string; sha256: string };
  feature: 'adam' | 'sgd';
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
    if (h.format !== 'lmtune-less-features' || h.version !== 1) throw new LmtuneError('IO', `${path}: not an lmtune feature datastore header (format ${String(h.format)}, version ${String(h.version)})`);
    return new FeatureStore(dir, h);
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
    const stored = roundToDtype(features, dtype);
    writeSafetensors(this.shardPath(i), [['features', { shape: [e - s, dim], data: stored, dtype: dtype === 'f16' ? 'F16' : 'F32' }]], {
      format: 'lmtune-less-features',
      shard: String(i),
      row_start: String(s),
      rows: String(e - s),
      sha256: sha256Of(stored),
    });
  }

  /** shard i's features, checked against its checksum and range; null when absent or damaged */
  tryReadShard(i: number): Float32Array | null {
    const p = this.shardPath(i);
    if (!existsSync(p)) return null;
    try {
      const { header, tensors } = readSafetensors(p);
      const t = tensors.get('features');
      const [s, e] = this.range(i);
      if (!t || header.metadata.row_start !== String(s) || header.metadata.rows !== String(e - s) || t.data.length !== (e - s) * this.header.dim) return null;
      if (sha256Of(t.data) !== header.metadata.sha256) return null;
      return t.data;
    } catch (err) {
      if (err instanceof LmtuneError) return null;
      throw err;
    }
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
