/**
 * LESS gradient-feature datastores (select/datastore.ts): two pool datastores (two warmup checkpoints)
 * of a few rows, built with FeatureStore.open + writeShard, then damaged: header.json fields edited
 * (wrong types, missing, huge or negative row counts, dims, dtypes), a shard's safetensors header edited
 * (row range, shape, dtype, checksum), a shard cut at any byte or a value byte flipped, a shard removed, or
 * the second datastore built disagreeing with the first (dim, projection, model fingerprint, dtype); or
 * the first datastore matched alone (one warmup checkpoint).
 * Read as `select match` reads them: FeatureStore.read, every shard through readShard (the target
 * features' path) and scanScores (the streaming pool path). When it works, the scores must be exactly
 * those of the undamaged datastores (scanned in the same case): nothing that changes them may pass.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { FeatureStore, type StoreHeader } from '../../select/datastore.ts';
import { scanScores } from '../../select/scan.ts';
import { Rng } from '../../util/rng.ts';
import { applyJsonEdits, documentEdits, jsonEdit, mutateJsonText, rarely, type DocumentEdits, type Json, type JsonEdit } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';

export type ShardDamage =
  | { op: 'none' }
  | { op: 'truncate'; at: number }
  | { op: 'flip'; at: number }
  | { op: 'remove' }
  | { op: 'meta'; edits: JsonEdit[] };

export interface DatastoreInput {
  dtype: 'f16' | 'f32';
  rows: number;
  dim: number;
  shardRows: number;
  dataSeed: number;
  /** which of the two datastores is damaged */
  store: 0 | 1;
  /** match with the first datastore alone (one warmup checkpoint): no cross-checkpoint check shields the scan */
  single: boolean;
  header: DocumentEdits | null;
  shard: number;
  damage: ShardDamage;
  disagree: null | 'dim' | 'projection' | 'model' | 'dtype' | 'shardRows' | 'data' | 'feature';
}

const damage: fc.Arbitrary<ShardDamage> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ op: 'none' as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('flip' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'remove' as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('meta' as const), edits: fc.array(jsonEdit, { minLength: 1, maxLength: 2 }) }) },
);

const input: fc.Arbitrary<DatastoreInput> = fc.record({
  dtype: fc.constantFrom('f16' as const, 'f32' as const),
  rows: fc.integer({ min: 1, max: 9 }),
  dim: fc.integer({ min: 1, max: 5 }),
  shardRows: fc.integer({ min: 1, max: 4 }),
  dataSeed: fc.nat({ max: 1000 }),
  store: fc.constantFrom(0 as const, 1 as const),
  single: fc.boolean(),
  header: fc.option(documentEdits, { freq: 2 }),
  shard: fc.nat(),
  damage,
  disagree: rarely(fc.constantFrom('dim' as const, 'projection' as const, 'model' as const, 'dtype' as const, 'shardRows' as const, 'data' as const, 'feature' as const)),
});

function header(i: DatastoreInput, c: number): StoreHeader {
  const h: StoreHeader = {
    format: 'lmtune-less-features',
    version: 1,
    rows: i.rows,
    dim: i.dim,
    dtype: i.dtype,
    shardRows: i.shardRows,
    model: 'f'.repeat(64),
    checkpoint: `epoch-${c + 1}:abc${c}`,
    projection: { kind: 'rademacher', seed: 0, inDim: 100 },
    data: { file: 'pool.jsonl', sha256: 'p'.repeat(64) },
    feature: 'adam',
    maxLength: 64,
  };
  if (c === 1 && i.disagree) {
    if (i.disagree === 'dim') h.dim = i.dim + 1;
    else if (i.disagree === 'projection') h.projection = { ...h.projection, seed: 1 };
    else if (i.disagree === 'model') h.model = 'e'.repeat(64);
    else if (i.disagree === 'dtype') h.dtype = i.dtype === 'f16' ? 'f32' : 'f16';
    else if (i.disagree === 'shardRows') h.shardRows = i.shardRows + 1;
    else if (i.disagree === 'data') h.data = { ...h.data, sha256: 'q'.repeat(64) };
    else h.feature = 'sgd';
  }
  return h;
}

