/**
 * The training side of data-parallel MeZO, in one process: shares, the share-weighted combination
 * (against the whole batch's mean computed directly), the MeZO hook (against a plain step), the choice
 * of the common start step and the checkpoint folders it rearranges, and the CLI's refusals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { combineShares, commonStartStep, jsonDiff, keepPreviousCheckpoint, localStartSteps, selectCheckpoint, shareCapacity, shareOf, shareValues } from './data-parallel.ts';
import { MezoOptimizer, type MezoSample } from '../optim/mezo.ts';
import { buildTrainConfig, dataParallelFlags } from '../cli/train.ts';
import { trainDataParallel } from '../distributed/data-parallel.ts';
import { absolutePaths } from './loop.ts';

test('shares: contiguous, covering the batch once, sizes differing by at most one', () => {
  for (const [B, N] of [[6, 3], [7, 3], [8, 3], [5, 5], [16, 1]] as const) {
    const batch = Array.from({ length: B }, (_, i) => i);
    const shares = Array.from({ length: N }, (_, r) => shareOf(batch, r, N));
    assert.deepEqual(shares.flat(), batch);
    const sizes = shares.map((s) => s.length);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `${B}/${N}: ${sizes}`);
    assert.equal(Math.max(...sizes), shareCapacity(B, N));
  }
});

test('uneven shares are weighted by their units: the combination is the whole batch mean (closed form)', () => {
  // per-example losses at θ ± εz; the batch loss is their mean, g = (L₊ − L₋)/2ε
  const eps = 1e-3;
  const lp = [0.71, 0.69, 0.73, 0.70, 0.66, 0.68, 0.72];
  const lm = [0.70, 0.70, 0.72, 0.71, 0.66, 0.67, 0.71];
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const whole = (mean(lp) - mean(lm)) / (2 * eps);
  const idx = lp.map((_, i) => i);
  const seed = 99;
  const values = [0, 1, 2].map((r) => {
    const s = shareOf(idx, r, 3); // 2, 2, 3 examples
    const Lp = mean(s.map((i) => lp[i]!));
    const Lm = mean(s.map((i) => lm[i]!));
    return shareValues(s.length, [{ seed, projectedGrad: (Lp - Lm) / (2 * eps), lossPlus: Lp, lossMinus: Lm }]);
  });
  const [c] = combineShares([{ seed, projectedGrad: 0, lossPlus: 0, lossMinus: 0 }], values);
  assert.ok(Math.abs(c!.projectedGrad - whole) < 1e-9, `${c!.projectedGrad} vs ${whole}`);
  assert.ok(Math.abs(c!.lossPlus - mean(lp)) < 1e-15);
  // an equal-weight mean of the shares would be wrong here
  const naive = values.reduce((a, v) => a + v[1]!, 0) / 3;
  assert.ok(Math.abs(naive - whole) > 1e-3);
  // one rank: the samples come back unchanged, bit for bit
  const one: MezoSample = { seed, projectedGrad: 0.1 + 0.2, lossPlus: 0.7, lossMinus: 0.6999 };
  assert.deepEqual(combineShares([one], [shareValues(7, [one])]), [one]);
  assert.throws(() => combineShares([one], [[1, 2]]), /rank 0 sent 2 numbers/);
});

test('the MeZO hook: combine replaces g in the update; a failing combine leaves θ where a failed loss does', async () => {
  const make = () => [{ name: 'w', data: Float32Array.from([0.5, -0.25, 1, 2]) }];
  const lossAt = (p: { data: Float32Array }[]) => () => Promise.resolve(p[0]!.data.reduce((a, x) => a + x * x, 0));
  // reference: a plain step whose g we then force through replay
  const a = make();
  const optA = new MezoOptimizer(a, { eps: 1e-2 });
  const b = make();
  const optB = new MezoOptimizer(b, { eps: 1e-2 });
  const r = await optB.step(7, lossAt(b), 0.1, (s) => Promise.resolve(s.map((x) => ({ ...x, projectedGrad: 3 }))));
  assert.equal(r.projectedGrad, 3);
  // the same update with g = 3: perturb ±ε as the step does, then the logged update
  await optA.replay({ seeds: r.samples.map((x) => x.seed), grads: [3], lr: 0.1, eps: 1e-2, weightDecay: 0, distribution: 'gaussian' });
  assert.deepEqual(b[0]!.data, a[0]!.data);
  const c = make();
  const before = Float32Array.from(c[0]!.data);
  const optC = new MezoOptimizer(c, { eps: 1e-2 });
  await assert.rejects(optC.step(7, lossAt(c), 0.1, () => Promise.reject(new Error('rank 2 is gone'))), /rank 2 is gone/);
  c[0]!.data.forEach((x, i) => assert.ok(Math.abs(x - before[i]!) < 1e-6, 'θ restored up to the perturbation roundings'));
});

test('the common start step: the smallest newest, which every rank must have', () => {
  assert.equal(commonStartStep([[0, 2, 4], [0, 2], [0, 2, 4]]), 2);
  assert.equal(commonStartStep([[0], [0, 4]]), 0);
  assert.equal(commonStartStep([[0, 6, 8], [0, 6, 8]]), 8);
  assert.throws(() => commonStartStep([[0, 6, 8], [0, 4]]), /rank 0 can only start from steps 0, 6, 8/);
});

test('checkpoint folders: keep the previous one, go back to it, or to step 0', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-dpck-'));
  try {
    const write = (name: string, step: number) => {
      mkdirSync(join(dir, name), { recursive: true });
      writeFileSync(join(dir, name, 'state.json'), JSON.stringify({ step }));
      writeFileSync(join(dir, name, 'trainable.safetensors'), `weights of ${step}`);
    };
    write('checkpoint', 2);
    keepPreviousCheckpoint(dir);
    rmSync(join(dir, 'checkpoint'), { recursive: true }); // what writeCheckpoint's swap does to the old one
    write('checkpoint', 4);
    assert.equal(readFileSync(join(dir, 'checkpoint.prev', 'trainable.safetensors'), 'utf8'), 'weights of 2');
    assert.deepEqual(localStartSteps(dir), [0, 2, 4]);
    assert.equal(selectCheckpoint(dir, 4), false);
    writeFileSync(join(dir, 'summary.json'), '{}');
    assert.equal(selectCheckpoint(dir, 2), true);
    assert.equal(readFileSync(join(dir, 'checkpoint', 'trainable.safetensors'), 'utf8'), 'weights of 2');
    assert.ok(!existsSync(join(dir, 'summary.json')), 'a run sent back is not finished');
    assert.deepEqual(localStartSteps(dir), [0, 2]);
    assert.equal(selectCheckpoint(dir, 0), true);
    assert.deepEqual(localStartSteps(dir), [0]);
    assert.ok(!existsSync(join(dir, 'checkpoint')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI flags: --world/--rank need --data-parallel; rank from LMTUNE_RANK; ranges checked', () => {
  assert.equal(dataParallelFlags({}, false), undefined);
  assert.throws(() => dataParallelFlags({ world: '2' }, false), /--world applies to --data-parallel runs only/);
  assert.throws(() => dataParallelFlags({}, true), /--dp-timeout applies to --data-parallel runs only/);
  assert.throws(() => dataParallelFlags({ dataParallel: 'redis://h:1', rank: '0' }, false), /needs --world/);
  const saved = process.env.LMTUNE_RANK;
  try {
    delete process.env.LMTUNE_RANK;
    assert.throws(() => dataParallelFlags({ dataParallel: 'redis://h:1', world: '2' }, false), /needs --rank \(or LMTUNE_RANK/);
    process.env.LMTUNE_RANK = '1';
    assert.deepEqual(dataParallelFlags({ dataParallel: 'redis://h:1', world: '2' }, false), { url: 'redis://h:1', world: 2, rank: 1, timeoutMs: 60_000 });
    process.env.LMTUNE_RANK = '2';
    assert.throws(() => dataParallelFlags({ dataParallel: 'redis://h:1', world: '2' }, false), /LMTUNE_RANK must be <= 1/);
    assert.equal(dataParallelFlags({ dataParallel: 'redis://h:1', world: '3', rank: '0', dpTimeout: '5' }, true)!.timeoutMs, 5000);
  } finally {
    if (saved === undefined) delete process.env.LMTUNE_RANK;
    else process.env.LMTUNE_RANK = saved;
  }
  assert.deepEqual(jsonDiff({ a: 1, b: { c: 2 } }, { a: 1, b: { c: 3 }, d: true }), ['b.c: 2 vs 3', 'd: undefined vs true']);
});

test('rerunning a data-parallel run folder with a changed command is refused, naming the field, before any rank waits', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-dpcfg-'));
  try {
    const data = join(dir, 'd.jsonl');
    writeFileSync(data, '{"sentence": "fine", "label": 1}\n');
    const flags = { model: join(dir, 'model'), task: 'sst2', data, optimizer: 'mezo', lr: '1e-3', batchSize: '2' };
    const out = join(dir, 'run');
    mkdirSync(out);
    writeFileSync(join(out, 'config.json'), JSON.stringify(absolutePaths(buildTrainConfig(flags))));
    // no Redis at this address: the refusal comes first
    await assert.rejects(trainDataParallel(buildTrainConfig({ ...flags, lr: '2e-3' }), out, { url: 'redis://127.0.0.1:1', world: 2, rank: 0 }), /holds a data-parallel run started with a different command .*optimizer\.lr: 0\.001 vs 0\.002/);
    await assert.rejects(trainDataParallel(buildTrainConfig({ ...flags, optimizer: 'adam' }), out, { url: 'redis://127.0.0.1:1', world: 2, rank: 0 }), /--data-parallel applies to --optimizer mezo, not adam/);
    await assert.rejects(trainDataParallel(buildTrainConfig({ ...flags, batchSize: '1' }), out, { url: 'redis://127.0.0.1:1', world: 2, rank: 0 }), /--batch-size 1 is smaller than --world 2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
