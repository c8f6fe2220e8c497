/**
 * Streaming matching (scan.ts + the WebAssembly kernel) against independent values:
 * - `cos-with-mean-grad` against its closed form on unit vectors in the plane (the mean of u(a) and u(b)
 *   points at (a+b)/2, so the cosine with it is cos(θ − (a+b)/2)), through `Matcher` and the stream;
 * - all three aggregations against the literal float64 `Matcher` (every target row) on random f16 and
 *   f32 datastores with 2 checkpoints, a dimension that is not a multiple of the SIMD width, uneven
 *   subtasks and skipped rows; bit-identical scores for any read block size and thread count;
 * - the per-subtask extremes against a sort; shards of the first checksum format still read; a damaged
 * shard is an error naming its file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { FeatureStore, roundToDtype, type StoreDtype, type StoreHeader } from './datastore.ts';
import { Matcher, checkpointWeights, subtaskGroups, subtaskMeans, type Aggregate } from './match.ts';
import { scanScores } from './scan.ts';
import { writeSafetensors } from '../node/safetensors-file.ts';

function store(dir: string, rows: number, dim: number, dtype: StoreDtype, shardRows: number, data: Float32Array): { st: FeatureStore; readBack: Float32Array } {
  const h: StoreHeader = {
    format: 'lmtune-less-features',
    version: 1,
    rows,
    dim,
    dtype,
    shardRows,
    model: 'm',
    checkpoint: 'c',
    projection: { kind: 'rademacher', seed: 0, inDim: 10 },
    data: { file: 'p', sha256: 'x' },
    feature: 'adam',
    maxLength: 8,
  };
  const st = FeatureStore.open(dir, h);
  for (let i = 0; i < st.shards; i++) {
    const [s, e] = st.range(i);
    st.writeShard(i, data.slice(s * dim, e * dim));
  }
  return { st, readBack: roundToDtype(data, dtype) };
}

function unit(rng: Rng, n: number, d: number): Float32Array {
  const x = Float32Array.from({ length: n * d }, () => rng.normal());
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += x[r * d + k]! ** 2;
    for (let k = 0; k < d; k++) x[r * d + k] = x[r * d + k]! / Math.sqrt(s);
  }
  return x;
}

const circle = (angles: number[]): Float32Array => Float32Array.from(angles.flatMap((a) => [Math.cos(a), Math.sin(a)]));

test('cos-with-mean-grad: closed form in the plane, through Matcher and the stream', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-scan-'));
  try {
    const poolA = [0, 1, 2.5, -1];
    const poolB = [0.5, 2, -0.3, 3];
    const tA = [0.1, 0.3, 1.0, 1.2, 2.0, 2.6];
    const tB = [0.4, 0.0, 1.5, 0.9, 3.0, 2.2];
    const subs = ['x', 'x', 'y', 'y', 'z', 'z'];
    const lrs = [3e-5, 1e-5];
    const w = [0.75, 0.25];
    const groups = subtaskGroups(subs, [], 'cos-with-mean-grad');
    const want = poolA.map((_, n) =>
      Math.max(...[0, 2, 4].map((j) => w[0]! * Math.cos(poolA[n]! - (tA[j]! + tA[j + 1]!) / 2) + w[1]! * Math.cos(poolB[n]! - (tB[j]! + tB[j + 1]!) / 2))),
    );
    const m = new Matcher([circle(tA), circle(tB)], 6, 2, lrs, groups);
    const viaMatcher = m.score([circle(poolA), circle(poolB)], 4, 'cos-with-mean-grad');
    const stores = [store(join(tmp, 'a'), 4, 2, 'f32', 3, circle(poolA)).st, store(join(tmp, 'b'), 4, 2, 'f32', 3, circle(poolB)).st];
    const viaStream = await scanScores(stores, { aggregate: 'cos-with-mean-grad', weights: checkpointWeights(lrs), means: [0, 1].map((i) => m.means(i)) });
    for (let n = 0; n < 4; n++) {
      assert.ok(Math.abs(viaMatcher[n]! - want[n]!) < 1e-6, `matcher row ${n}: ${viaMatcher[n]} vs ${want[n]}`);
      assert.ok(Math.abs(viaStream.scores[n]! - want[n]!) < 1e-6, `stream row ${n}: ${viaStream.scores[n]} vs ${want[n]}`);
    }
    // the cosine ignores the length of the pool feature: a pool row scaled by 3 scores the same
    const scaled = circle(poolA).map((v) => 3 * v);
    const s3 = m.score([scaled, circle(poolB)], 4, 'cos-with-mean-grad');
    for (let n = 0; n < 4; n++) assert.ok(Math.abs(s3[n]! - want[n]!) < 1e-6);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('the stream equals the literal float64 matcher for every aggregation, dtype and block size', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-scan-'));
  try {
    const rng = new Rng(7);
    const N = 53;
    const d = 37;
    const M = 7;
    const subs = ['a', 'b', 'a', 'c', 'b', 'a', 'c'];
    const lrs = [2e-5, 0.5e-5];
    const V = [unit(rng, M, d), unit(rng, M, d)];
    const G = [unit(rng, N, d), unit(rng, N, d)];
    const skipped = new Set([0, 17, 52]);
    for (const dtype of ['f16', 'f32'] as const) {
      const made = G.map((g, i) => store(join(tmp, `${dtype}-${i}`), N, d, dtype, 10, g));
      for (const agg of ['max-subtask-mean', 'mean', 'cos-with-mean-grad'] as Aggregate[]) {
        const groups = subtaskGroups(subs, [], agg);
        const m = new Matcher(V, M, d, lrs, groups);
        const want = m.score(
          made.map((x) => x.readBack),
          N,
          agg,
        );
        const means = [0, 1].map((i) => subtaskMeans(V[i]!, M, d, groups));
        const variants: { blockRows?: number; threads?: number }[] = [{}, { blockRows: 1 }, { blockRows: 3 }, { blockRows: 10 }, { threads: 3 }, { blockRows: 9, threads: 2 }];
        const runs: Awaited<ReturnType<typeof scanScores>>[] = [];
        for (const v of variants) runs.push(await scanScores(made.map((x) => x.st), { aggregate: agg, weights: checkpointWeights(lrs), means, skipped, extremes: 4, ...v }));
        runs.forEach((r, i) => assert.deepEqual(new Uint8Array(r.scores.buffer), new Uint8Array(runs[0]!.scores.buffer), `${dtype} ${agg}: ${JSON.stringify(variants[i])} changed the bytes`));
        const got = runs[0]!.scores;
        for (let n = 0; n < N; n++) {
          if (skipped.has(n)) {
            assert.ok(Number.isNaN(got[n]!));
            continue;
          }
          assert.ok(Math.abs(got[n]! - want[n]!) < 2e-6, `${dtype} ${agg} row ${n}: ${got[n]} vs ${want[n]}`);
        }
        // per-subtask extremes: the rows with the highest/lowest score against that subtask alone
        const K = groups.sizes.length;
        for (let s = 0; s < K; s++) {
          const rowsOfS = subs.map((x, j) => (groups.names[groups.of[j]!] === groups.names[s] ? j : -1)).filter((j) => j >= 0);
          const Vs = V.map((v) => Float32Array.from(rowsOfS.flatMap((j) => [...v.subarray(j * d, (j + 1) * d)])));
          const perS = new Matcher(Vs, rowsOfS.length, d, lrs, subtaskGroups(rowsOfS.map(() => 'all'), [], agg)).score(
            made.map((x) => x.readBack),
            N,
            agg,
          );
          const order = [...Array(N).keys()].filter((n) => !skipped.has(n)).sort((a, b) => perS[b]! - perS[a]! || a - b);
          assert.deepEqual(
            runs[0]!.subtasks[s]!.top.map((e) => e.index),
            order.slice(0, 4),
            `${dtype} ${agg} subtask ${s} top`,
          );
          assert.deepEqual(
            runs[0]!.subtasks[s]!.bottom.map((e) => e.index),
            order.slice(-4).reverse(),
            `${dtype} ${agg} subtask ${s} bottom`,
          );
        }
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('shards of the first format (checksum of the values as f32) are still read, by the stream and by readShard', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-scan-'));
  try {
    const rng = new Rng(5);
    const d = 24;
    const x = unit(rng, 20, d);
    for (const dtype of ['f16', 'f32'] as const) {
      const { st, readBack } = store(join(tmp, dtype), 20, d, dtype, 8, x);
      const means = [new Float64Array(4 * d).map(() => rng.normal())];
      const now = await scanScores([st], { aggregate: 'max-subtask-mean', weights: [1], means });
      // rewrite every shard as the first format wrote it: no `checksum` key, sha256 of the f32 values
      for (let i = 0; i < st.shards; i++) {
        const [s, e] = st.range(i);
        const vals = readBack.slice(s * d, e * d);
        writeSafetensors(st.shardPath(i), [['features', { shape: [e - s, d], data: vals, dtype: dtype === 'f16' ? 'F16' : 'F32' }]], {
          format: 'lmtune-less-features',
          shard: String(i),
          row_start: String(s),
          rows: String(e - s),
          sha256: createHash('sha256').update(new Uint8Array(vals.buffer)).digest('hex'),
        });
        assert.deepEqual(st.readShard(i), vals);
      }
      const old = await scanScores([st], { aggregate: 'max-subtask-mean', weights: [1], means });
      assert.deepEqual(old.scores, now.scores);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('a damaged shard stops the stream with its file named', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-scan-'));
  try {
    const rng = new Rng(3);
    const { st } = store(join(tmp, 's'), 30, 16, 'f16', 8, unit(rng, 30, 16));
    const p = st.shardPath(2);
    const b = readFileSync(p);
    b[b.length - 5] = b[b.length - 5]! ^ 0x40;
    writeFileSync(p, b);
    await assert.rejects(scanScores([st], { aggregate: 'mean', weights: [1], means: [new Float64Array(16).fill(0.25)] }), (e: Error) => e.message.includes('shard-00002.safetensors') && /checksum/.test(e.message));
    rmSync(st.shardPath(1));
    await assert.rejects(scanScores([st], { aggregate: 'mean', weights: [1], means: [new Float64Array(16).fill(0.25)] }), (e: Error) => e.message.includes('shard-00001.safetensors') && /missing/.test(e.message));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
