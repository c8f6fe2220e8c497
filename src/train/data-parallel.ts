/**
 * Data-parallel MeZO, the training side. N processes ("ranks") each hold the whole model and run the
 * same command; at every step all take the same global batch (the seeded data order), rank r evaluates
 * the step's ±εz losses on its contiguous share, and the ranks exchange a few numbers per step
 * (`DataParallel.exchange`, implemented over Redis in src/distributed/data-parallel.ts: this layer only
 * sees the interface). Every rank combines the same numbers in rank order, gets the same float64
 * projected gradient and applies the same update, so the replicas stay bit-identical.
 *
 * The combination is exact for the objective: the batch loss is a mean over its units (examples, or
 * answer tokens for the lm objective), so with share r holding w_r units and mean loss L_r,
 * L = Σ_r (w_r/W)·L_r with W = Σ_r w_r, and g = (L₊ − L₋)/2ε = Σ_r (w_r/W)·g_r. Uneven shares (B not a
 * multiple of N) are therefore weighted by their units, not averaged equally.
 *
 * Checkpoints: every rank writes its own (rank 0 in the run folder, rank r in `<run>/rank-<r>`), and
 * keeps the one before (`checkpoint.prev`, hard links: no copy) because a SIGKILL can land while one
 * rank has written checkpoint s and another has not; the ranks then agree on the newest step they all
 * have (`commonStartStep`) and each goes back to it if needed (`selectCheckpoint`). The per-step
 * exchange is a barrier, so the ranks' newest checkpoints are never more than one save interval apart,
 * and one older checkpoint always suffices.
 */
import { createHash } from 'node:crypto';
import { existsSync, linkSync, copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import type { MezoSample } from '../optim/mezo.ts';
import type { TrainConfig } from './options.ts';

/** What a rank brings to the meeting of the ranks before the first step. */
export interface ReplicaJoin {
  /** the run's configuration as every rank must have it (JSON; `threads` left out: machines differ) */
  readonly config: Readonly<Record<string, unknown>>;
  /** steps this rank can start from: 0 (the initial weights) and its checkpoints' */
  readonly steps: readonly number[];
}

export interface DataParallel {
  readonly world: number;
  readonly rank: number;
  /**
   * Meets the other ranks: returns every rank's join in rank order, or throws (naming the rank and the
   * difference) when a rank's command differs (config, --world, code version, a duplicate --rank).
   */
  join(mine: ReplicaJoin): Promise<ReplicaJoin[]>;
  /**
   * Publishes this rank's numbers for `step` and returns every rank's, in rank order, once all have
   * reported; throws naming the rank when one has died (its heartbeat expired) or stopped with an error.
   */
  exchange(step: number, seed: number, values: readonly number[]): Promise<number[][]>;
  /** tells the other ranks that this one stops (so they stop at once, with this message) */
  abort(message: string): Promise<void>;
  close(): Promise<void>;
}

/** the run folder of rank r: rank 0 owns the run folder itself, the others a sub-folder */
export function replicaDir(runDir: string, rank: number): string {
  return rank === 0 ? runDir : join(runDir, `rank-${rank}`);
}

/** rank r's contiguous share of a global batch: sizes differ by at most one */
export function shareOf<T>(batch: readonly T[], rank: number, world: number): T[] {
  const lo = Math.floor((rank * batch.length) / world);
  const hi = Math.floor(((rank + 1) * batch.length) / world);
  return batch.slice(lo, hi);
}

/** the largest share (the padded batch size of every rank's loss request) */
export function shareCapacity(batchSize: number, world: number): number {
  return Math.ceil(batchSize / world);
}

/** the configuration the ranks must agree on: everything but the thread count */
export function replicaConfig(cfg: TrainConfig): Record<string, unknown> {
  const { threads: _threads, ...rest } = cfg;
  return JSON.parse(JSON.stringify(rest)) as Record<string, unknown>;
}

/** paths (a.b.c) where two JSON values differ, for messages that name what to fix */
export function jsonDiff(a: unknown, b: unknown, path = ''): string[] {
  const isObj = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => jsonDiff(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path || '(root)'}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`];
}

/** one rank's numbers for a step: [units of its share, then g, l₊, l₋ of each n-SPSA sample] */
export function shareValues(units: number, samples: readonly MezoSample[]): number[] {
  return [units, ...samples.flatMap((s) => [s.projectedGrad, s.lossPlus, s.lossMinus])];
}

/**
 * The whole batch's samples from every rank's `shareValues`, in rank order: Σ_r (w_r/W)·x_r for g, l₊
 * and l₋. The same inputs give the same float64 on every rank. With one rank, w/W = 1 and the samples
 * come back unchanged (bit for bit).
 */
export function combineShares(local: readonly MezoSample[], all: readonly (readonly number[])[]): MezoSample[] {
  const n = local.length;
  all.forEach((v, r) => {
    if (v.length !== 1 + 3 * n || v.some((x) => !Number.isFinite(x))) {
      throw new LmtuneError('RUNTIME', `data-parallel: rank ${r} sent ${v.length} numbers (${v.join(', ')}), expected ${1 + 3 * n} finite ones (units + g, l₊, l₋ per sample)`, 'all ranks must run the same command (same --zo-samples)');
    }
  });
  let W = 0;
  for (const v of all) W += v[0]!;
  if (!(W > 0)) throw new LmtuneError('RUNTIME', 'data-parallel: the batch has no units to average over (every share is empty)');
  const c = all.map((v) => v[0]! / W);
  return local.map((s, j) => {
    let g = 0;
    let lp = 0;
    let lm = 0;
    all.forEach((v, r) => {
      g += c[r]! * v[1 + 3 * j]!;
      lp += c[r]! * v[2 + 3 * j]!;
      lm += c[r]! * v[3 + 3 * j]!;
    });
    return { seed: s.seed, projectedGrad: g, lossPlus: lp, lossMinus: lm };
  });
}

const CHECKPOINTS = ['checkpoint', 'checkpoint.old', 'checkpoint.prev'] as const;

function stepOf(dir: string): number | null {
  const p = join(dir, 'state.json');
  if (!existsSync(p)) return null;
  try {
    const s = (JSON.parse(readFileSync(p, 'utf8')) as { step?: unknown }).step;
    return typeof s === 'number' && Number.isInteger(s) && s >= 0 ? s : null;
  } catch {
    return null;
  }
}

/** the steps this rank's run folder can start from: 0 (initial weights) and each complete checkpoint's */
export function localStartSteps(runDir: string): number[] {
  const steps = new Set<number>([0]);
  for (const c of CHECKPOINTS) {
    const s = stepOf(join(runDir, c));
    if (s !== null) steps.add(s);
  }
  return [...steps].sort((a, b) => a - b);
}

/**
 * The step every rank starts from: the newest step the ranks all have, i.e. the smallest of the ranks'
 * newest. Every rank must be able to start there; otherwise (a checkpoint deleted by hand) the run is
 * refused, naming the rank.
 */
export function commonStartStep(all: readonly (readonly number[])[]): number {
  const start = Math.min(...all.map((s) => Math.max(...s)));
  all.forEach((s, r) => {
    if (!s.includes(start)) {
      throw new LmtuneError('CHECKPOINT', `data-parallel: the ranks' newest common step is ${start}, but rank ${r} can only start from steps ${s.join(', ')}`, 'a checkpoint folder was removed or replaced by hand: restore it, or start the run again in a new --out');
    }
  });
  return start;
}

