/**
 * LESS step 1, warmup: LoRA + Adam on a seeded random `percentage` of the pool for `epochs` epochs, a
 * checkpoint per epoch with its Adam moments (keyed by parameter name) and the epoch's average learning
 * rate. The training itself is `train()` of src/train (the same loop, batches and kill-safe
 * checkpoints as `lmtune train --task chat`); this file only chooses the subset, configures the run
 * and keeps a copy of the checkpoint at every epoch boundary.
 *
 * Layout under OUT/warmup/: data.jsonl (the subset, pool lines in pool order), run/ (the train run
 * folder), epochs/epoch-<e>/ (trainable.safetensors, optimizer.safetensors, state.json), done.json.
 *
 * Differences from the reference: the subset is drawn from our named seed stream (the reference draws
 * with numpy seed 42 whatever `--data_seed` says, spec §1); an epoch is floor(n / batch) updates of the
 * continuous seeded data order, so checkpoints fall on exact update counts.
 */
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import { Rng } from '../util/rng.ts';
import { faultPoint } from '../util/fault.ts';
import { loadTransformer } from '../heads/model.ts';
import { train } from '../train/loop.ts';
import { readCheckpoint } from '../train/checkpoint.ts';
import type { TrainConfig } from '../train/options.ts';
import { optimizerDefaults } from '../optim/options.ts';
import type { Schedule } from '../optim/schedule.ts';
import { epochAverageLr } from './match.ts';
import { encodeRows, readChatFile } from './pool.ts';
import type { SelectConfig } from './config.ts';
import { eta, type SelectHooks } from './events.ts';

export interface WarmupCheckpoint {
  name: string;
  epoch: number;
  step: number;
  /** average learning rate of the epoch (the matching weight before rescaling) */
  lr: number;
  dir: string;
}

export interface WarmupResult {
  rows: number;
  stepsPerEpoch: number;
  checkpoints: WarmupCheckpoint[];
  seconds: number;
}

export function warmupDir(out: string): string {
  return join(out, 'warmup');
}

/** pool indices of the warmup subset: a seeded uniform draw of floor(p·N) (at least 1) valid rows, ascending */
export function warmupIndices(valid: readonly number[], percentage: number, seed: number): number[] {
  if (!(percentage > 0 && percentage <= 1)) throw new LmtuneError('CONFIG', `--warmup-percentage must be in (0, 1], got ${percentage}`);
  const n = Math.max(1, Math.floor(percentage * valid.length + 1e-9));
  const perm = new Rng(`less/warmup/${seed}`).permutation(valid.length);
  return perm
    .slice(0, n)
    .map((i) => valid[i]!)
    .sort((a, b) => a - b);
}

function trainConfig(cfg: SelectConfig, data: string, rows: number): { train: TrainConfig; stepsPerEpoch: number; schedule: Schedule } {
  const w = cfg.warmup;
  const stepsPerEpoch = Math.max(1, Math.floor(rows / w.batchSize));
  const maxSteps = stepsPerEpoch * w.epochs;
  const warmupSteps = Math.ceil(w.warmupRatio * maxSteps);
  const train: TrainConfig = {
    version: 1,
    model: cfg.model,
    task: 'chat',
    data,
    dev: null,
    numTrain: null,
    numDev: 0,
    devLimit: 1,
    // the schema's defaults (optim/options.ts): Adam with PyTorch's β and ε, as the reference's warmup
    optimizer: { ...optimizerDefaults('adam'), name: 'adam', lr: w.lr, zoEps: 1e-3 },
    schedule: 'linear',
    warmupSteps,
    maxSteps,
    batchSize: w.batchSize,
    gradAccum: 1,
    clipNorm: w.clipNorm,
    evalEvery: 0,
    saveEvery: stepsPerEpoch,
    seed: cfg.seed,
    peft: { kind: 'lora', rank: w.loraRank, alpha: w.loraAlpha, dropout: 0, targets: w.loraTargets },
    objective: 'lm',
    svag: 1,
    maxLength: cfg.maxLength,
    threads: cfg.threads,
    truncation: cfg.truncation,
    skipInvalid: cfg.skipInvalid,
  };
  return { train, stepsPerEpoch, schedule: { kind: 'linear', lr: w.lr, warmupSteps, totalSteps: maxSteps } };
}

