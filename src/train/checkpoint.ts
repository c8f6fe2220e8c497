/**
 * Run checkpoints: trainable tensors and optimizer state (keyed by parameter name) as safetensors, plus
 * a JSON state (step, data order, best metric). A checkpoint is written into a temporary folder and
 * swapped in by renames, so a kill at any moment leaves either the old or the new checkpoint whole.
 * Files carry no timestamps: identical runs write identical bytes.
 */
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import { readSafetensors, writeSafetensors } from '../node/safetensors-file.ts';
import { faultPoint } from '../util/fault.ts';
import { validateRunState } from './validate.ts';

export interface RunState {
  step: number;
  data: { epoch: number; cursor: number };
  best: { value: number; step: number } | null;
  optimizerScalars: Record<string, number>;
  /** extra state of the stepper (e.g. MeZO seed stream position) */
  extra: Record<string, number>;
}

export interface CheckpointContent {
  state: RunState;
  trainable: Map<string, { shape: readonly number[]; data: Float32Array }>;
  optimizer: Map<string, Float32Array>;
}

export function writeCheckpoint(dir: string, c: CheckpointContent): void {
  const tmp = `${dir}.tmp`;
  const old = `${dir}.old`;
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    writeSafetensors(join(tmp, 'trainable.safetensors'), c.trainable);
    faultPoint(`checkpoint:${c.state.step}:partial`);
    const opt = new Map([...c.optimizer].map(([k, v]) => [k, { shape: [v.length], data: v }] as const));
    if (opt.size) writeSafetensors(join(tmp, 'optimizer.safetensors'), opt);
    atomicWrite(join(tmp, 'state.json'), stableStringify(c.state));
    rmSync(old, { recursive: true, force: true });
    if (existsSync(dir)) renameSync(dir, old);
    faultPoint(`checkpoint:${c.state.step}:swapping`);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
  } catch (e) {
    // a full disk or an unwritable folder: put the previous checkpoint back where resume looks, drop
    // the partial one, and say so
    try {
      if (!existsSync(dir) && existsSync(old)) renameSync(old, dir);
      rmSync(tmp, { recursive: true, force: true });
    } catch {
      /* readCheckpoint still falls back to dir.old */
    }
    const why = e instanceof LmtuneError ? e.message : ((e as NodeJS.ErrnoException).code ?? (e as Error).message);
    throw new LmtuneError('IO', `${dir}: the checkpoint of step ${c.state.step} could not be written (${why})`, 'the previous checkpoint is intact: free disk space or fix the folder\'s permissions, then continue with --resume');
  }
}

/**
 * the newest complete checkpoint at `dir` (falls back to `dir.old` when killed mid-swap), or null; its
 * state.json is validated (steps within [0, maxSteps], types) before anything is used
 */
export function readCheckpoint(dir: string, maxSteps?: number): CheckpointContent | null {
  const candidates = [dir, `${dir}.old`].filter((d) => existsSync(join(d, 'state.json')));
  if (!candidates.length) return null;
  const d = candidates[0]!;
  const state = validateRunState(readJson(join(d, 'state.json'), 'checkpoint state'), join(d, 'state.json'), maxSteps);
  const trainable = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [k, t] of readSafetensors(join(d, 'trainable.safetensors')).tensors) trainable.set(k, { shape: t.shape, data: t.data });
  const optimizer = new Map<string, Float32Array>();
  if (existsSync(join(d, 'optimizer.safetensors'))) for (const [k, t] of readSafetensors(join(d, 'optimizer.safetensors')).tensors) optimizer.set(k, t.data);
  return { state, trainable, optimizer };
}
