/**
 * Numerics guards of LESS features (issue 19): a NaN/Inf gradient, Adam moment or projected feature is
 * an error naming the row (file:line in a selection run) and the LoRA matrix, never a NaN feature that
 * scores arbitrarily. NaN is injected into a tiny GPT-2's weights and into a checkpoint's moments.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransformerModel } from '../heads/model.ts';
import { randomWeights, tinyConfig } from '../models/testing.ts';
import { attachPeft } from '../peft/index.ts';
import { Rng } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';
import { RademacherProjection } from '../projection/rademacher.ts';
import { extractFeatures, gradLayout, type GradExample } from './features.ts';

async function tinyLora(): Promise<TransformerModel> {
  const raw = tinyConfig('gpt2');
  const m = TransformerModel.fromWeights(raw, randomWeights(raw, 5), null, { backend: 'ref' });
  await attachPeft(m, { kind: 'lora', rank: 2, alpha: 4, dropout: 0, targets: ['attn\\.c_attn$'] }, 1);
  const rng = new Rng(9);
  for (const n of m.adapters!.names()) if (n.endsWith('lora_B.weight')) m.tensor(n).forEach((_, i, a) => (a[i] = 0.3 * rng.normal()));
  return m;
}

function examples(n: number): GradExample[] {
  return Array.from({ length: n }, (_, k) => {
    const ids = [3 + k, 9, 14, 20 + k, 7];
    return { ids, supervised: Uint8Array.from([0, 0, 1, 1, 1]) };
  });
}

const numeric = (re: RegExp) => (e: unknown) => e instanceof LmtuneError && e.code === 'NUMERIC' && re.test(e.message);

test('a NaN base weight: the first row is refused, naming it (rowName) and the weight', async () => {
  const m = await tinyLora();
  const layout = gradLayout(m, m.trainableNames());
  const projections = [new RademacherProjection({ seed: 0, inDim: layout.dim, outDim: 16, threads: 1 })];
  // sanity: finite weights give finite unit-norm features
  const ok = await extractFeatures(m, layout, examples(3), { batchSize: 2, kind: 'sgd', projections });
  assert.ok(ok.features[0]!.every(Number.isFinite));
  const name = m.weights.names().find((n) => n.endsWith('ln_f.weight'))!;
  m.tensor(name)[1] = Number.NaN;
  await assert.rejects(
    extractFeatures(m, layout, examples(3), { batchSize: 2, kind: 'sgd', projections, rowName: (k) => `pool.jsonl:${k + 11}` }),
    numeric(new RegExp(`^LESS features: the loss of pool\\.jsonl:11 is NaN; weight '${name.replace(/\./g, '\\.')}' holds NaN at index 1$`)),
  );
});

test('NaN Adam moments of the warmup checkpoint: the preconditioned gradient is refused, naming the row and the LoRA matrix', async () => {
  const m = await tinyLora();
  const layout = gradLayout(m, m.trainableNames());
  const projections = [new RademacherProjection({ seed: 0, inDim: layout.dim, outDim: 16, threads: 1 })];
  const moments = new Map(layout.names.map((n, i) => [n, { expAvg: new Float32Array(layout.sizes[i]!), expAvgSq: new Float32Array(layout.sizes[i]!).fill(1e-6) }]));
  const bad = layout.names[1]!;
  moments.get(bad)!.expAvgSq[3] = Number.NaN;
  await assert.rejects(
    extractFeatures(m, layout, examples(2), { batchSize: 2, kind: 'adam', moments, projections }),
    numeric(new RegExp(`the Adam-preconditioned gradient \\(the checkpoint's moments\\) of example 0 holds NaN in '${bad.replace(/\./g, '\\.')}' \\(value 3\\)`)),
  );
});
