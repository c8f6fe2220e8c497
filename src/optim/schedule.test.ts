/** Schedules against hand-computed values (HF get_*_schedule_with_warmup conventions). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSchedule, lrAt, type Schedule } from './schedule.ts';
import { LmtuneError } from '../util/errors.ts';

const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) <= 1e-15 + 1e-12 * Math.abs(b), `${a} vs ${b}`);

test('constant', () => {
  for (const s of [0, 1, 1000]) assert.equal(lrAt({ kind: 'constant', lr: 3e-4 }, s), 3e-4);
});

test('linear warmup then linear decay to 0 at totalSteps', () => {
  const s: Schedule = { kind: 'linear', lr: 1, warmupSteps: 4, totalSteps: 12 };
  // warmup: 0, 1/4, 2/4, 3/4; then (12 − t)/8 for t = 4..12; 0 afterwards
  const want = [0, 0.25, 0.5, 0.75, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0, 0, 0];
  want.forEach((w, t) => close(lrAt(s, t), w));
});

test('cosine with warmup: half a cosine from lr to minLr, flat afterwards', () => {
  const s: Schedule = { kind: 'cosine', lr: 2, warmupSteps: 2, totalSteps: 6, minLr: 0.5 };
  close(lrAt(s, 0), 0);
  close(lrAt(s, 1), 1);
  close(lrAt(s, 2), 2); // progress 0
  close(lrAt(s, 3), 0.5 + 1.5 * 0.5 * (1 + Math.SQRT1_2)); // progress 1/4: cos(π/4)
  close(lrAt(s, 4), 0.5 + 1.5 * 0.5); // progress 1/2
  close(lrAt(s, 5), 0.5 + 1.5 * 0.5 * (1 - Math.SQRT1_2));
  close(lrAt(s, 6), 0.5);
  close(lrAt(s, 60), 0.5);
});

test('invalid schedules and steps are CONFIG errors', () => {
  const cfg = (f: () => unknown): void => assert.throws(f, (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG');
  cfg(() => checkSchedule({ kind: 'linear', lr: 1, warmupSteps: 5, totalSteps: 3 }));
  cfg(() => checkSchedule({ kind: 'cosine', lr: 1, warmupSteps: 0, totalSteps: 3, minLr: 2 }));
  cfg(() => checkSchedule({ kind: 'constant', lr: -1 }));
  cfg(() => lrAt({ kind: 'constant', lr: 1 }, 1.5));
});
