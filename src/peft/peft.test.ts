/**
 * LoRA: starts at the base model, merging reproduces the adapted logits; prefix: slots initialized from
 * the frozen model's own keys/values (checked against a hand computation for layer 0) and gradients of
 * the slots match finite differences; training with either touches only the adapter tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TransformerModel } from '../heads/model.ts';
import { randomWeights, tinyConfig } from '../models/testing.ts';
import { attachPeft, mergeLora } from './index.ts';
import type { LoraSpec } from './spec.ts';
import { Rng } from '../util/rng.ts';
import { packBatch } from '../models/batch.ts';
import { padTargets } from '../heads/objective.ts';
import { train } from '../train/loop.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { readSafetensors } from '../node/safetensors-file.ts';

const seqs = [
  [5, 9, 13, 2, 7],
  [11, 3, 8, 40],
];

function maxAbs(a: Float64Array, b: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

for (const family of ['gpt2', 'opt', 'llama'] as const) {
  test(`LoRA (${family}): zero-init B keeps the base logits; merged weights reproduce the adapted logits`, async () => {
    const raw = tinyConfig(family);
    const m = TransformerModel.fromWeights(raw, randomWeights(raw, 1), null, { backend: 'ref' });
    const base = await m.forwardAll(seqs);
    const spec: LoraSpec = { kind: 'lora', rank: 2, alpha: 4, dropout: 0, targets: family === 'gpt2' ? ['attn\\.c_attn$', 'mlp\\.c_fc$'] : ['(q_proj|v_proj)$'] };
    await attachPeft(m, spec, 7);
    assert.ok(m.trainableNames().length > 0 && m.trainableNames().every((n) => /lora_[AB]\.weight$/.test(n)));
    assert.ok(maxAbs((await m.forwardAll(seqs)).logits, base.logits) === 0);
    const rng = new Rng(3);
    for (const n of m.trainableNames()) if (n.endsWith('lora_B.weight')) m.tensor(n).set(Float32Array.from(m.tensor(n), () => rng.normal() * 0.3));
    const adapted = await m.forwardAll(seqs);
    assert.ok(maxAbs(adapted.logits, base.logits) > 1e-3, 'the adapters change the function');
    const merged = TransformerModel.fromWeights(raw, mergeLora(m.cfg, m.weights, m.adapters!, spec), null, { backend: 'ref' });
    const e = maxAbs((await merged.forwardAll(seqs)).logits, adapted.logits);
    assert.ok(e < 1e-5, `merged vs adapted logits differ by ${e}`); // float32 rounding of W + BA
  });
}

test('prefix: real-activation init equals the layer-0 keys/values computed by hand (gpt2); slot gradients match finite differences', async () => {
  const raw = tinyConfig('gpt2');
  const m = TransformerModel.fromWeights(raw, randomWeights(raw, 2), null, { backend: 'ref' });
  await attachPeft(m, { kind: 'prefix', slots: 3, initByRealActivations: true }, 11);
  const ids = Array.from({ length: 3 }, ((r) => () => r.int(61))(new Rng(11).fork('prefix-init')));
  // layer-0 keys by hand: ln_1(wte[id] + wpe[pos]) · W_k + b_k
  const E = 16;
  const w = (n: string) => m.weights.get(n).data;
  const keys = m.adapters!.get('transformer.h.0.attn.prefix_keys').data;
  const vals = m.adapters!.get('transformer.h.0.attn.prefix_values').data;
  ids.forEach((id, s) => {
    const x = Array.from({ length: E }, (_, j) => w('transformer.wte.weight')[id * E + j]! + w('transformer.wpe.weight')[s * E + j]!);
    const mu = x.reduce((a, b) => a + b, 0) / E;
    const v = x.reduce((a, b) => a + (b - mu) ** 2, 0) / E;
    const h = x.map((xi, j) => ((xi - mu) / Math.sqrt(v + 1e-5)) * w('transformer.h.0.ln_1.weight')[j]! + w('transformer.h.0.ln_1.bias')[j]!);
    for (const [which, off, dst] of [['k', E, keys], ['v', 2 * E, vals]] as const) {
      for (let o = 0; o < E; o++) {
        let acc = w('transformer.h.0.attn.c_attn.bias')[off + o]!;
        for (let i = 0; i < E; i++) acc += h[i]! * w('transformer.h.0.attn.c_attn.weight')[i * 3 * E + off + o]!;
        assert.ok(Math.abs(dst[s * E + o]! - acc) < 1e-5, `${which} slot ${s} dim ${o}`);
      }
    }
  });
  // finite differences on one prefix value
  const batch = packBatch([seqs[0]!], { side: 'right', padId: 0, batch: 1, seq: 8 });
  const targets = padTargets([0, 1, 2, 3], [9, 13, 2, 7], 4);
  const req = { batch, targets, objective: { kind: 'token' as const, weight: new Float32Array([0.25, 0.25, 0.25, 0.25]) } };
  const name = 'transformer.h.1.attn.prefix_values';
  const r = await m.loss(req, [name]);
  const g = r.grads!.get(name)!;
  const p = m.tensor(name);
  for (const i of [0, 5, 17]) {
    const x0 = p[i]!;
    const h = 1e-2;
    p[i] = x0 + h;
    const lp = (await m.loss(req)).loss;
    p[i] = x0 - h;
    const lm = (await m.loss(req)).loss;
    p[i] = x0;
    // parameters are float32, so the perturbation is exact only to f32 rounding: compare loosely
    const fd = (lp - lm) / (2 * (Math.fround(x0 + h) - Math.fround(x0 - h)) / 2);
    assert.ok(Math.abs(fd - g[i]!) < 1e-4 + 1e-3 * Math.abs(fd), `d loss / d ${name}[${i}]: fd ${fd} vs grad ${g[i]}`);
  }
});

test('training with LoRA or prefix changes only the adapter tensors', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-peft-'));
  try {
    const data = join(tmp, 'sst2.jsonl');
    writeFileSync(data, readFileSync('../shared/data/sst2/glue_train.jsonl', 'utf8').split('\n').slice(0, 40).join('\n') + '\n');
    const model = '../shared/data/models/tiny-random-gpt2';
    const baseBytes = readFileSync(join(model, 'model.safetensors'));
    const before = readSafetensors(join(model, 'model.safetensors')).tensors;
    for (const peft of ['lora', 'prefix']) {
      const out = join(tmp, peft);
      const cfg = buildTrainConfig({ model, task: 'sst2', data, optimizer: 'adam', lr: '1e-2', peft, maxSteps: '3', batchSize: '4', numDev: '8', evalEvery: '0', threads: '1' });
      await train(cfg, out);
      const after = readSafetensors(join(out, 'final', 'model.safetensors')).tensors;
      for (const [n, t] of before) assert.deepEqual(after.get(n)?.data, t.data, `${peft}: base tensor ${n} changed`);
      const adapters = readSafetensors(join(out, 'final', 'adapter_model.safetensors')).tensors;
      assert.ok(adapters.size > 0);
      assert.ok([...adapters.keys()].every((k) => k.startsWith('base_model.model.') && (peft === 'lora' ? /lora_/.test(k) : /prefix_/.test(k))));
    }
    assert.ok(readFileSync(join(model, 'model.safetensors')).equals(baseBytes));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('gemma: default LoRA targets are each layer\'s q_proj and v_proj (24 and 6 wide: head_dim 6, one kv head); merge reproduces; prefix slots are Hkv·D wide', async () => {
  const raw = tinyConfig('gemma', { num_key_value_heads: 1, head_dim: 6 });
  const m = TransformerModel.fromWeights(raw, randomWeights(raw, 2), null, { backend: 'ref' });
  const base = await m.forwardAll(seqs);
  const spec: LoraSpec = { kind: 'lora', rank: 2, alpha: 4, dropout: 0, targets: [] };
  await attachPeft(m, spec, 7);
  const shapes = Object.fromEntries(m.trainableNames().map((n) => [n, m.adapters!.get(n).shape]));
  const want: Record<string, number[]> = {};
  for (const l of [0, 1]) {
    for (const [proj, out] of [['q_proj', 24], ['v_proj', 6]] as const) {
      want[`model.layers.${l}.self_attn.${proj}.lora_A.weight`] = [2, 16];
      want[`model.layers.${l}.self_attn.${proj}.lora_B.weight`] = [out, 2];
    }
  }
  assert.deepEqual(shapes, want);
  assert.ok(maxAbs((await m.forwardAll(seqs)).logits, base.logits) === 0);
  const rng = new Rng(3);
  for (const n of m.trainableNames()) if (n.endsWith('lora_B.weight')) m.tensor(n).set(Float32Array.from(m.tensor(n), () => rng.normal() * 0.3));
  const adapted = await m.forwardAll(seqs);
  assert.ok(maxAbs(adapted.logits, base.logits) > 1e-3, 'the adapters change the function');
  const merged = TransformerModel.fromWeights(raw, mergeLora(m.cfg, m.weights, m.adapters!, { ...spec, targets: ['self_attn\\.(q_proj|v_proj)$'] }), null, { backend: 'ref' });
  const e = maxAbs((await merged.forwardAll(seqs)).logits, adapted.logits);
  assert.ok(e < 1e-5, `merged vs adapted logits differ by ${e}`);

  const p = TransformerModel.fromWeights(raw, randomWeights(raw, 2), null, { backend: 'ref' });
  await attachPeft(p, { kind: 'prefix', slots: 3, initByRealActivations: true }, 5);
  assert.deepEqual(p.adapters!.get('model.layers.1.self_attn.prefix_keys').shape, [3, 6]);
  assert.equal((await p.forwardAll(seqs)).logits.length, base.logits.length);
});
