/** runHead: a caller's head on the body sees the same logits as the model's own graphs, and gradients through it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransformerModel } from '../heads/model.ts';
import { randomWeights, tinyConfig } from './testing.ts';
import { packBatch } from './batch.ts';
import { grad, toFloat64 } from '../engine/index.ts';
import type { ModelFamily } from './config.ts';

for (const family of ['gpt2', 'llama', 'roberta'] as ModelFamily[]) {
  test(`runHead (${family}): logits at chosen rows equal forwardAll's; candidate logits are their columns`, async () => {
    const raw = tinyConfig(family);
    const m = TransformerModel.fromWeights(raw, randomWeights(raw, 3), null, { backend: 'ref' });
    const seqs = [[5, 6, 7, 8], [9, 10, 11]];
    const all = await m.forwardAll(seqs);
    const V = all.logits.length / (all.batch * all.seq);
    const batch = packBatch(seqs, { side: 'right', padId: 0 });
    const rows = [2, batch.seq + 1]; // example 0 position 2, example 1 position 1
    const cand = [3, 7];
    const out = await m.runHead(
      'test-rows',
      batch,
      (h) => {
        const r = h.rows(h.g.input('idx', [2], 'i64'));
        return { logits: h.logits(r), cand: h.candidateLogits(r, h.g.input('cand', [2], 'i64')) };
      },
      { idx: BigInt64Array.from(rows, BigInt), cand: BigInt64Array.from(cand, BigInt) },
    );
    const logits = toFloat64(out.logits!);
    const c = toFloat64(out.cand!);
    rows.forEach((flat, k) => {
      const b = Math.floor(flat / batch.seq);
      const t = flat % batch.seq;
      const src = (b * all.seq + t) * V;
      for (let v = 0; v < V; v++) assert.ok(Math.abs(logits[k * V + v]! - all.logits[src + v]!) < 1e-9);
      cand.forEach((id, j) => assert.ok(Math.abs(c[k * 2 + j]! - all.logits[src + id]!) < 1e-9));
    });
  });
}

test('runHead: per-example gradients of a logit equal single-example gradients', async () => {
  const raw = tinyConfig('gpt2');
  const m = TransformerModel.fromWeights(raw, randomWeights(raw, 4), null, { backend: 'ref' });
  const name = 'transformer.h.0.mlp.c_fc.bias';
  const seqs = [[1, 2, 3], [4, 5, 6]];
  const run = async (ss: number[][]): Promise<Float64Array> => {
    const batch = packBatch(ss, { side: 'right', padId: 0 });
    const out = await m.runHead(
      `grad|${ss.length}`,
      batch,
      (h) => {
        const r = h.rows(h.g.input('idx', [ss.length], 'i64'));
        const f = h.candidateLogits(r, h.g.input('cand', [1], 'i64')).sum();
        const p = h.param(name);
        return { g: grad(f, [p], { perExample: [p] })[0]! };
      },
      { idx: BigInt64Array.from(ss.map((s, b) => BigInt(b * batch.seq + s.length - 1))), cand: BigInt64Array.from([7n]) },
    );
    return toFloat64(out.g!);
  };
  const both = await run(seqs);
  const n = both.length / 2;
  for (let b = 0; b < 2; b++) {
    const single = await run([seqs[b]!]);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(both[b * n + i]! - single[i]!) < 1e-10);
  }
});
