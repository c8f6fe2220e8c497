/**
 * Numerics guards of the training loop (issue 19): a NaN/Inf loss, projected gradient or weight stops
 * the run naming the step and the tensor, and the last checkpoint on disk stays a good one — for MeZO
 * (whose losses at θ ± εz and projected gradient are checked inside the optimizer) as for backprop.
 * NaN is injected into a real model's weight through the loop's afterStep hook, as a diverging kernel or
 * a flipped bit would leave it.
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { MezoOptimizer } from '../optim/mezo.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { readRunConfig, train } from './loop.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

const MODEL = join(SHARED_DATA, 'models/tiny-random-gpt2');
const SST2 = join(SHARED_DATA, 'sst2/glue_train.jsonl');
const POISONED = 'transformer.h.0.mlp.c_fc.weight';

function data(dir: string): string {
  const p = join(dir, 'sst2.jsonl');
  writeFileSync(p, readFileSync(SST2, 'utf8').split('\n').slice(0, 40).join('\n') + '\n');
  return p;
}

function numeric(re: RegExp, hint?: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof LmtuneError, `not an LmtuneError: ${String(e)}`);
    assert.equal(e.code, 'NUMERIC');
    assert.match(e.message, re);
    if (hint) assert.match(e.hint ?? '', hint);
    return true;
  };
}

test('MeZO: a NaN weight stops the run at the next step, naming it; the step-2 checkpoint is kept and resumes to the uninterrupted result', async () => {
  const d = mkdtempSync(join(tmpdir(), 'lmtune-nan-mezo-'));
  try {
    const flags = { model: MODEL, task: 'sst2', data: data(d), numDev: '8', optimizer: 'mezo', lr: '1e-3', zoEps: '1e-3', maxSteps: '4', batchSize: '4', evalEvery: '0', saveEvery: '1', seed: '2', threads: '1' };
    await train(buildTrainConfig(flags), join(d, 'base'));
    const run = join(d, 'run');
    await assert.rejects(
      train(buildTrainConfig(flags), run, {
        afterStep: (s, model) => {
          if (s === 2) model.tensor(POISONED)[5] = Number.NaN;
        },
      }),
      numeric(new RegExp(`^step 3: mezo: loss at θ \\+ εz is NaN .*weight '${POISONED.replace(/\./g, '\\.')}' holds NaN at index 5`), /checkpoint \(step 2\)/),
    );
    assert.equal(JSON.parse(readFileSync(join(run, 'checkpoint/state.json'), 'utf8')).step, 2);
    // the failed step was not recorded: header + steps 1 and 2
    assert.equal(readFileSync(join(run, 'trajectory.jsonl'), 'utf8').trim().split('\n').length, 3);
    await train(readRunConfig(run), run, {}, true);
    assert.ok(readFileSync(join(run, 'final/model.safetensors')).equals(readFileSync(join(d, 'base/final/model.safetensors'))), 'resumed weights equal the uninterrupted run');
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('backprop + LoRA: a NaN base weight makes the loss NaN at the next step; the message names the step and the weight', async () => {
  const d = mkdtempSync(join(tmpdir(), 'lmtune-nan-lora-'));
  try {
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: data(d), numDev: '8', optimizer: 'adam', lr: '1e-3', peft: 'lora', maxSteps: '4', batchSize: '4', evalEvery: '0', saveEvery: '1', seed: '2', threads: '1' });
    await assert.rejects(
      train(cfg, join(d, 'run'), {
        afterStep: (s, model) => {
          if (s === 1) model.tensor(POISONED)[0] = Number.POSITIVE_INFINITY;
        },
      }),
      numeric(new RegExp(`^step 2: the training loss is NaN \\(weight '${POISONED.replace(/\./g, '\\.')}' holds Infinity at index 0\\)`), /checkpoint \(step 1\)/),
    );
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

for (const optimizer of ['sgd', 'mezo']) {
  test(`${optimizer}: an update that overflows float32 (lr 1e300) is caught before the checkpoint; no checkpoint holds an Inf`, async () => {
    const d = mkdtempSync(join(tmpdir(), 'lmtune-inf-'));
    try {
      const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: data(d), numDev: '8', optimizer, lr: '1e300', zoEps: '1e-3', schedule: 'constant', maxSteps: '3', batchSize: '4', evalEvery: '0', saveEvery: '1', seed: '2', threads: '1' });
      await assert.rejects(train(cfg, join(d, 'run')), numeric(/^step 1: after the update, weight '[^']+' holds -?Infinity at index \d+$/, /no checkpoint was written yet/));
      assert.ok(!existsSync(join(d, 'run/checkpoint')), 'no checkpoint of the broken weights');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
}

test('MezoOptimizer: a projected gradient that overflows (finite losses ±1e308) is refused and the weights are moved back to θ', async () => {
  const w = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i));
  const before = Float32Array.from(w);
  const opt = new MezoOptimizer([{ name: 'w', data: w }], { eps: 1e-3 });
  let calls = 0;
  await assert.rejects(
    opt.step(7, async () => (calls++ % 2 === 0 ? 1e308 : -1e308), 1e-3),
    numeric(/projected gradient is Infinity \(l₊ = 1e\+308, l₋ = -1e\+308/),
  );
  // +εz, −2εz, +εz in float32: θ up to the rounding of the adds
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(w[i]! - before[i]!) < 1e-6, `w[${i}] ${w[i]} vs ${before[i]}`);
});
