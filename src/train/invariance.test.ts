/**
 * Issue 19: losses and metrics are the same for any batch size and example order. The dev loss once
 * divided a partial last batch by the full batch size (1.17264 at batch 2 or 6, 1.16815 at 8, 1.16289 at
 * 32 on the demo's 474 dev sentences). Every number here is checked against a per-example loop over
 * the scoring API (`continuationLogprobs`, one request at a time, float64 on the host), which shares no
 * batching, padding or loss graph with the code under test.
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTransformer, asLanguageModel, type TransformerModel } from '../heads/model.ts';
import { evaluate, loadExamples, resolveTask, type Example, type Task } from '../tasks/index.ts';
import { Rng } from '../util/rng.ts';
import { evaluateDev } from './loop.ts';
import { buildLossRequest, encodeExample, type Encoded, type ObjectiveMode } from './batches.ts';
import { makeStepper } from './stepper.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

const MODEL = new URL('../../assets/tiny-english-lm', import.meta.url).pathname;
const SST2 = new URL('../../assets/demo/sst2-dev.jsonl', import.meta.url).pathname;
const COPA = join(SHARED_DATA, 'superglue/copa/val.jsonl');

const BATCHES = [1, 3, 8, 32];

function logSumExp(xs: readonly number[]): number {
  const m = Math.max(...xs);
  return m + Math.log(xs.reduce((s, x) => s + Math.exp(x - m), 0));
}

/** per-example reference: each candidate scored alone; loss and predictions in float64 */
async function reference(model: TransformerModel, task: Task, examples: readonly Example[], mode: ObjectiveMode): Promise<{ loss: number; predictions: number[] }> {
  let total = 0;
  let units = 0;
  const predictions: number[] = [];
  for (const ex of examples) {
    const enc = encodeExample(task, ex, model);
    if (enc.kind !== 'choice') throw new Error('choice tasks only');
    const scores: number[] = [];
    const tokenLps: number[][] = [];
    for (const c of enc.candidates) {
      const [lp] = await model.continuationLogprobs([c]);
      tokenLps.push(Array.from(lp!));
      scores.push(lp!.reduce((s, x) => s + x, 0) / lp!.length);
    }
    let best = 0;
    for (let c = 1; c < scores.length; c++) if (scores[c]! > scores[best]!) best = c;
    predictions.push(best);
    if (mode === 'classification') {
      total += logSumExp(scores) - scores[ex.label]!;
      units += 1;
    } else {
      const gold = tokenLps[ex.label]!;
      total -= gold.reduce((s, x) => s + x, 0);
      units += gold.length;
    }
  }
  return { loss: total / units, predictions };
}