/**
 * Makes `<runDir>/checkpoint` the checkpoint of `step` (or removes every checkpoint for step 0), going
 * back to `checkpoint.prev` when this rank is ahead of the others. Renames only, in an order that
 * leaves a valid state after a kill at any point. Returns true when this rank went back.
 */
export function selectCheckpoint(runDir: string, step: number): boolean {
  const at = (c: string): number | null => stepOf(join(runDir, c));
  const newest = Math.max(0, ...CHECKPOINTS.map(at).filter((s): s is number => s !== null));
  if (newest === step) return false;
  const discard = join(runDir, 'checkpoint.discard');
  rmSync(discard, { recursive: true, force: true });
  for (const c of ['checkpoint', 'checkpoint.old'] as const) {
    const s = at(c);
    if (s !== null && s > step) {
      renameSync(join(runDir, c), discard);
      rmSync(discard, { recursive: true, force: true });
    }
  }
  if (step > 0 && at('checkpoint') !== step && at('checkpoint.old') !== step) {
    if (at('checkpoint.prev') !== step) throw new LmtuneError('CHECKPOINT', `${runDir}: no checkpoint of step ${step} to go back to`);
    renameSync(join(runDir, 'checkpoint.prev'), join(runDir, 'checkpoint'));
  }
  if (step === 0) for (const c of CHECKPOINTS) rmSync(join(runDir, c), { recursive: true, force: true });
  // the run is not finished any more: its summary is rewritten when it is
  rmSync(join(runDir, 'summary.json'), { force: true });
  return true;
}

/**
 * Before a new checkpoint replaces `checkpoint`, keeps it as `checkpoint.prev` (hard links: the files
 * are never rewritten in place, so this copies nothing). A kill between the two renames leaves
 * `checkpoint` intact; the `checkpoint.prev` it drops is never needed (see the module comment).
 */
export function keepPreviousCheckpoint(runDir: string): void {
  const src = ['checkpoint', 'checkpoint.old'].map((c) => join(runDir, c)).find((d) => existsSync(join(d, 'state.json')));
  if (!src) return;
  const tmp = join(runDir, 'checkpoint.prev.tmp');
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  for (const f of readdirSync(src)) {
    try {
      linkSync(join(src, f), join(tmp, f));
    } catch {
      copyFileSync(join(src, f), join(tmp, f)); // a filesystem without hard links
    }
  }
  rmSync(join(runDir, 'checkpoint.prev'), { recursive: true, force: true });
  renameSync(tmp, join(runDir, 'checkpoint.prev'));
}

/** sha256 of a checkpoint's tensors (trainable, then optimizer state): equal on every replica */
export function checkpointDigest(dir: string): string {
  const h = createHash('sha256');
  for (const f of ['trainable.safetensors', 'optimizer.safetensors']) if (existsSync(join(dir, f))) h.update(f).update(readFileSync(join(dir, f)));
  return h.digest('hex');
}
