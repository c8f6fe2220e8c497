/**
 * Issue 12 (allocation): first-order steps have onnxruntime write the gradients into buffers lmtune owns
 * (the accumulator's sums) instead of returning fresh arrays. The results must be the same bytes as
 * the unbound path: the gradients of `loss(…, gradInto)` against `loss(…)` on both executors, and a
 * whole AdamW run of the stepper (1 and 2 micro-batches per step) against the pre-binding algorithm
 * written out here from the public pieces (unbound gradients, GradAccumulator.add, the global norm,
 * the optimizer), weights, optimizer state, losses and gradient norms compared exactly.
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTransformer, type TransformerModel } from '../heads/model.ts';
import { loadExamples, resolveTask } from '../tasks/index.ts';
import { GradAccumulator } from '../optim/accumulate.ts';
import { globalGradNorm } from '../optim/clip.ts';
import { makeOptimizer } from '../optim/options.ts';
import { buildLossRequest, encodeExample, lossUnits } from './batches.ts';
import { makeStepper, type BatchRequest } from './stepper.ts';
import { buildTrainConfig } from '../cli/train.ts';

const MODEL = new URL('../../assets/tiny-english-lm', import.meta.url).pathname;
const SST2 = new URL('../../assets/demo/sst2-dev.jsonl', import.meta.url).pathname;

const bytes = (a: Float32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function requests(model: TransformerModel, batch: number, count: number): BatchRequest[] {
  const task = resolveTask('sst2');
  const exs = loadExamples(task, SST2).slice(0, batch * count);
  return Array.from({ length: count }, (_, k) => buildLossRequest(exs.slice(k * batch, (k + 1) * batch).map((e) => encodeExample(task, e, model)), 'classification', model, batch));
}

for (const backend of ['ort', 'ref'] as const) {
  test(`loss(…, gradInto) writes the gradients into the given buffers, the same bytes as unbound (${backend})`, async () => {
    const model = await loadTransformer(MODEL, { threads: 1, backend });
    const names = model.trainableNames();
    const reqs = requests(model, 2, 2);
    // NaN-filled: every element must be overwritten
    const bufs = new Map(names.map((n) => [n, new Float32Array(model.tensor(n).length).fill(Number.NaN)]));
    for (const req of reqs) {
      const free = await model.loss(req, names);
      const bound = await model.loss(req, names, [], bufs);
      assert.equal(bound.loss, free.loss);
      for (const n of names) {
        assert.equal(bound.grads!.get(n), bufs.get(n), `${n}: the returned gradient is the caller's buffer`);
        assert.deepEqual(bytes(bound.grads!.get(n)!), bytes(free.grads!.get(n)!), `${n}: same bytes`);
      }
    }
    // a subset of buffers: the others come back as fresh arrays
    const one = new Map([[names[0]!, new Float32Array(model.tensor(names[0]!).length)]]);
    const r = await model.loss(reqs[0]!, names, [], one);
    assert.equal(r.grads!.get(names[0]!), one.get(names[0]!));
    assert.notEqual(r.grads!.get(names[1]!), undefined);
  });
}

test('AdamW steps with gradients written into the accumulator equal the unbound algorithm byte for byte (1 and 2 micro-batches)', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-bind-'));
  try {
    for (const accum of [1, 2]) {
      const flags = { model: MODEL, task: 'sst2', data: SST2, optimizer: 'adamw', lr: '3e-3', weightDecay: '0.1', schedule: 'constant', batchSize: '3', gradAccum: String(accum), seed: '0' };
      const cfg = buildTrainConfig(flags);
      const steps = 3;
      const lrs = [3e-3, 2e-3, 1e-3];
      // the stepper under test
      const model = await loadTransformer(MODEL, { threads: 1 });
      const stepper = makeStepper(cfg, model, tmp);
      const reqs = requests(model, 3, steps * accum);
      let next = 0;
      const got: { loss: number; norm: number }[] = [];
      for (let s = 0; s < steps; s++) {
        const r = await stepper.step(() => reqs[next++]!, s, lrs[s]!);
        got.push({ loss: r.loss, norm: r.extra.grad_norm! });
      }
      // the algorithm before output binding, from the public pieces
      const ref = await loadTransformer(MODEL, { threads: 1 });
      const params = ref.trainableParams();
      const names = params.map((p) => p.name);
      const opt = makeOptimizer(cfg.optimizer);
      const acc = new GradAccumulator(params);
      const want: { loss: number; norm: number }[] = [];
      next = 0;
      for (let s = 0; s < steps; s++) {
        let lossSum = 0;
        let unitSum = 0;
        for (let m = 0; m < accum; m++) {
          const req = reqs[next++]!;
          const r = await ref.loss(req, names);
          const w = accum === 1 ? 1 : Math.max(lossUnits(req), 1);
          lossSum += r.loss * w;
          unitSum += w;
          acc.add(r.grads!, w);
        }
        const grads = acc.take();
        const norm = globalGradNorm(grads);
        opt.step(params, grads, lrs[s]!);
        want.push({ loss: lossSum / unitSum, norm });
      }
      assert.deepEqual(got, want, `losses and gradient norms, --grad-accum ${accum}`);
      for (const n of names) assert.deepEqual(bytes(model.tensor(n)), bytes(ref.tensor(n)), `weight ${n}, --grad-accum ${accum}`);
      const st = stepper.stateTensors();
      const so = opt.stateTensors();
      assert.deepEqual([...st.keys()], [...so.keys()]);
      for (const [k, v] of so) assert.deepEqual(bytes(st.get(k)!), bytes(v), `state ${k}, --grad-accum ${accum}`);
      assert.deepEqual(stepper.stateScalars(), opt.stateScalars());
      // the run moved the weights: the comparison is not vacuous
      const fresh = await loadTransformer(MODEL, { threads: 1 });
      assert.ok(names.some((n) => fresh.tensor(n).some((x, i) => x !== model.tensor(n)[i])));
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
