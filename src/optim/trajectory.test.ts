/**
 * Trajectory log: exact JSON round trip of float64 projected gradients, bit-exact replay for every
 * variant, torn-tail handling, and kill/resume giving the same weights and the same log bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MezoOptimizer, type MezoOptions } from './mezo.ts';
import { lrAt, type Schedule } from './schedule.ts';
import { formatRecord, optimizerForTrajectory, replayTrajectory, stepRecord, trajectoryHeader, type TrajectoryRecord } from './trajectory.ts';
import { readTrajectory, TrajectoryWriter } from '../node/trajectory-file.ts';
import type { NamedParam } from './types.ts';
import { mezoStepSeed } from './zstream.ts';
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';

const tmp = (): string => mkdtempSync(join(tmpdir(), 'lmtune-traj-'));
const bitsEqual = (a: Float32Array, b: Float32Array): boolean => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

function params(seed: number): NamedParam[] {
  const rng = new Rng(seed);
  return [
    ['h.0.mlp.c_fc.weight', 2000, 0.02],
    ['h.0.mlp.c_fc.bias', 300, 1e-3],
    ['ln_f.weight', 300, 0.05],
  ].map(([name, n, std]) => {
    const size = n as number;
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = (name === 'ln_f.weight' ? 1 : 0) + (std as number) * rng.normal();
    return { name: name as string, data };
  });
}

const clone = (ps: NamedParam[]): NamedParam[] =>
  ps.map((p) => {
    const data = new Float32Array(p.data.length);
    data.set(p.data);
    return { name: p.name, data };
  });

/** A toy "model": the loss is a smooth function of the weights, so every step has a different g. */
function lossOf(ps: NamedParam[]): () => Promise<number> {
  return async () => {
    let s = 0;
    for (const p of ps) for (let i = 0; i < p.data.length; i += 7) s += Math.sin(p.data[i]! * 3 + i) * p.data[i]!;
    return s;
  };
}

async function train(ps: NamedParam[], opts: MezoOptions, path: string, steps: number, schedule: Schedule, from = 0, opt?: MezoOptimizer, writer?: TrajectoryWriter): Promise<MezoOptimizer> {
  const o = opt ?? new MezoOptimizer(ps, opts);
  const w = writer ?? TrajectoryWriter.create(path, trajectoryHeader(o));
  for (let t = from; t < steps; t++) {
    const lr = lrAt(schedule, t);
    const r = await o.step(mezoStepSeed(1234, t), lossOf(ps), lr);
    w.append(stepRecord(o, t, r, lr));
  }
  w.close();
  return o;
}

test('projected gradients round-trip through the JSON line bit for bit (random doubles, −0, subnormals, extremes)', () => {
  const rng = new Rng(3);
  const bits = new DataView(new ArrayBuffer(8));
  const xs: number[] = [-0, 0, 5e-324, -2.2250738585072014e-308, Number.MAX_VALUE, 0.1 + 0.2, 1e-7, -123456.789e-300];
  while (xs.length < 2000) {
    bits.setUint32(0, rng.nextU32());
    bits.setUint32(4, rng.nextU32());
    const v = bits.getFloat64(0);
    if (Number.isFinite(v)) xs.push(v);
  }
  const rec: TrajectoryRecord = { step: 0, seeds: xs.map((_, i) => i), grads: xs, lr: 1e-7, eps: 1e-3, weightDecay: 0, distribution: 'gaussian' };
  const back = JSON.parse(formatRecord(rec)) as TrajectoryRecord;
  back.grads.forEach((g, i) => assert.ok(Object.is(g, xs[i]), `${xs[i]} came back as ${g}`));
  assert.throws(() => formatRecord({ ...rec, grads: [Number.NaN] }), LmtuneError);
});

