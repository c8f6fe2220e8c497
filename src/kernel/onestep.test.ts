/**
 * The eNTK claim on a real checkpoint (the embedded GPT-2-style model, every parameter, SST-2 prompts):
 * after one SGD step of size η on the training set's mean cross-entropy over the label words, the change of
 * every eval logit equals the kernel's prediction −η·K(eval, train)·∂L/∂f to first order, so the relative
 * error falls linearly with η. The step's gradient comes from the training stack's loss graph
 * (model.loss), not from the kernel's Jacobians, and the logits after the step from a plain forward pass.
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadTransformer } from '../heads/model.ts';
import { loadExamples, loadTaskFile } from '../tasks/index.ts';
import { buildLossRequest, encodeExample } from '../train/batches.ts';
import { computeKernelSets } from './compute.ts';
import { encodeForKernel } from './model-source.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

test('one SGD step on the embedded model: Δf(eval) = −η·K·∂L/∂f to first order, error linear in η', async () => {
  const model = await loadTransformer(`${ROOT}assets/tiny-english-lm`, { threads: 1 });
  // single-token label words (the builtin's " terrible" is two tokens in this vocabulary)
  const task = loadTaskFile(`${ROOT}src/kernel/tasks/sst2-single-token.yaml`);
  const train = loadExamples(task, `${ROOT}assets/demo/sst2-train.jsonl`).slice(0, 6);
  const evalSet = loadExamples(task, `${ROOT}assets/demo/sst2-dev.jsonl`).slice(0, 5);
  const { kernels, meta } = await computeKernelSets({ model, task, sets: { train: { examples: train, file: null }, eval: { examples: evalSet, file: null } }, formula: 'sgd', batch: 4, threads: 1 });
  assert.equal(meta.params.count, 1325824, 'every parameter, the tied head counted once');
  const C = 2;
  const N = train.length;
  const M = evalSet.length;
  const f0 = kernels.f0.train!;
  // χ = ∂L/∂f for L = mean cross-entropy over the label-word logits
  const chi = new Float64Array(N * C);
  let ce = 0;
  train.forEach((ex, i) => {
    const z = [f0[i * C]!, f0[i * C + 1]!];
    const mx = Math.max(...z);
    const lse = mx + Math.log(z.reduce((s, v) => s + Math.exp(v - mx), 0));
    ce += (lse - z[ex.label]!) / N;
    for (let c = 0; c < C; c++) chi[i * C + c] = (Math.exp(z[c]! - lse) - (c === ex.label ? 1 : 0)) / N;
  });
  // the training stack's loss and gradient
  const names = model.allParamNames();
  const req = buildLossRequest(train.map((ex) => encodeExample(task, ex, model)), 'classification', model, N);
  const { loss, grads } = await model.loss(req, names);
  assert.ok(Math.abs(loss - ce) < 1e-4, `training loss ${loss} vs cross-entropy of the kernel's f₀ ${ce}`);

  const Kte = kernels.kernels.train_eval!;
  const predicted = new Float64Array(M * C);
  for (let j = 0; j < M * C; j++) {
    let s = 0;
    for (let r = 0; r < N * C; r++) s += Kte[r * M * C + j]! * chi[r]!;
    predicted[j] = -s; // times η
  }
  const enc = encodeForKernel(task, model, { eval: evalSet });
  const evalLogits = async (): Promise<Float64Array> => {
    const xs = enc.sets.eval!;
    const { logits, seq } = await model.forwardAll(xs.map((x) => x.ids));
    const V = logits.length / (xs.length * seq);
    const out = new Float64Array(M * C);
    xs.forEach((x, e) => enc.labelIds.forEach((id, c) => (out[e * C + c] = logits[(e * seq + x.pos) * V + id]!)));
    return out;
  };
  const before = await evalLogits();
  for (let j = 0; j < M * C; j++) assert.ok(Math.abs(before[j]! - kernels.f0.eval![j]!) < 1e-4 * (1 + Math.abs(before[j]!)), 'f₀ equals the forward pass logits');
  const originals = new Map(names.map((n) => [n, Float32Array.from(model.tensor(n))]));
  const errors: number[] = [];
  const etas = [0.004, 0.002, 0.001];
  for (const eta of etas) {
    for (const n of names) {
      const w = model.tensor(n);
      const o = originals.get(n)!;
      const g = grads!.get(n)!;
      for (let k = 0; k < w.length; k++) w[k] = o[k]! - eta * g[k]!;
    }
    const after = await evalLogits();
    let num = 0;
    let den = 0;
    for (let j = 0; j < M * C; j++) {
      num += (after[j]! - before[j]! - eta * predicted[j]!) ** 2;
      den += (eta * predicted[j]!) ** 2;
    }
    errors.push(Math.sqrt(num / den));
  }
  for (const n of names) model.tensor(n).set(originals.get(n)!);
  // first order: the relative error is O(η); halving η halves it
  assert.ok(errors[2]! < 0.01, `relative error at η = ${etas[2]}: ${errors[2]}`);
  for (let i = 1; i < errors.length; i++) {
    const ratio = errors[i - 1]! / errors[i]!;
    assert.ok(ratio > 1.6 && ratio < 2.5, `error ratio for η ${etas[i - 1]} → ${etas[i]}: ${ratio} (errors ${errors.join(', ')})`);
  }
});