/** copies the run's current checkpoint to epochs/epoch-<e> (through a temporary name) */
function snapshot(wd: string, epoch: number): void {
  const dst = join(wd, 'epochs', `epoch-${epoch}`);
  if (existsSync(dst)) return;
  const ck = readCheckpoint(join(wd, 'run', 'checkpoint'));
  if (!ck) throw new LmtuneError('CHECKPOINT', `${wd}/run/checkpoint: no checkpoint to keep for epoch ${epoch}`);
  const src = existsSync(join(wd, 'run', 'checkpoint', 'state.json')) ? join(wd, 'run', 'checkpoint') : join(wd, 'run', 'checkpoint.old');
  const tmp = `${dst}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(wd, 'epochs'), { recursive: true });
  cpSync(src, tmp, { recursive: true });
  faultPoint(`select:warmup:snapshot:${epoch}`);
  renameSync(tmp, dst);
}

export function readWarmup(out: string): WarmupResult | null {
  const p = join(warmupDir(out), 'done.json');
  return existsSync(p) ? readJson<WarmupResult>(p, 'warmup summary') : null;
}

export async function runWarmup(cfg: SelectConfig, out: string, hooks: SelectHooks = {}): Promise<WarmupResult> {
  const done = readWarmup(out);
  if (done) return done;
  const t0 = performance.now();
  const wd = warmupDir(out);
  mkdirSync(wd, { recursive: true });
  const data = join(wd, 'data.jsonl');
  const pool = readChatFile(cfg.pool, { skipInvalid: cfg.skipInvalid });
  if (!existsSync(data)) {
    // rows the gradient stage could not use (nothing supervised after truncation) are not drawn either
    const model = await loadTransformer(cfg.model, { sharedWeights: false });
    if (!model.tokenizer) throw new LmtuneError('TOKENIZER', `${cfg.model}: no tokenizer; chat data needs one`);
    const { encoded } = encodeRows(pool, model.tokenizer, cfg.maxLength, cfg.skipInvalid, cfg.truncation);
    const valid = [...encoded.keys()].sort((a, b) => a - b);
    const raw = new Map(pool.rows.map((r) => [r.index, r.chat.raw] as const));
    const idx = warmupIndices(valid, cfg.warmup.percentage, cfg.seed);
    atomicWrite(data, idx.map((i) => raw.get(i)! + '\n').join(''));
  }
  const rows = readChatFile(data).rows.length;
  const { train: tc, stepsPerEpoch, schedule } = trainConfig(cfg, data, rows);
  const runDir = join(wd, 'run');
  const resume = existsSync(join(runDir, 'config.json'));
  let trained = false;
  if (resume) {
    // killed between a checkpoint and its epoch copy: the checkpoint is still the epoch's
    const ck = readCheckpoint(join(runDir, 'checkpoint'));
    if (ck && ck.state.step > 0 && ck.state.step % stepsPerEpoch === 0) snapshot(wd, ck.state.step / stepsPerEpoch);
    // the last epoch's checkpoint is all the selection needs (train refuses to resume a finished run)
    trained = ck !== null && ck.state.step >= tc.maxSteps;
  }
  const tTrain = performance.now();
  let startStep = -1;
  if (!trained) await train(
    tc,
    runDir,
    {
      onStep: (e) => {
        if (startStep < 0) startStep = e.step - 1;
        hooks.onProgress?.({ stage: 'warmup', done: e.step, total: e.maxSteps, unit: 'steps', etaSeconds: eta(tTrain, e.step - startStep, e.maxSteps - startStep), detail: `loss ${e.loss.toFixed(4)}` });
      },
      onMessage: (m) => hooks.onMessage?.(`warmup: ${m}`),
      afterStep: (step) => {
        if (step % stepsPerEpoch === 0) snapshot(wd, step / stepsPerEpoch);
      },
    },
    resume,
  );
  const ends = Array.from({ length: cfg.warmup.epochs }, (_, e) => (e + 1) * stepsPerEpoch);
  const lrs = epochAverageLr(schedule, ends);
  const checkpoints: WarmupCheckpoint[] = ends.map((step, e) => {
    const dir = join(wd, 'epochs', `epoch-${e + 1}`);
    if (!existsSync(join(dir, 'state.json'))) throw new LmtuneError('CHECKPOINT', `${dir}: the epoch ${e + 1} checkpoint is missing`, `remove ${wd} and rerun the warmup`);
    return { name: `epoch-${e + 1}`, epoch: e + 1, step, lr: lrs[e]!, dir: `warmup/epochs/epoch-${e + 1}` };
  });
  const result: WarmupResult = { rows, stepsPerEpoch, checkpoints, seconds: (performance.now() - t0) / 1000 };
  faultPoint('select:warmup:before-done');
  atomicWrite(join(wd, 'done.json'), stableStringify(result));
  return result;
}
