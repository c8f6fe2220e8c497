/**
 * Every architecture: a tiny random model saved as an HF folder and loaded back runs, and its logits
 * agree between the ort (float32 ONNX) and ref (float64 interpreter) executors; scoring is consistent
 * with full logits; the KV-cached generation matches argmax over full forward passes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TransformerModel } from '../heads/model.ts';
import { randomWeights, tinyConfig } from './testing.ts';
import type { ModelFamily } from './config.ts';

const FAMILIES: ModelFamily[] = ['gpt2', 'opt', 'llama', 'gpt_neox', 'roberta', 'gemma'];
const seqs = [
  [5, 9, 13, 2, 7, 30],
  [11, 3, 8],
];

function maxRel(a: Float64Array, b: Float64Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / den;
}

for (const family of FAMILIES) {
  test(`${family}: save → load round trip, ort logits agree with ref`, async () => {
    const raw = tinyConfig(family);
    const weights = randomWeights(raw, 3);
    const dir = mkdtempSync(join(tmpdir(), `lmtune-${family}-`));
    try {
      TransformerModel.fromWeights(raw, weights, null).save(dir);
      const ort = await TransformerModel.load(dir, { tokenizer: false, backend: 'ort', threads: 1 });
      const ref = await TransformerModel.load(dir, { tokenizer: false, backend: 'ref' });
      for (const [name, t] of weights.entries()) assert.deepEqual(ort.weights.get(name).data, t.data, `${name} round-trips`);
      const a = await ort.forwardAll(seqs);
      const b = await ref.forwardAll(seqs);
      assert.ok(a.logits.length > 0 && a.logits.length === b.logits.length);
      const e = maxRel(a.logits, b.logits);
      assert.ok(e < 1e-4, `${family}: ort vs ref logits rel err ${e}`);
      // padding must not change real rows: the second sequence alone gives the same logits
      const alone = await ref.forwardAll([seqs[1]!]);
      const V = raw.vocab_size as number;
      for (let t = 0; t < seqs[1]!.length; t++) {
        for (let v = 0; v < V; v++) {
          const x = b.logits[(1 * b.seq + t) * V + v]!;
          const y = alone.logits[t * V + v]!;
          assert.ok(Math.abs(x - y) < 1e-9 * Math.max(1, Math.abs(y)), `${family}: padded row differs at t=${t}`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('continuation log-probs equal log-softmax of full logits (gpt2, llama)', async () => {
  for (const family of ['gpt2', 'llama'] as const) {
    const raw = tinyConfig(family);
    const m = TransformerModel.fromWeights(raw, randomWeights(raw, 5), null, { backend: 'ref' });
    const prompt = [4, 8, 15];
    const cont = [16, 23, 42];
    const [lp] = await m.continuationLogprobs([{ prompt, continuation: cont }]);
    const full = await m.forwardAll([[...prompt, ...cont]]);
    const V = raw.vocab_size as number;
    for (let j = 0; j < cont.length; j++) {
      const t = prompt.length - 1 + j;
      const row = full.logits.subarray(t * V, (t + 1) * V);
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0));
      assert.ok(Math.abs(lp![j]! - (row[cont[j]!]! - lse)) < 1e-9, `${family} token ${j}`);
    }
  }
});

test('left padding: each row of a left-padded batch equals the row run alone (gpt2, opt, llama, neox)', async () => {
  const { packBatch } = await import('./batch.ts');
  const { padTargets } = await import('../heads/objective.ts');
  for (const family of ['gpt2', 'opt', 'llama', 'gpt_neox'] as const) {
    const raw = tinyConfig(family);
    const m = TransformerModel.fromWeights(raw, randomWeights(raw, 9), null, { backend: 'ref' });
    const rows = [[7, 3, 9, 12, 5], [4, 8]];
    // next-token NLL of the last token of each row, left padded in one batch vs alone
    const batch = packBatch(rows, { side: 'left', padId: 0, seq: 8 });
    const idx = rows.map((r, b) => b * 8 + 6); // position T-2 predicts position T-1 (the last real token)
    const lab = rows.map((r) => r[r.length - 1]!);
    const together = (await m.loss({ batch, targets: padTargets(idx, lab, 2), objective: { kind: 'token', weight: new Float32Array(2) } })).outputs.nll!;
    for (let b = 0; b < rows.length; b++) {
      const r = rows[b]!;
      const alone = packBatch([r], { side: 'right', padId: 0, seq: 8 });
      const nll = (await m.loss({ batch: alone, targets: padTargets([r.length - 2], [lab[b]!], 1), objective: { kind: 'token', weight: new Float32Array(1) } })).outputs.nll!;
      assert.ok(Math.abs(together[b]! - nll[0]!) < 1e-9, `${family} row ${b}: ${together[b]} vs ${nll[0]}`);
    }
  }
});

test('gemma: `lmtune info` facts of a saved folder (describeCheckpoint): counts, tied head, head_dim ≠ hidden/heads', async () => {
  const { describeCheckpoint } = await import('./checkpoint.ts');
  const raw = tinyConfig('gemma', { num_key_value_heads: 1, head_dim: 6 });
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-gemma-info-'));
  try {
    TransformerModel.fromWeights(raw, randomWeights(raw, 4), null).save(dir);
    const info = await describeCheckpoint(dir);
    assert.equal(info.family, 'gemma');
    assert.equal(info.tensorCheck, 'ok');
    // by hand: embedding 61·16; per layer 2 norms (16 each), q 24·16, k and v 6·16, o 16·24, MLP 3·24·16; final norm
    const perLayer = 2 * 16 + 24 * 16 + 2 * 6 * 16 + 16 * 24 + 3 * 24 * 16;
    const want = 61 * 16 + 2 * perLayer + 16;
    assert.equal(info.expectedParameters, want);
    assert.equal(info.parameters, want);
    assert.ok(info.notes.some((n) => n.includes('tied')), info.notes.join('; '));
    assert.equal(info.config.headDim, 6);
    assert.equal(info.config.numKvHeads, 1);
    assert.equal(info.config.activation, 'gelu_pytorch_tanh');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sliding window (Mistral, window 3): padded rows equal the rows alone, left and right, and ort agrees with ref', async () => {
  const { packBatch } = await import('./batch.ts');
  const { padTargets } = await import('../heads/objective.ts');
  const raw = tinyConfig('llama', { model_type: 'mistral', architectures: ['MistralForCausalLM'], sliding_window: 3 });
  const weights = randomWeights(raw, 13);
  const ref = TransformerModel.fromWeights(raw, weights, null, { backend: 'ref' });
  const ort = TransformerModel.fromWeights(raw, weights, null, { backend: 'ort', threads: 1 });
  const rows = [[7, 3, 9, 12, 5, 40, 22], [4, 8, 19, 33, 6]];
  const full = await ref.forwardAll(rows);
  const V = raw.vocab_size as number;
  // real positions only: a padding query past the window sees no key, and its (unused) output is a uniform
  // average in float32 but not in float64
  const real = (l: Float64Array): Float64Array => Float64Array.from(rows.flatMap((r, b) => [...l.subarray(b * full.seq * V, (b * full.seq + r.length) * V)]));
  const e = maxRel(real((await ort.forwardAll(rows)).logits), real(full.logits));
  assert.ok(e < 1e-4, `ort vs ref rel err ${e}`);
  const idx = rows.map((r, b) => b * 8 + 6);
  const lab = rows.map((r) => r[r.length - 1]!);
  const left = (await ref.loss({ batch: packBatch(rows, { side: 'left', padId: 0, seq: 8 }), targets: padTargets(idx, lab, 2), objective: { kind: 'token', weight: new Float32Array(2) } })).outputs.nll!;
  for (let b = 0; b < rows.length; b++) {
    const r = rows[b]!;
    const alone = await ref.forwardAll([r]);
    for (let t = 0; t < r.length; t++) {
      for (let v = 0; v < V; v++) {
        const x = full.logits[(b * full.seq + t) * V + v]!;
        const y = alone.logits[t * V + v]!;
        assert.ok(Math.abs(x - y) < 1e-9 * Math.max(1, Math.abs(y)), `row ${b} right-padded differs at t=${t}`);
      }
    }
    // left padding: −log softmax of the second-to-last position's logits at the last token
    const row = alone.logits.subarray((r.length - 2) * V, (r.length - 1) * V);
    const mx = Math.max(...row);
    const nll = mx + Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0)) - row[lab[b]!]!;
    assert.ok(Math.abs(left[b]! - nll) < 1e-9, `row ${b} left-padded: ${left[b]} vs ${nll}`);
  }
});
