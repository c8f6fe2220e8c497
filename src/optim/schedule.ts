/**
 * Learning-rate schedules as pure functions of the step, so a checkpoint needs only the step number.
 * `step` is the number of optimizer updates already done (0 for the first update), the convention of
 * Hugging Face's LambdaLR schedules: with warmup, the very first update uses lr 0 (as in HF).
 *
 *   constant: lr
 *   linear:   step < W: lr·step/W;  else lr·max(0, (T − step)/(T − W))      (get_linear_schedule_with_warmup)
 *   cosine:   step < W: lr·step/W;  else p = min(1, (step − W)/(T − W)),
 *             minLr + (lr − minLr)·max(0, ½(1 + cos(π·2c·p)))              (get_cosine_schedule_with_warmup, c = 0.5)
 */
import { LmtuneError } from '../util/errors.ts';

export type Schedule =
  | { kind: 'constant'; lr: number }
  | { kind: 'linear'; lr: number; warmupSteps: number; totalSteps: number }
  | { kind: 'cosine'; lr: number; warmupSteps: number; totalSteps: number; minLr?: number; cycles?: number };

export function checkSchedule(s: Schedule): void {
  if (!(Number.isFinite(s.lr) && s.lr >= 0)) throw new LmtuneError('CONFIG', `schedule: lr must be a finite number >= 0, got ${s.lr}`);
  if (s.kind === 'constant') return;
  if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) throw new LmtuneError('CONFIG', `schedule: warmup steps must be an integer >= 0, got ${s.warmupSteps}`);
  if (!Number.isInteger(s.totalSteps) || s.totalSteps < s.warmupSteps) {
    throw new LmtuneError('CONFIG', `schedule: total steps (${s.totalSteps}) must be an integer >= warmup steps (${s.warmupSteps})`);
  }
  if (s.kind === 'cosine' && s.minLr !== undefined && !(s.minLr >= 0 && s.minLr <= s.lr)) {
    throw new LmtuneError('CONFIG', `schedule: minLr must be in [0, lr], got ${s.minLr}`);
  }
}

/** The learning rate for the update with index `step` (0-based). */
export function lrAt(s: Schedule, step: number): number {
  if (!Number.isInteger(step) || step < 0) throw new LmtuneError('CONFIG', `schedule: step must be an integer >= 0, got ${step}`);
  if (s.kind === 'constant') return s.lr;
  const W = s.warmupSteps;
  const T = s.totalSteps;
  if (step < W) return (s.lr * step) / W;
  if (s.kind === 'linear') return T === W ? 0 : s.lr * Math.max(0, (T - step) / (T - W));
  const minLr = s.minLr ?? 0;
  if (T === W) return minLr;
  const p = Math.min(1, (step - W) / (T - W)); // past T the schedule stays at its end value
  const c = s.cycles ?? 0.5;
  return minLr + (s.lr - minLr) * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 2 * c * p)));
}
