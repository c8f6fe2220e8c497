/**
 * Issue 19: outputs never destroy what the user wrote, resume validates before it changes anything,
 * and trajectories replay only what was recorded. Each test reproduces a case the probe found.
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { loadTransformer } from '../heads/model.ts';
import { MezoOptimizer } from '../optim/mezo.ts';
import { replayTrajectory, trajectoryHeader } from '../optim/trajectory.ts';
import { readTrajectory, TrajectoryWriter } from '../node/trajectory-file.ts';
import { buildTrainConfig, refuseChangedFlags } from '../cli/train.ts';
import { replayRun } from '../cli/mezo.ts';
import { readRunConfig, saveModelFolder, train } from './loop.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

const MODEL = join(SHARED_DATA, 'models/tiny-random-gpt2');
const SST2 = join(SHARED_DATA, 'sst2/glue_train.jsonl');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'lmtune-out-'));
}

function data(dir: string): string {
  const p = join(dir, 'sst2.jsonl');
  writeFileSync(p, readFileSync(SST2, 'utf8').split('\n').slice(0, 60).join('\n') + '\n');
  return p;
}

const isErr = (re: RegExp) => (e: unknown) => e instanceof LmtuneError && re.test(e.message);

test('saving a model never deletes a folder lmtune did not create, and replaces its own whole', async () => {
  const d = tmp();
  try {
    const model = await loadTransformer(MODEL);
    const mine = join(d, 'notes');
    mkdirSync(mine);
    writeFileSync(join(mine, 'thesis.txt'), 'years of work');
    assert.throws(() => saveModelFolder(model, mine, 'replay', '--out'), isErr(/--out .*notes: the folder exists and lmtune did not create it/));
    assert.equal(readFileSync(join(mine, 'thesis.txt'), 'utf8'), 'years of work');
    const out = join(d, 'replayed');
    saveModelFolder(model, out, 'replay', '--out');
    writeFileSync(join(out, 'stale.bin'), 'x');
    saveModelFolder(model, out, 'replay', '--out');
    assert.ok(existsSync(join(out, 'model.safetensors')) && !existsSync(join(out, 'stale.bin')), 'its own folder is replaced whole');
    // a replay may not replace a run's initial/ (another role)
    const initial = join(d, 'initial');
    saveModelFolder(model, initial, 'initial');
    await assert.rejects(replayRun(MODEL, join(d, 'none.jsonl'), initial), isErr(/--out .*initial: is an lmtune model \(initial\) folder, not a model \(replay\) folder/));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('train --out naming a model folder is refused before any work; its config.json is untouched', async () => {
  const d = tmp();
  try {
    const modelCopy = join(d, 'model');
    mkdirSync(modelCopy);
    for (const f of ['config.json', 'model.safetensors']) writeFileSync(join(modelCopy, f), readFileSync(join(MODEL, f)));
    const before = readFileSync(join(modelCopy, 'config.json'));
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: data(d), numDev: '8', optimizer: 'sgd', maxSteps: '2', batchSize: '4', evalEvery: '0' });
    await assert.rejects(train(cfg, modelCopy), isErr(/--out .*model: the folder exists and lmtune did not create it/));
    assert.ok(readFileSync(join(modelCopy, 'config.json')).equals(before));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('resuming a finished run returns its summary and keeps summary.json; a bad state.json is named with its key', async () => {
  const d = tmp();
  try {
    const run = join(d, 'run');
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: data(d), numDev: '8', optimizer: 'adam', lr: '1e-3', maxSteps: '2', batchSize: '4', evalEvery: '2', saveEvery: '1', seed: '1' });
    await train(cfg, run);
    const summary = readFileSync(join(run, 'summary.json'));
    // idempotent: the recorded summary comes back, nothing is rewritten
    const again = await train(readRunConfig(run), run, {}, true);
    assert.equal(again.steps, 2);
    assert.ok(readFileSync(join(run, 'summary.json')).equals(summary));

    const statePath = join(run, 'checkpoint', 'state.json');
    const state = JSON.parse(readFileSync(statePath, 'utf8')) as Record<string, unknown>;
    writeFileSync(statePath, JSON.stringify({ ...state, step: -3 }));
    await assert.rejects(train(readRunConfig(run), run, {}, true), isErr(/state\.json: "step" is -3, expected an integer in \[0, 2\]/));
    writeFileSync(statePath, JSON.stringify({ ...state, step: 1, best: null }));
    rmSync(join(run, 'checkpoint', 'optimizer.safetensors'));
    await assert.rejects(train(readRunConfig(run), run, {}, true), isErr(/optimizer\.safetensors: missing; adam keeps state/));

    const cfgPath = join(run, 'config.json');
    const raw = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(cfgPath, JSON.stringify({ ...raw, batchSize: '4' }));
    assert.throws(() => readRunConfig(run), isErr(/config\.json: "batchSize" is "4", expected an integer/));
    writeFileSync(cfgPath, JSON.stringify({ ...raw, optimizer: { ...(raw.optimizer as object), lr: undefined } }));
    assert.throws(() => readRunConfig(run), isErr(/config\.json: "optimizer\.lr" is missing/));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('flags given with --resume that disagree with the run are refused by name; agreeing ones pass', () => {
  const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: SST2, optimizer: 'adam', lr: '1e-3', maxSteps: '10', batchSize: '4' });
  assert.throws(() => refuseChangedFlags(cfg, 'runs/x', [['lr', '1e-2'], ['batchSize', '4'], ['maxSteps', '20']]), isErr(/--lr "1e-2" \(the run has 0\.001\); --max-steps "20" \(the run has 10\)$/));
  refuseChangedFlags(cfg, 'runs/x', [['lr', '0.001'], ['batchSize', '4'], ['optimizer', 'adam']]);
});

test('a resume that fails on an edited trajectory leaves log.jsonl and eval.jsonl as they were', async () => {
  const d = tmp();
  try {
    const run = join(d, 'run');
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: data(d), numDev: '8', optimizer: 'mezo', lr: '1e-3', zoEps: '1e-3', maxSteps: '6', batchSize: '4', evalEvery: '2', saveEvery: '2', seed: '2' });
    await assert.rejects(
      train(cfg, run, {
        afterStep: (s) => {
          if (s === 3) throw new Error('killed');
        },
      }),
      /killed/,
    );
    const logs = ['log.jsonl', 'eval.jsonl'].map((f) => readFileSync(join(run, f)));
    const trajPath = join(run, 'trajectory.jsonl');
    const lines = readFileSync(trajPath, 'utf8').split('\n');
    lines[2] = lines[2]!.replace(/"seeds":\[(\d+)\]/, (_, s: string) => `"seeds":[${Number(s) + 1}]`);
    writeFileSync(trajPath, lines.join('\n'));
    await assert.rejects(train(readRunConfig(run), run, {}, true), isErr(/trajectory\.jsonl:3: the hash chain breaks here/));
    ['log.jsonl', 'eval.jsonl'].forEach((f, i) => assert.ok(readFileSync(join(run, f)).equals(logs[i]!), `${f} unchanged`));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('trajectories: version-1 files (no hash chain) still replay, unverified; a replay into NaN weights is refused at its line', async () => {
  const d = tmp();
  try {
    const ps = () => [{ name: 'w', data: Float32Array.from([0.5, -0.25, 1]) }];
    const p = ps();
    const opt = new MezoOptimizer(p, { eps: 1e-3, weightDecay: 0, distribution: 'gaussian', nSpsa: 1, rule: { kind: 'sgd' } });
    const path = join(d, 'trajectory.jsonl');
    const w = TrajectoryWriter.create(path, trajectoryHeader(opt));
    const rec = { step: 0, seeds: [11], grads: [0.5], lr: 0.1, eps: 1e-3, weightDecay: 0, distribution: 'gaussian' as const };
    w.append(rec);
    w.append({ ...rec, step: 1, seeds: [12], grads: [1e300] });
    w.close();
    const t = readTrajectory(path);
    assert.equal(t.verified, true);
    const replayed = ps();
    await assert.rejects(replayTrajectory(replayed, t), isErr(/trajectory\.jsonl:3: replaying step 1 makes weight 'w'\[\d\] -?Infinity/));

    // the same file as version 1: chk fields dropped, version 1 — read and replayed (step 0 only)
    const v1 = readFileSync(path, 'utf8')
      .split('\n')
      .map((l) => l.replace(/,"chk":"[0-9a-f]{16}"}$/, '}').replace('"version":2', '"version":1'))
      .join('\n');
    writeFileSync(path, v1);
    const t1 = readTrajectory(path);
    assert.equal(t1.verified, false);
    const a = ps();
    await replayTrajectory(a, t, { to: 1 });
    const b = ps();
    await replayTrajectory(b, t1, { to: 1 });
    assert.deepEqual(b[0]!.data, a[0]!.data);
    assert.ok(a[0]!.data.some((x, i) => x !== ps()[0]!.data[i]), 'step 0 changed the weights');
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('a run stopped right after its step-0 evaluation resumes with that evaluation logged once (found by the kill harness)', async () => {
  const d = tmp();
  try {
    const run = join(d, 'run');
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: data(d), numDev: '8', optimizer: 'mezo', lr: '1e-3', zoEps: '1e-3', maxSteps: '2', batchSize: '4', evalEvery: '2', saveEvery: '1', seed: '2' });
    await assert.rejects(
      train(cfg, run, {
        onEval: () => {
          throw new Error('killed');
        },
      }),
      /killed/,
    );
    await train(readRunConfig(run), run, {}, true);
    const steps = readFileSync(join(run, 'eval.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
    assert.deepEqual(steps, [0, 2]);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('a disk that fills up during a checkpoint: a clear error, the previous checkpoint intact, and --resume finishes the run as if nothing happened', async () => {
  const d = tmp();
  try {
    const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: data(d), numDev: '8', optimizer: 'adam', lr: '1e-3', maxSteps: '4', batchSize: '4', evalEvery: '0', saveEvery: '1', seed: '5' });
    await train(cfg, join(d, 'base'));
    for (const at of ['partial', 'swapping']) {
      const run = join(d, at);
      process.env.LMTUNE_FAULT = `checkpoint:3:${at}:enospc`;
      try {
        await assert.rejects(train(cfg, run), isErr(new RegExp(`checkpoint: the checkpoint of step 3 could not be written \\(ENOSPC`)));
      } finally {
        delete process.env.LMTUNE_FAULT;
      }
      assert.equal((JSON.parse(readFileSync(join(run, 'checkpoint', 'state.json'), 'utf8')) as { step: number }).step, 2, `${at}: the step-2 checkpoint is where resume looks`);
      assert.ok(!existsSync(join(run, 'checkpoint.tmp')), `${at}: no partial checkpoint left`);
      await train(readRunConfig(run), run, {}, true);
      for (const f of ['final/model.safetensors', 'checkpoint/optimizer.safetensors', 'log.jsonl']) assert.ok(readFileSync(join(run, f)).equals(readFileSync(join(d, 'base', f))), `${at}: ${f} equals the uninterrupted run's`);
    }
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