/** the two datastores under `root`, undamaged (the second may disagree with the first) */
function build(i: DatastoreInput, root: string, disagree: boolean): string[] {
  const rng = new Rng(i.dataSeed);
  return [0, 1].map((c) => {
    const dir = join(root, `pool-c${c}`);
    const st = FeatureStore.open(dir, header(disagree ? i : { ...i, disagree: null }, c));
    for (let k = 0; k < st.shards; k++) {
      const [s, e] = st.range(k);
      st.writeShard(k, Float32Array.from({ length: (e - s) * st.header.dim }, () => rng.normal()));
    }
    return dir;
  });
}

/** a safetensors file with its JSON header edited (the 8-byte length rewritten to match) */
function editSafetensorsHeader(bytes: Buffer, edits: JsonEdit[]): Buffer {
  const n = Number(bytes.readBigUInt64LE(0));
  const doc = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Json;
  const text = Buffer.from(JSON.stringify(applyJsonEdits(doc, edits)), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, bytes.subarray(8 + n)]);
}

/** K = 2 subtask means per checkpoint, fixed by the (true) dim */
function means(dim: number): Float64Array[] {
  return [0, 1].map((c) => Float64Array.from({ length: 2 * dim }, (_, k) => Math.sin(1 + k + 7 * c)));
}

async function matchScores(dirs: string[]): Promise<Float64Array> {
  const stores = dirs.map((d) => FeatureStore.read(d));
  // the target-feature path of runMatch: every shard read whole (and checked)
  for (const st of stores) {
    st.checkComplete();
    for (let k = 0; k < st.shards; k++) st.readShard(k);
  }
  const dim = stores[0]!.header.dim;
  const w = stores.map(() => 1 / stores.length);
  const r = await scanScores(stores, { aggregate: 'max-subtask-mean', weights: w, means: means(dim).slice(0, stores.length), blockRows: 2 });
  return r.scores;
}

function damageStore(i: DatastoreInput, dirs: string[]): void {
  const dir = dirs[i.single ? 0 : i.store]!;
  const h = JSON.parse(readFileSync(join(dir, 'header.json'), 'utf8')) as StoreHeader;
  if (i.header) writeFileSync(join(dir, 'header.json'), mutateJsonText(h as unknown as Json, i.header));
  const shards = Math.ceil(h.rows / h.shardRows);
  const path = join(dir, `shard-${String(i.shard % shards).padStart(5, '0')}.safetensors`);
  const d = i.damage;
  if (d.op === 'none') return;
  if (d.op === 'remove') return rmSync(path);
  const bytes = readFileSync(path);
  if (d.op === 'truncate') writeFileSync(path, bytes.subarray(0, d.at % bytes.length));
  else if (d.op === 'flip') {
    // a byte of the values (the part after the header)
    const start = 8 + Number(bytes.readBigUInt64LE(0));
    bytes[start + (d.at % (bytes.length - start))]! ^= 0x01;
    writeFileSync(path, bytes);
  } else writeFileSync(path, editSafetensorsHeader(bytes, d.edits));
}

export const datastoreTarget: FuzzTarget<DatastoreInput> = {
  name: 'datastore',
  description: 'LESS feature datastores (header.json + checksummed shards) through FeatureStore.read + readShard + scanScores (select match)',
  input,
  prepare(i, dir) {
    build(i, join(dir, 'ref'), false);
    damageStore(i, build(i, join(dir, 'case'), true));
  },
  async run(i, dir) {
    const cs = i.single ? [0] : [0, 1];
    const got = await matchScores(cs.map((c) => join(dir, 'case', `pool-c${c}`)));
    const want = await matchScores(cs.map((c) => join(dir, 'ref', `pool-c${c}`)));
    const same = got.length === want.length && Buffer.from(got.buffer).equals(Buffer.from(want.buffer));
    if (!same) throw new Error(`silent garbage: damaged datastore scored without an error (${got.length} scores, reference ${want.length}): ${JSON.stringify(i)}`);
  },
};

/** for the regression tests: a case's folder made by hand */
export function makeDatastoreCase(i: DatastoreInput, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const dirs = build(i, dir, true);
  damageStore(i, dirs);
  return dirs;
}