function close(a: number, b: number, what: string, tol = 2e-5): void {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs reference ${b}`);
}

function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const perm = new Rng(seed).permutation(xs.length);
  return perm.map((i) => xs[i]!);
}

async function checkInvariance(task: Task, dev: Example[], mode: ObjectiveMode): Promise<void> {
  const model = await loadTransformer(MODEL, { threads: 1 });
  const ref = await reference(model, task, dev, mode);
  const refAcc = ref.predictions.filter((p, i) => dev[i]!.correct.includes(p)).length / dev.length;
  const predById = new Map(dev.map((e, i) => [e.id, ref.predictions[i]!]));
  for (const order of ['file', 'shuffled'] as const) {
    const exs = order === 'file' ? dev : shuffled(dev, 7);
    for (const b of BATCHES) {
      const { result, devLoss } = await evaluateDev(model, task, exs, mode, b, new Map<Example, Encoded>());
      close(devLoss, ref.loss, `${task.name} ${mode} dev loss, batch ${b}, ${order} order`);
      const ev = await evaluate(asLanguageModel(model), task, exs, { batchSize: b });
      close(ev.metrics['accuracy']!, refAcc, `${task.name} accuracy, batch ${b}, ${order} order`, 1e-12);
      for (const p of ev.predictions) assert.equal(p.prediction, predById.get(p.id), `${task.name} example ${p.id}, batch ${b}, ${order} order`);
      for (const [k, v] of Object.entries(ev.metrics)) close(v, result.metrics[k]!, `${task.name} ${k}: evaluate at batch ${b} vs batch 8`, 1e-12);
    }
  }
}

test('SST-2 (one shared answer token): dev loss and accuracy are the same for batch 1, 3, 8, 32 and a shuffled order', async () => {
  const task = resolveTask('sst2');
  // 37 examples: a partial last batch for every batch size but 1
  await checkInvariance(task, loadExamples(task, SST2).slice(0, 37), 'classification');
});

test('COPA (multi-token candidates): the classification and lm dev losses are batch- and order-invariant', async () => {
  const task = resolveTask('copa');
  const dev = loadExamples(task, COPA).slice(0, 19);
  await checkInvariance(task, dev, 'classification');
  await checkInvariance(task, dev, 'lm');
});

test('the demo case: 474 dev sentences give one dev loss at batch 2 and 32', async () => {
  const task = resolveTask('sst2');
  const dev = loadExamples(task, SST2);
  const model = await loadTransformer(MODEL, { threads: 1 });
  const losses: number[] = [];
  for (const b of [2, 32]) losses.push((await evaluateDev(model, task, dev, 'classification', b, new Map())).devLoss);
  // batch 2 divides 474, so it was right before the fix (1.17264); 32 gave 1.16289 and now agrees
  close(losses[1]!, losses[0]!, 'batch 32 vs 2', 1e-6);
  assert.ok(Math.abs(losses[0]! - 1.17264) < 5e-6, `batch 2 dev loss ${losses[0]}`);
});

test('--grad-accum 2 at batch 3 is one step of batch 6 (lm objective: answer tokens weighted, not micro-batches)', async () => {
  const task = resolveTask('copa');
  const exs = loadExamples(task, COPA).slice(0, 6);
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-accum-'));
  try {
    const after: Float32Array[][] = [];
    const losses: number[] = [];
    for (const [batch, accum] of [
      [6, 1],
      [3, 2],
    ] as const) {
      const cfg = buildTrainConfig({ model: MODEL, task: 'copa', data: COPA, optimizer: 'sgd', lr: '0.5', schedule: 'constant', batchSize: String(batch), gradAccum: String(accum), trainable: 'ln_f', objective: 'lm', seed: '0' });
      const model = await loadTransformer(MODEL, { threads: 1 });
      model.setAdapters({ kind: 'full', only: 'ln_f' }, null);
      const stepper = makeStepper(cfg, model, tmp);
      let next = 0;
      const r = await stepper.step(
        () => {
          const chunk = exs.slice(next, next + batch);
          next += batch;
          return buildLossRequest(chunk.map((e) => encodeExample(task, e, model)), 'lm', model, batch);
        },
        0,
        0.5,
      );
      losses.push(r.loss);
      after.push(model.trainableNames().map((n) => Float32Array.from(model.tensor(n))));
    }
    const model = await loadTransformer(MODEL, { threads: 1 });
    model.setAdapters({ kind: 'full', only: 'ln_f' }, null);
    const ref = await reference(model, task, exs, 'lm');
    close(losses[0]!, ref.loss, 'batch-6 loss vs per-example reference');
    close(losses[1]!, ref.loss, 'accumulated loss vs per-example reference');
    after[0]!.forEach((w, i) => {
      for (let j = 0; j < w.length; j++) close(after[1]![i]![j]!, w[j]!, `weight ${i}[${j}] after one step`, 1e-5);
    });
    // the step moved the weights, so the comparison above is not vacuous
    const before = model.trainableNames().map((n) => model.tensor(n));
    assert.ok(before.some((w, i) => w.some((x, j) => Math.abs(x - after[0]![i]![j]!) > 1e-4)));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('thread count: the dev loss and predictions at 1 and 2 compute threads agree', async () => {
  const task = resolveTask('sst2');
  const dev = loadExamples(task, SST2).slice(0, 37);
  const [one, two] = [await loadTransformer(MODEL, { threads: 1 }), await loadTransformer(MODEL, { threads: 2 })];
  const a = await evaluateDev(one, task, dev, 'classification', 8, new Map());
  const b = await evaluateDev(two, task, dev, 'classification', 8, new Map());
  close(b.devLoss, a.devLoss, 'dev loss, 2 threads vs 1');
  assert.deepEqual(b.result.predictions.map((p) => p.prediction), a.result.predictions.map((p) => p.prediction));
  const ref = await reference(one, task, dev, 'classification');
  close(a.devLoss, ref.loss, 'dev loss vs per-example reference');
});
