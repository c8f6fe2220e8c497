/**
 * Linearization diagnostics (spec §6.9 on a transformer) with a "fine-tuned" model θ₀ + t·D on a tiny
 * random GPT-2 under the float64 executor: the linearized outputs equal f₀ plus a central finite-difference
 * directional derivative; the linearization error relative to the change is O(t) and the kernel change is
 * O(t); at t = 0 both vanish; a LoRA model is diagnosed through its merged weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { TransformerModel } from '../heads/model.ts';
import { randomWeights, tinyConfig } from '../models/testing.ts';
import { attachPeft } from '../peft/index.ts';
import { diagnose, outputsOf } from './diagnose.ts';
import type { KernelEncoding } from './model-source.ts';

const raw = tinyConfig('gpt2', { n_embd: 8, n_head: 2, vocab_size: 23 });
const rng = new Rng(9);
const mk = (len: number, label: number) => {
  const ids = Array.from({ length: len }, () => 3 + rng.int(18));
  return { ids, pos: len - 1, label };
};
const enc: KernelEncoding = { labelIds: [5, 9], labelWords: [' a', ' b'], template: 't', sets: { train: [mk(4, 0), mk(5, 1), mk(3, 1)], eval: [mk(5, 0), mk(4, 1), mk(6, 0), mk(3, 1)] } };

function models(t: number): { base: TransformerModel; tuned: TransformerModel; dir: Map<string, Float32Array> } {
  const w = randomWeights(raw, 4);
  const base = TransformerModel.fromWeights(raw, w, null, { backend: 'ref' });
  const tw = w.clone();
  const r = new Rng(2);
  const dir = new Map<string, Float32Array>();
  for (const n of tw.names()) {
    const d = Float32Array.from(tw.get(n).data, () => r.normal() * 0.1);
    dir.set(n, d);
    const x = tw.get(n).data;
    for (let k = 0; k < x.length; k++) x[k] = x[k]! + t * d[k]!;
  }
  return { base, tuned: TransformerModel.fromWeights(raw, tw, null, { backend: 'ref' }), dir };
}

test('diagnose: f_lin = f₀ + directional derivative; linearization error and kernel change are O(‖Δθ‖)', async () => {
  const params = (m: TransformerModel) => m.allParamNames();
  const res: { lin: number; k: number }[] = [];
  for (const t of [0.02, 0.01]) {
    const { base, tuned, dir } = models(t);
    const d = await diagnose(base, tuned, enc, { params: params(base), blockElements: 500, batch: 2 });
    res.push({ lin: d.linearizationError, k: d.kernelChange });
    if (t === 0.01) {
      // central difference of f along Δθ = t·D on the base model (weights are float32: use the realized step)
      const h = 1e-3;
      const shift = (s: number) => {
        for (const n of base.allParamNames()) {
          const x = base.tensor(n);
          const d0 = dir.get(n)!;
          for (let k = 0; k < x.length; k++) x[k] = x[k]! + s * d0[k]!;
        }
      };
      const orig = new Map(base.allParamNames().map((n) => [n, Float32Array.from(base.tensor(n))]));
      shift(h);
      const up = await outputsOf(base, enc, 'eval');
      for (const n of base.allParamNames()) base.tensor(n).set(orig.get(n)!);
      shift(-h);
      const dn = await outputsOf(base, enc, 'eval');
      for (const n of base.allParamNames()) base.tensor(n).set(orig.get(n)!);
      for (let i = 0; i < d.f0.length; i++) {
        const fd = (t * (up[i]! - dn[i]!)) / (2 * h);
        const jvp = d.fLinearized[i]! - d.f0[i]!;
        assert.ok(Math.abs(fd - jvp) < 2e-3 * (1 + Math.abs(fd)), `output ${i}: JVP ${jvp} vs finite difference ${fd}`);
      }
      // f_FT is the tuned model's own output
      const own = await outputsOf(tuned, enc, 'eval');
      own.forEach((v, i) => assert.ok(Math.abs(v - d.fFinetuned[i]!) < 1e-9));
    }
  }
  assert.ok(Math.abs(res[0]!.lin / res[1]!.lin - 2) < 0.3, `linearization error ratio ${res[0]!.lin / res[1]!.lin}`);
  assert.ok(Math.abs(res[0]!.k / res[1]!.k - 2) < 0.3, `kernel change ratio ${res[0]!.k / res[1]!.k}`);
  const { base, tuned } = models(0);
  const z = await diagnose(base, tuned, enc, { params: base.allParamNames(), batch: 2 });
  assert.equal(z.kernelChange, 0);
  assert.deepEqual(z.fLinearized, z.f0);
  assert.equal(z.linearizedShare, null);
});

test('diagnose a LoRA model: θ_FT is the merged weights, f_FT the adapter model’s own outputs', async () => {
  const { base } = models(0);
  const tuned = TransformerModel.fromWeights(raw, randomWeights(raw, 4), null, { backend: 'ref' });
  await attachPeft(tuned, { kind: 'lora', rank: 2, alpha: 4, dropout: 0, targets: [] }, 1);
  const r = new Rng(3);
  for (const n of tuned.adapters!.names()) {
    const x = tuned.adapters!.get(n).data;
    for (let k = 0; k < x.length; k++) x[k] = 0.3 * r.normal();
  }
  const d = await diagnose(base, tuned, enc, { params: base.allParamNames(), batch: 2 });
  const own = await outputsOf(tuned, enc, 'eval');
  own.forEach((v, i) => assert.ok(Math.abs(v - d.fFinetuned[i]!) < 1e-5 * (1 + Math.abs(v)), `output ${i}: merged ${d.fFinetuned[i]} vs adapters ${v}`));
  assert.ok(d.kernelChange > 0);
});