test('replay rebuilds the final weights bit for bit (ZO-SGD + wd + schedule, n-SPSA, Rademacher, momentum, Adam)', async () => {
  const dir = tmp();
  try {
    const variants: MezoOptions[] = [
      { eps: 1e-3, weightDecay: 0.1 },
      { eps: 1e-2, nSpsa: 3 },
      { eps: 1e-3, distribution: 'rademacher', weightDecay: 0.01 },
      { eps: 1e-3, rule: { kind: 'momentum', beta: 0.9, nesterov: true } },
      { eps: 1e-3, weightDecay: 0.05, rule: { kind: 'adam', beta2: 0.99 } },
    ];
    const schedule: Schedule = { kind: 'cosine', lr: 1e-3, warmupSteps: 2, totalSteps: 10 };
    for (const [k, opts] of variants.entries()) {
      const init = params(k);
      const ps = clone(init);
      const path = join(dir, `t${k}.jsonl`);
      const trained = await train(ps, opts, path, 10, schedule);
      const traj = readTrajectory(path);
      assert.equal(traj.records.length, 10);
      assert.equal(traj.tornBytes, 0);
      const re = clone(init);
      const replayed = await replayTrajectory(re, traj);
      re.forEach((p, i) => {
        assert.ok(bitsEqual(p.data, ps[i]!.data), `variant ${k}: ${p.name} differs after replay`);
        assert.ok(!bitsEqual(p.data, init[i]!.data), `variant ${k}: ${p.name} never moved`);
      });
      for (const [key, v] of trained.stateTensors()) assert.ok(bitsEqual(v, replayed.stateTensors().get(key)!), `variant ${k}: state ${key}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a torn last line is ignored by readers and truncated on resume; corruption before it is an error', async () => {
  const dir = tmp();
  try {
    const path = join(dir, 'trajectory.jsonl');
    await train(params(1), { eps: 1e-3 }, path, 3, { kind: 'constant', lr: 1e-3 });
    const good = readFileSync(path);
    appendFileSync(path, '{"step":3,"seeds":[12');
    let t = readTrajectory(path);
    assert.equal(t.records.length, 3);
    assert.equal(t.tornBytes, '{"step":3,"seeds":[12'.length);
    // NUL bytes (a crash on a delayed-allocation filesystem) ending in a newline
    writeFileSync(path, Buffer.concat([good, Buffer.alloc(40), Buffer.from('\n')]));
    t = readTrajectory(path);
    assert.equal(t.records.length, 3);
    const { writer, trajectory } = TrajectoryWriter.resume(path);
    assert.equal(trajectory.records.length, 3);
    writer.close();
    assert.ok(readFileSync(path).equals(good), 'resume must cut the file back to its last complete line');
    // damage in the middle: an error naming the line
    const lines = good.toString('utf8').split('\n');
    lines[2] = lines[2]!.slice(0, 10);
    writeFileSync(path, lines.join('\n'));
    assert.throws(() => readTrajectory(path), (e: unknown) => e instanceof LmtuneError && e.code === 'CHECKPOINT' && e.message.includes(':3:'));
    // a gap in the step numbers
    const l2 = good.toString('utf8').split('\n');
    l2.splice(2, 1);
    writeFileSync(path, l2.join('\n'));
    assert.throws(() => readTrajectory(path), (e: unknown) => e instanceof LmtuneError && e.message.includes('expected step 1'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kill after step 7, resume from the step-4 checkpoint: same final weights and same trajectory bytes', async () => {
  const dir = tmp();
  try {
    const opts: MezoOptions = { eps: 1e-3, weightDecay: 0.1, rule: { kind: 'momentum', beta: 0.9 } };
    const schedule: Schedule = { kind: 'linear', lr: 1e-3, warmupSteps: 1, totalSteps: 12 };
    const init = params(5);
    // uninterrupted
    const full = clone(init);
    const fullPath = join(dir, 'full.jsonl');
    await train(full, opts, fullPath, 12, schedule);
    // interrupted: checkpoint (weights + optimizer state) after 4 steps, then 3 more logged steps, then "kill"
    const run = clone(init);
    const path = join(dir, 'run.jsonl');
    const opt = new MezoOptimizer(run, opts);
    const w = TrajectoryWriter.create(path, trajectoryHeader(opt));
    let ckpt: { ps: NamedParam[]; tensors: Map<string, Float32Array>; scalars: Record<string, number> } | null = null;
    for (let t = 0; t < 7; t++) {
      const lr = lrAt(schedule, t);
      w.append(stepRecord(opt, t, await opt.step(mezoStepSeed(1234, t), lossOf(run), lr), lr));
      if (t === 3) ckpt = { ps: clone(run), tensors: new Map([...opt.stateTensors()].map(([k, v]) => [k, v.slice()])), scalars: JSON.parse(JSON.stringify(opt.stateScalars())) as Record<string, number> };
    }
    w.close();
    appendFileSync(path, '{"step":7,"se'); // killed mid-write
    // resume
    const ps = clone(ckpt!.ps);
    const { writer, trajectory } = TrajectoryWriter.resume(path, { keepSteps: 4 });
    const opt2 = optimizerForTrajectory(ps, trajectory.header);
    opt2.loadState(ckpt!.tensors, ckpt!.scalars);
    await train(ps, opts, path, 12, schedule, 4, opt2, writer);
    ps.forEach((p, i) => assert.ok(bitsEqual(p.data, full[i]!.data), p.name));
    assert.ok(readFileSync(path).equals(readFileSync(fullPath)), 'trajectory files differ');
    assert.throws(() => TrajectoryWriter.resume(path, { keepSteps: 13 }), (e: unknown) => e instanceof LmtuneError && e.code === 'CHECKPOINT');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('replay refuses a model whose trainable tensors differ from the log', async () => {
  const dir = tmp();
  try {
    const path = join(dir, 't.jsonl');
    await train(params(1), { eps: 1e-3 }, path, 1, { kind: 'constant', lr: 1e-3 });
    const { header } = readTrajectory(path);
    const ps = params(1);
    assert.throws(() => optimizerForTrajectory(ps.slice(0, 2), header), (e: unknown) => e instanceof LmtuneError && e.code === 'CHECKPOINT');
    assert.throws(() => optimizerForTrajectory([ps[1]!, ps[0]!, ps[2]!], header), (e: unknown) => e instanceof LmtuneError && e.message.includes('h.0.mlp.c_fc.bias'));
    assert.deepEqual(header.config.noDecay, ['h.0.mlp.c_fc.bias', 'ln_f.weight']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
