/**
 * The feature datastore: shards read back what was written (f32 exactly, f16 as rounded by
 * `roundToDtype`, checked against the f16 table); a damaged shard fails its checksum and is reported
 * missing; reopening with another model, projection or pool is refused naming the field.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { FeatureStore, roundToDtype, type StoreHeader } from './datastore.ts';

function header(over: Partial<StoreHeader> = {}): StoreHeader {
  return {
    format: 'lmtune-less-features',
    version: 1,
    rows: 10,
    dim: 6,
    dtype: 'f32',
    shardRows: 4,
    model: 'm1',
    checkpoint: 'epoch-1:abc',
    projection: { kind: 'rademacher', seed: 0, inDim: 100 },
    data: { file: 'pool.jsonl', sha256: 'p1' },
    feature: 'adam',
    maxLength: 64,
    ...over,
  };
}

test('shards round-trip, checksums catch damage, and a different model/projection/pool is refused', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-store-'));
  try {
    const rng = new Rng(1);
    for (const dtype of ['f32', 'f16'] as const) {
      const dir = join(tmp, dtype);
      const st = FeatureStore.open(dir, header({ dtype }));
      assert.equal(st.shards, 3);
      assert.deepEqual(st.range(2), [8, 10]);
      assert.deepEqual(st.missing(), [0, 1, 2]);
      const data = [0, 1, 2].map((i) => {
        const [s, e] = st.range(i);
        return Float32Array.from({ length: (e - s) * 6 }, () => rng.normal());
      });
      // keep copies: roundToDtype may return its input
      const want = data.map((d) => Float32Array.from(roundToDtype(Float32Array.from(d), dtype)));
      st.writeShard(0, data[0]!);
      st.writeShard(2, data[2]!);
      assert.deepEqual(st.missing(), [1]);
      st.writeShard(1, data[1]!);
      const back = FeatureStore.read(dir);
      for (let i = 0; i < 3; i++) assert.ok(Buffer.from(back.readShard(i).buffer).equals(Buffer.from(want[i]!.buffer)), `${dtype} shard ${i}`);
      if (dtype === 'f32') for (let i = 0; i < 3; i++) assert.deepEqual([...back.readShard(i)], [...data[i]!]);
      else {
        // f16 keeps ~11 bits: relative error below 2^-11
        for (let k = 0; k < data[0]!.length; k++) assert.ok(Math.abs(want[0]![k]! - data[0]![k]!) <= Math.abs(data[0]![k]!) * 2 ** -11 + 6e-8);
      }
      // flip one byte of the last value of shard 1: the checksum no longer matches
      const p = back.shardPath(1);
      const bytes = readFileSync(p);
      bytes[bytes.length - 1] ^= 0x01;
      writeFileSync(p, bytes);
      assert.deepEqual(back.missing(), [1]);
      assert.throws(() => back.readShard(1), /damaged/);
    }
    const dir = join(tmp, 'f32');
    assert.throws(() => FeatureStore.open(dir, header({ model: 'm2' })), /different model \(fingerprint\): it holds "m1", this run has "m2"/);
    assert.throws(() => FeatureStore.open(dir, header({ projection: { kind: 'rademacher', seed: 1, inDim: 100 } })), /different projection/);
    assert.throws(() => FeatureStore.open(dir, header({ data: { file: 'pool.jsonl', sha256: 'p2' } })), /different data file/);
    assert.throws(() => FeatureStore.open(dir, header({ dim: 8 })), /different projection dimension/);
    FeatureStore.open(dir, header()); // the same identity reopens
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
