/**
 * End-to-end training on the embedded pretrained model (assets/tiny-english-lm) and an SST-2 subset:
 * Adam lowers dev loss; SVAG with ℓ ∈ {1, 2, 4} logs SDE time = Σ translated lr and the overlay report
 * draws all three; MeZO with the −accuracy objective logs projected gradients (l₊ − l₋)/2ε of
 * quantized accuracies; a NaN loss stops the run with the last good checkpoint named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { train } from './loop.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { overlayReport } from '../report/overlay.ts';
import { LmtuneError } from '../util/errors.ts';

const MODEL = new URL('../../assets/tiny-english-lm', import.meta.url).pathname;
const TRAIN = new URL('../../assets/demo/sst2-train.jsonl', import.meta.url).pathname;

function subset(dir: string, n: number): string {
  const p = join(dir, 'train.jsonl');
  writeFileSync(p, readFileSync(TRAIN, 'utf8').split('\n').slice(0, n).join('\n') + '\n');
  return p;
}

function jsonl(path: string): Record<string, number>[] {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
}

test('Adam fine-tuning of the embedded model lowers SST-2 dev loss', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-ft-'));
  try {
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: subset(tmp, 300), numDev: '64', optimizer: 'adam', lr: '1e-3', maxSteps: '30', batchSize: '16', evalEvery: '30', seed: '1', threads: '2' });
    const s = await train(cfg, join(tmp, 'run'));
    assert.ok(s.initialEval && s.finalEval);
    assert.ok(s.finalEval.devLoss < s.initialEval.devLoss - 0.05, `dev loss ${s.initialEval.devLoss} → ${s.finalEval.devLoss}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('SVAG ℓ ∈ {1, 2, 4} with SGD: SDE time is Σ lr/ℓ, and the overlay report draws every run', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-svag-'));
  try {
    const data = subset(tmp, 200);
    const runs: string[] = [];
    for (const ell of [1, 2, 4]) {
      const dir = join(tmp, `svag${ell}`);
      const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data, numDev: '16', optimizer: 'sgd', lr: '0.1', schedule: 'constant', svag: String(ell), maxSteps: String(3 * ell), batchSize: '8', evalEvery: '0', seed: '2', threads: '2' });
      await train(cfg, dir);
      const log = jsonl(join(dir, 'log.jsonl'));
      assert.equal(log.length, 3 * ell);
      log.forEach((r, k) => assert.ok(Math.abs(r.sde_time! - ((k + 1) * 0.1) / ell) < 1e-12, `ℓ=${ell} step ${k + 1}: sde_time ${r.sde_time}`));
      runs.push(dir);
    }
    const html = overlayReport(runs, 2);
    for (const ell of [1, 2, 4]) assert.ok(html.includes(`ℓ=${ell}`), `overlay names the ℓ=${ell} run`);
    assert.equal((html.match(/<div class="chart" id=/g) ?? []).length, 2, 'two charts: SDE time and steps');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('MeZO with the non-differentiable −accuracy objective', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-acc-'));
  try {
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: subset(tmp, 200), numDev: '16', optimizer: 'mezo', zoObjective: 'accuracy', lr: '1e-3', zoEps: '1e-2', maxSteps: '6', batchSize: '8', evalEvery: '0', seed: '3', threads: '2' });
    await train(cfg, join(tmp, 'run'));
    const log = jsonl(join(tmp, 'run', 'log.jsonl'));
    for (const r of log) {
      for (const l of [r.loss!, r.loss_minus!]) assert.ok(l <= 0 && l >= -1 && Math.abs(l * 8 - Math.round(l * 8)) < 1e-12, `−accuracy of 8 examples, got ${l}`);
      assert.ok(Math.abs(r.projected_grad! - (r.loss! - r.loss_minus!) / (2 * 1e-2)) < 1e-9);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('a diverging run stops with the step and the last good checkpoint', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-nan-'));
  try {
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: subset(tmp, 100), numDev: '8', optimizer: 'sgd', lr: '1e30', schedule: 'constant', maxSteps: '5', batchSize: '4', evalEvery: '0', saveEvery: '1', seed: '4', threads: '2' });
    await assert.rejects(train(cfg, join(tmp, 'run')), (e: unknown) => e instanceof LmtuneError && e.code === 'NUMERIC' && /step \d/.test(e.message) && /checkpoint/.test(e.hint ?? ''));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
