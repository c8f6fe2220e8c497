/**
 * LESS features (spec less.md §5 items 2-4): batched per-example LoRA gradients equal single-example
 * backward passes through the model's own loss graph; the Adam feature matches the closed form; rows
 * are unit-norm and a zero row stays zero; features are byte-identical for any gradient batch size.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransformerModel } from '../heads/model.ts';
import { padTargets } from '../heads/objective.ts';
import { packBatch, roundUp } from '../models/batch.ts';
import { randomWeights, tinyConfig } from '../models/testing.ts';
import { attachPeft } from '../peft/index.ts';
import { Rng } from '../util/rng.ts';
import { RademacherProjection } from '../projection/rademacher.ts';
import { adamFeature, applyAdam, extractFeatures, gradLayout, normalizeRows, perExampleGradients, type GradExample } from './features.ts';

async function tinyLoraModel(backend: 'ref' | 'ort'): Promise<TransformerModel> {
  const raw = tinyConfig('gpt2');
  const m = TransformerModel.fromWeights(raw, randomWeights(raw, 5), null, { backend, threads: 1 });
  await attachPeft(m, { kind: 'lora', rank: 2, alpha: 4, dropout: 0, targets: ['attn\\.c_attn$', 'attn\\.c_proj$'] }, 1);
  // LoRA B starts at 0, which would make every A-gradient 0: give B values so both factors matter
  const rng = new Rng(9);
  for (const n of m.adapters!.names()) if (n.endsWith('lora_B.weight')) m.tensor(n).forEach((_, i, a) => (a[i] = 0.3 * rng.normal()));
  return m;
}

function examples(count: number, seed: number): GradExample[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const len = 3 + rng.int(12);
    const ids = Array.from({ length: len }, () => 3 + rng.int(50));
    const supervised = new Uint8Array(len);
    // a prompt, then a supervised reply of at least one token
    const start = 1 + rng.int(len - 1);
    supervised.fill(1, start);
    return { ids, supervised };
  });
}

test('batched per-example gradients equal single-example backward passes of the mean token loss', async () => {
  const m = await tinyLoraModel('ref');
  const layout = gradLayout(m, m.trainableNames());
  const exs = examples(4, 1);
  const { grads, losses } = await perExampleGradients(m, layout, exs, 4);
  for (const [b, e] of exs.entries()) {
    // independent path: the model's token-weighted loss graph, one example, weights 1/n on its targets
    const index: number[] = [];
    const label: number[] = [];
    const batch = packBatch([[...e.ids]], { side: 'right', padId: 0, seq: roundUp(e.ids.length, 8) });
    for (let t = 1; t < e.ids.length; t++) {
      if (!e.supervised[t]) continue;
      index.push(t - 1);
      label.push(e.ids[t]!);
    }
    const weight = new Float32Array(index.length).fill(1 / index.length);
    const r = await m.loss({ batch, targets: padTargets(index, label, index.length), objective: { kind: 'token', weight } }, layout.names);
    assert.ok(Math.abs(r.loss - losses[b]!) < 1e-9 * Math.max(1, r.loss), `loss of example ${b}: ${r.loss} vs ${losses[b]}`);
    let maxAbs = 0;
    layout.names.forEach((name, i) => {
      const want = r.grads!.get(name)!;
      for (let k = 0; k < want.length; k++) {
        const got = grads[b * layout.dim + layout.offsets[i]! + k]!;
        maxAbs = Math.max(maxAbs, Math.abs(want[k]!));
        assert.ok(Math.abs(got - want[k]!) < 1e-6 * Math.max(1e-3, Math.abs(want[k]!)), `${name}[${k}] of example ${b}: ${got} vs ${want[k]}`);
      }
    });
    assert.ok(maxAbs > 1e-4, 'the gradients are not trivially zero');
  }
});

test('the Adam feature: m = v = 0, g = 1e-3 gives 1e-4/sqrt(1e-9 + 1e-8) ≈ 0.9535; moments are found by name', () => {
  const out = new Float32Array(1);
  adamFeature(Float32Array.of(1e-3), new Float32Array(1), new Float32Array(1), out);
  const closed = (0.1 * 1e-3) / Math.sqrt(0.001 * 1e-6 + 1e-8);
  assert.ok(Math.abs(closed - 0.9535) < 1e-4);
  assert.ok(Math.abs(out[0]! - closed) < 1e-6, `${out[0]} vs ${closed}`);
  // nonzero moments, by hand: m' = 0.9·0.5 + 0.1·2 = 0.65, v' = 0.999·0.25 + 0.001·4 = 0.25375
  adamFeature(Float32Array.of(2), Float32Array.of(0.5), Float32Array.of(0.25), out);
  assert.ok(Math.abs(out[0]! - 0.65 / Math.sqrt(0.25375 + 1e-8)) < 1e-6);
  // two parameters laid out [a (2 values), b (1 value)]: each block uses its own moments, by name
  const layout = { names: ['a', 'b'], sizes: [2, 1], offsets: [0, 2], dim: 3 };
  const g = Float32Array.of(1, 1, 1, 2, 2, 2);
  const moments = new Map([
    ['b', { expAvg: Float32Array.of(1), expAvgSq: Float32Array.of(1) }],
    ['a', { expAvg: new Float32Array(2), expAvgSq: new Float32Array(2) }],
  ]);
  applyAdam(g, 2, layout, moments);
  const f = (gi: number, mi: number, vi: number): number => (0.9 * mi + 0.1 * gi) / Math.sqrt(0.999 * vi + 0.001 * gi * gi + 1e-8);
  const want = [f(1, 0, 0), f(1, 0, 0), f(1, 1, 1), f(2, 0, 0), f(2, 0, 0), f(2, 1, 1)];
  want.forEach((w, i) => assert.ok(Math.abs(g[i]! - w) < 1e-6 * Math.abs(w), `${i}: ${g[i]} vs ${w}`));
  assert.throws(() => applyAdam(g, 2, layout, new Map([['a', moments.get('a')!]])), /no moments for 'b'/);
});

test('normalization: every row has norm 1, a zero row stays zero', () => {
  const rng = new Rng(3);
  const n = 5;
  const d = 7;
  const x = Float32Array.from({ length: n * d }, () => rng.normal() * 100);
  x.fill(0, 2 * d, 3 * d);
  normalizeRows(x, n, d);
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += x[r * d + k]! ** 2;
    if (r === 2) assert.equal(s, 0);
    else assert.ok(Math.abs(Math.sqrt(s) - 1) < 1e-6, `row ${r}: ${Math.sqrt(s)}`);
  }
});

test('features are byte-identical for gradient batch sizes 1, 3 and 8 and for any shard split (ort)', async () => {
  const m = await tinyLoraModel('ort');
  const layout = gradLayout(m, m.trainableNames());
  const exs = examples(7, 2);
  const moments = new Map(layout.names.map((n, i) => [n, { expAvg: Float32Array.from({ length: layout.sizes[i]! }, (_, k) => 1e-4 * Math.sin(k)), expAvgSq: new Float32Array(layout.sizes[i]!).fill(1e-9) }]));
  const projections = [new RademacherProjection({ seed: 0, inDim: layout.dim, outDim: 64, threads: 1 })];
  const runs: Buffer[] = [];
  for (const batchSize of [1, 3, 8]) {
    const { features } = await extractFeatures(m, layout, exs, { batchSize, kind: 'adam', moments, projections });
    runs.push(Buffer.from(features[0]!.buffer));
  }
  assert.ok(runs[0]!.equals(runs[1]!), 'batch 1 vs 3');
  assert.ok(runs[0]!.equals(runs[2]!), 'batch 1 vs 8');
  // shards: rows [0, 3) and [3, 7) computed apart give the same bytes as all seven together
  const parts = await Promise.all([exs.slice(0, 3), exs.slice(3)].map(async (p) => (await extractFeatures(m, layout, p, { batchSize: 4, kind: 'adam', moments, projections })).features[0]!));
  assert.ok(Buffer.concat(parts.map((p) => Buffer.from(p.buffer))).equals(runs[0]!), 'shards of 3 + 4 rows');
});
