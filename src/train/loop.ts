/**
 * The fine-tuning loop shared by first-order training and MeZO:
 *
 *   for step in [start, maxSteps):
 *     lr   = schedule(step)
 *     batch = next examples of the seeded epoch permutation        (data order is checkpointed)
 *     loss = stepper.step(batch, lr)                               (backprop + optimizer, or MeZO)
 *     log one JSONL line; every evalEvery steps evaluate dev and keep the best checkpoint;
 *     every saveEvery steps write a checkpoint (atomic swap)
 *
 * A run folder holds config.json (everything needed to resume), log.jsonl, eval.jsonl, checkpoint/,
 * best/, final/ and a summary. `resume` reloads the checkpoint, truncates the logs to its step and
 * continues; the final weights equal an uninterrupted run's bit for bit.
 */
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import { faultPoint } from '../util/fault.ts';
import { asLanguageModel, loadTransformer, type TransformerModel } from '../heads/model.ts';
import { copyTokenizerFiles, saveAdapters } from '../models/index.ts';
import { attachPeft } from '../peft/index.ts';
import { optimizerSlots, type TrainingFootprint } from '../models/memory.ts';
import { evaluate, loadExamples, mezoSplit, resolveTask, type EvalResult, type Example, type Task } from '../tasks/index.ts';
import { lrAt, type Schedule } from '../optim/schedule.ts';
import { buildLossRequest, defaultObjective, encodeExample, lossUnits, type Encoded, type ObjectiveMode } from './batches.ts';
import { ChatTrainingData, type ChatDataReport } from './chat-batches.ts';
import { REPLY_ROOM } from '../tasks/chat.ts';
import { readCheckpoint, writeCheckpoint, type RunState } from './checkpoint.ts';
import type { TrainConfig } from './options.ts';
import { makeStepper, type BatchRequest, type Stepper, type StepResult } from './stepper.ts';
import { writeRunReport } from './report.ts';
import { DataOrder } from './data-order.ts';

export { DataOrder };
import { validateRunConfig } from './validate.ts';
import { checkpointDigest, commonStartStep, keepPreviousCheckpoint, localStartSteps, replicaConfig, selectCheckpoint, shareCapacity, shareOf, type DataParallel } from './data-parallel.ts';
import { claimFolder, readMarker, replaceFolder, writeMarker } from '../node/outputs.ts';

export interface StepEvent {
  step: number;
  maxSteps: number;
  loss: number;
  lr: number;
  stepsPerSecond: number;
  etaSeconds: number;
}

export interface EvalEvent {
  step: number;
  metric: string;
  value: number;
  devLoss: number;
  best: boolean;
}

export interface TrainHooks {
  onStep?: (e: StepEvent) => void;
  onEval?: (e: EvalEvent) => void;
  onMessage?: (m: string) => void;
  /** test hook: called after each step's log line is written (kill tests stop the process here; the
   * numerics tests poison a weight through `model`) */
  afterStep?: (step: number, model: TransformerModel) => void;
}

export interface TrainSummary {
  runDir: string;
  steps: number;
  finalLoss: number;
  initialEval: EvalEvent | null;
  finalEval: EvalEvent | null;
  best: { value: number; step: number } | null;
  finalDir: string;
  seconds: number;
  /** examples used for training and dev evaluation */
  examples?: { train: number; dev: number };
  /** --task chat: rows read, rows truncated to maxLength, rows skipped (--skip-invalid) */
  chat?: { rows: number; truncated: number; skipped: number; maxLength: number };
}

interface Prepared {
  model: TransformerModel;
  task: Task;
  train: Example[];
  dev: Example[];
  mode: ObjectiveMode;
  chat: ChatTrainingData | null;
}

async function prepare(cfg: TrainConfig): Promise<Prepared> {
  const model = await loadTransformer(cfg.model, { ...(cfg.threads ? { threads: cfg.threads } : {}), sharedWeights: false, training: trainingFootprint(cfg) });
  const task = resolveTask(cfg.task);
  const chat = ChatTrainingData.forTask(task, model, { maxLength: cfg.maxLength, skipInvalid: cfg.skipInvalid ?? false, truncation: cfg.truncation ?? 'right' });
  const load = (file: string): Example[] => (chat ? chat.load(file) : loadExamples(task, file));
  const pool = load(cfg.data);
  let train: Example[];
  let dev: Example[];
  if (cfg.dev) {
    train = cfg.numTrain ? pool.slice(0, cfg.numTrain) : pool;
    dev = load(cfg.dev);
  } else {
    const split = mezoSplit(pool, { numTrain: cfg.numTrain ?? Math.max(1, pool.length - cfg.numDev), numDev: cfg.numDev, seed: cfg.seed });
    train = split.train;
    dev = split.dev;
  }
  dev = dev.slice(0, cfg.devLimit);
  await attachPeft(model, cfg.peft, cfg.seed);
  if (cfg.objective === 'quad') throw new LmtuneError('CONFIG', 'the quad objective is a language-modelling loss on text: it runs through trainQuad (src/pretrain/quad-train.ts), not the task loop');
  const mode = cfg.objective === 'auto' ? defaultObjective(task, model) : cfg.objective;
  return { model, task, train, dev, mode, chat };
}

/** what the run keeps per trainable weight, for the memory check before the model is loaded */
function trainingFootprint(cfg: TrainConfig): TrainingFootprint {
  const o = cfg.optimizer;
  const full = cfg.peft.kind === 'full' && !cfg.peft.only;
  if (o.name === 'mezo') {
    const method = o.zoMethod ?? o.zoRule;
    return { what: `MeZO (${method}) state`, copiesPerTrainable: optimizerSlots(method), full };
  }
  // a gradient, an accumulator with --grad-accum, and the optimizer's slots
  const slots = optimizerSlots(o.name);
  return { what: `gradients${cfg.gradAccum > 1 ? ' + accumulator' : ''}${slots ? ` + ${o.name} state` : ''}`, copiesPerTrainable: 1 + (cfg.gradAccum > 1 ? 1 : 0) + slots, full };
}

function schedule(cfg: TrainConfig): Schedule {
  const lr = cfg.optimizer.lr;
  if (cfg.schedule === 'constant') return { kind: 'constant', lr };
  return { kind: cfg.schedule, lr, warmupSteps: cfg.warmupSteps, totalSteps: cfg.maxSteps };
}

/**
 * chat rows cut on the left are encoded with a reply room (tasks/chat.ts REPLY_ROOM); a run folder records
 * it, so that a run started by an lmtune that cut them otherwise is not resumed on other encodings
 */
const CHAT_ENCODING_FILE = 'chat-encoding.json';

function leftCutChat(cfg: TrainConfig): boolean {
  return cfg.task === 'chat' && cfg.truncation === 'left';
}

function checkChatEncoding(runDir: string): void {
  const path = join(runDir, CHAT_ENCODING_FILE);
  const room = existsSync(path) ? readJson<{ replyRoom?: number }>(path, 'chat encoding').replyRoom : undefined;
  if (room !== REPLY_ROOM) {
    throw new LmtuneError(
      'CONFIG',
      `${runDir} was started by an lmtune whose --truncation left ${room === undefined ? 'cut chat rows just enough to fit (so a cut row\'s answer position gave its length away)' : `kept a reply room of ${room} tokens`}; this one keeps ${REPLY_ROOM}, so the rest of the run would train on other encodings of the cut rows`,
      'start the run again with --out in a new folder',
    );
  }
}

/** keeps only lines whose `step` is at most `step` (after a resume) */
/** the step-0 and last evaluations of a run's eval.jsonl (a run resumed with no step left to take) */
export function loggedEvals(path: string, lastStep: number): { initialEval: EvalEvent | null; finalEval: EvalEvent | null } {
  const evs = existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as EvalEvent)
    : [];
  return { initialEval: evs.find((e) => e.step === 0) ?? null, finalEval: evs.find((e) => e.step === lastStep) ?? null };
}

export function loggedLastLoss(path: string): number {
  const lines = existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '') : [];
  return lines.length ? (JSON.parse(lines[lines.length - 1]!) as { loss: number }).loss : Number.NaN;
}

export function truncateJsonl(path: string, step: number): void {
  if (!existsSync(path)) return;
  const keep = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => {
      if (!l.trim()) return false;
      try {
        return (JSON.parse(l) as { step: number }).step <= step;
      } catch {
        return false; // a torn last line from a kill
      }
    });
  atomicWrite(path, keep.length ? keep.join('\n') + '\n' : '');
}

/** appends JSON lines; a line torn by a kill is dropped by `truncateJsonl` on resume */
export class JsonlWriter {
  private buffer: string[] = [];
  constructor(private readonly path: string) {}
  push(o: unknown): void {
    this.buffer.push(JSON.stringify(o));
  }
  flush(): void {
    if (!this.buffer.length) return;
    try {
      appendFileSync(this.path, this.buffer.join('\n') + '\n');
    } catch (e) {
      // a full disk: the lines are lost with this run, the checkpoint and resume are not
      throw new LmtuneError('IO', `${this.path}: cannot append (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'free disk space, then continue with --resume (the log is cut back to the checkpoint)');
    }
    this.buffer = [];
  }
}

export async function evaluateDev(model: TransformerModel, task: Task, dev: readonly Example[], mode: ObjectiveMode, batchSize: number, encodeCache: Map<Example, Encoded>): Promise<{ result: EvalResult; devLoss: number }> {
  const result = await evaluate(asLanguageModel(model), task, dev, { batchSize: 8 });
  // the mean over every dev example (classification, mask) or answer token (lm), not over batches
  let total = 0;
  let n = 0;
  for (let s = 0; s < dev.length; s += batchSize) {
    const exs = dev.slice(s, s + batchSize);
    const req = buildLossRequest(exs.map((e) => encodedOf(e, task, model, encodeCache)), mode, model, batchSize);
    const r = await model.loss(req);
    const units = lossUnits(req);
    total += r.loss * units;
    n += units;
  }
  return { result, devLoss: total / Math.max(1, n) };
}

function encodedOf(e: Example, task: Task, model: TransformerModel, cache: Map<Example, Encoded>): Encoded {
  let enc = cache.get(e);
  if (!enc) {
    enc = encodeExample(task, e, model);
    cache.set(e, enc);
  }
  return enc;
}

/**
 * The first of `names` holding NaN/Inf, as "weight 'x' holds NaN at index i"; null when all are finite.
 * One multiply-add per value (x·0 is NaN exactly for NaN/±Inf), so it runs before every checkpoint.
 */
export function nonFiniteWeight(model: TransformerModel, names: readonly string[] = model.allParamNames()): string | null {
  for (const n of names) {
    const d = model.tensor(n);
    let s = 0;
    for (let i = 0; i < d.length; i++) s += d[i]! * 0;
    if (s === 0) continue;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i]!)) return `weight '${n}' holds ${d[i]} at index ${i}`;
  }
  return null;
}

/** the error that stops a run at `step`: what went wrong, the weight that is not finite, the checkpoint to resume from */
function numericStop(step: number, what: string, hint: string | undefined, model: TransformerModel | null, runDir: string, checkpointed: number): LmtuneError {
  const bad = model ? nonFiniteWeight(model) : null;
  const ck = join(runDir, 'checkpoint');
  const resume = checkpointed > 0 || existsSync(join(ck, 'state.json')) ? `the last good checkpoint is ${ck} (step ${checkpointed}); lower the learning rate and resume` : 'no checkpoint was written yet; lower the learning rate and start again';
  return new LmtuneError('NUMERIC', `step ${step}: ${what}${bad ? ` (${bad})` : ''}`, hint ? `${hint}; ${resume}` : resume);
}

function trainableSnapshot(model: TransformerModel): Map<string, { shape: readonly number[]; data: Float32Array }> {
  const m = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const n of model.trainableNames()) {
    const t = model.adapters?.has(n) ? model.adapters.get(n) : model.weights.get(n);
    m.set(n, t);
  }
  return m;
}

/**
 * writes an HF folder: base weights (+ adapters for PEFT) + tokenizer files, swapped in whole. `dir`
 * must be absent, empty, or a model folder lmtune wrote in the same role (`best`, `final`, `initial`,
 * `replay`); anything else is refused, naming `flag`.
 */
export function saveModelFolder(model: TransformerModel, dir: string, role = 'final', flag = '--out'): void {
  replaceFolder(dir, { kind: 'model', role }, flag, (tmp) => {
    model.save(tmp);
    if (model.peft && model.peft.kind !== 'full' && model.adapters) saveAdapters(tmp, model.peft, model.adapters);
    if (model.dir) copyTokenizerFiles(model.dir, tmp);
  });
}

/** a folder written by an lmtune that predates the `.lmtune` marker: its config.json is a run config */
function isUnmarkedRun(dir: string): boolean {
  try {
    validateRunConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), join(dir, 'config.json'));
    return true;
  } catch {
    return false;
  }
}

/** makes `runDir` a run folder (refusing a folder lmtune did not create), adopting unmarked old runs */
export function claimRunFolder(runDir: string, flag = '--out'): void {
  if (existsSync(runDir) && readMarker(runDir) === null && isUnmarkedRun(runDir)) {
    writeMarker(runDir, { kind: 'run' });
    for (const role of ['best', 'final', 'initial']) if (existsSync(join(runDir, role)) && readMarker(join(runDir, role)) === null) writeMarker(join(runDir, role), { kind: 'model', role });
  }
  claimFolder(runDir, { kind: 'run' }, flag);
}

/**
 * `dp`: this process is one rank of a data-parallel MeZO run (train/data-parallel.ts); `runDir` is then
 * this rank's folder (`replicaDir`). Only rank 0 evaluates dev, keeps best/ and writes final/ and the
 * report; every rank writes its log, trajectory and checkpoints (identical bytes, checked by the tests).
 */
/**
 * `--resume` of a finished run (one with summary.json, the last file a run writes): a retry loop or a kill
 * that landed after summary.json. Nothing to do and nothing is touched; the recorded summary is the
 * answer, so `--resume` is idempotent (the seed-2 kill batch of "mezo lora" lost a run when this refused).
 */
export function finishedRun(runDir: string, step: number, maxSteps: number, hooks: TrainHooks): TrainSummary {
  const path = join(runDir, 'summary.json');
  const done = readJson<TrainSummary>(path, 'run summary');
  if (typeof done !== 'object' || done === null || done.steps !== step) {
    throw new LmtuneError('CHECKPOINT', `${path}: does not record step ${step}, the checkpoint's`, 'the run folder was edited; start a new run');
  }
  hooks.onMessage?.(`${runDir}: the run is finished (step ${step} of ${maxSteps}); nothing to resume. To train further, start a new run from ${join(runDir, 'final')}`);
  return { ...done, seconds: 0 };
}

export async function train(cfg: TrainConfig, runDir: string, hooks: TrainHooks = {}, resume = false, dp?: DataParallel): Promise<TrainSummary> {
  const t0 = performance.now();
  claimRunFolder(runDir, resume ? '--resume' : '--out');
  const configPath = join(runDir, 'config.json');
  if (!resume) {
    // absolute paths, so `--resume` works from any working directory
    cfg = absolutePaths(cfg);
    if (existsSync(join(runDir, 'checkpoint', 'state.json')) || existsSync(join(runDir, 'checkpoint.old', 'state.json'))) {
      throw new LmtuneError('CONFIG', `${runDir} already holds a run`, 'continue it with --resume, or choose another --out');
    }
    // before config.json: a folder with a config always has its marker
    if (leftCutChat(cfg)) atomicWrite(join(runDir, CHAT_ENCODING_FILE), stableStringify({ replyRoom: REPLY_ROOM }));
    atomicWrite(configPath, stableStringify(cfg));
  } else if (leftCutChat(cfg)) {
    checkChatEncoding(runDir);
  }
  const { model, task, train: trainSet, dev, mode, chat } = await prepare(cfg);
  if (chat) hooks.onMessage?.(chat.message());
  hooks.onMessage?.(`model ${cfg.model}: ${model.cfg.family}, ${model.weights.numParams()} parameters; trainable ${model.trainableNames().reduce((s, n) => s + model.tensor(n).length, 0)} (${cfg.peft.kind}); objective ${mode}; ${trainSet.length} train / ${dev.length} dev examples`);
  const encodeCache = new Map<Example, Encoded>();
  // a MeZO run is its initial weights plus the trajectory: keep the initial adapters (the base model is --model).
  // A resume writes them too when a kill came before they were (saveModelFolder swaps the folder in whole, so
  // it exists complete or not at all); the adapters here are still the seeded initial ones, as the
  // checkpoint is restored below.
  if (cfg.optimizer.name === 'mezo' && cfg.peft.kind !== 'full' && (!resume || !existsSync(join(runDir, 'initial')))) saveModelFolder(model, join(runDir, 'initial'), 'initial');
  const stepper: Stepper = makeStepper(cfg, model, runDir, dp);
  if (dp) {
    // the ranks meet (same command, or refused) and agree on the step to start from before anything is read
    const joins = await dp.join({ config: replicaConfig(cfg), steps: localStartSteps(runDir) });
    const start = commonStartStep(joins.map((j) => j.steps));
    if (selectCheckpoint(runDir, start)) hooks.onMessage?.(`data-parallel rank ${dp.rank}: going back to step ${start}, the newest checkpoint all ${dp.world} ranks have`);
    hooks.onMessage?.(`data-parallel: rank ${dp.rank} of ${dp.world}, starting at step ${start}`);
  }
  const order = new DataOrder(trainSet.length, cfg.seed);
  let state: RunState = { step: 0, data: { epoch: 0, cursor: 0 }, best: null, optimizerScalars: {}, extra: {} };

  if (resume) {
    // everything is validated before a log or the trajectory is cut back
    const ck = readCheckpoint(join(runDir, 'checkpoint'), cfg.maxSteps);
    if (ck) {
      const statePath = join(runDir, 'checkpoint', 'state.json');
      // the last checkpoint is written before final/ and summary.json: only a run with its summary is finished
      if (ck.state.step >= cfg.maxSteps && existsSync(join(runDir, 'summary.json'))) {
        return finishedRun(runDir, ck.state.step, cfg.maxSteps, hooks);
      }
      if (ck.state.data.cursor >= trainSet.length) {
        throw new LmtuneError('CHECKPOINT', `${statePath}: "data.cursor" is ${ck.state.data.cursor}, past the ${trainSet.length} training examples`, 'the state or the --data file changed since the run was checkpointed');
      }
      if (ck.state.step > 0 && ck.optimizer.size === 0 && hasOptimizerState(cfg)) {
        throw new LmtuneError('CHECKPOINT', `${join(runDir, 'checkpoint', 'optimizer.safetensors')}: missing; ${cfg.optimizer.name}${cfg.optimizer.name === 'mezo' ? ` (${cfg.optimizer.zoMethod ?? cfg.optimizer.zoRule})` : ''} keeps state that a resume needs`, 'restore the file, or start the run again');
      }
      for (const [n, t] of ck.trainable) {
        const dst = model.tensor(n);
        if (dst.length !== t.data.length) throw new LmtuneError('CHECKPOINT', `${runDir}/checkpoint: tensor '${n}' has ${t.data.length} values, the model has ${dst.length}`);
        dst.set(t.data);
      }
      stepper.loadState(ck.optimizer, ck.state.optimizerScalars, ck.state.extra);
      state = ck.state;
      order.epoch = state.data.epoch;
      order.cursor = state.data.cursor;
      hooks.onMessage?.(`resuming ${runDir} at step ${state.step}`);
    } else {
      hooks.onMessage?.(`no checkpoint in ${runDir}: starting from step 0`);
    }
    // the trajectory is checked (hash chain, step count) before the logs are cut
    stepper.truncate(state.step);
    // a run resumed at step 0 evaluates step 0 again: drop that line too, or it would appear twice
    truncateJsonl(join(runDir, 'log.jsonl'), state.step);
    truncateJsonl(join(runDir, 'eval.jsonl'), state.step === 0 && cfg.evalEvery > 0 ? -1 : state.step);
    if (dp) truncateJsonl(join(runDir, 'checkpoints.jsonl'), state.step);
  } else {
    for (const f of ['log.jsonl', 'eval.jsonl', 'checkpoints.jsonl']) rmSync(join(runDir, f), { force: true });
  }

  const log = new JsonlWriter(join(runDir, 'log.jsonl'));
  const evalLog = new JsonlWriter(join(runDir, 'eval.jsonl'));
  const sched = schedule(cfg);
  const nextBatch = (): BatchRequest => {
    const idx = order.next(cfg.batchSize);
    // data-parallel: every rank draws the same global batch and keeps its share (padded to the largest)
    if (dp) return buildLossRequest(shareOf(idx, dp.rank, dp.world).map((i) => encodedOf(trainSet[i]!, task, model, encodeCache)), mode, model, shareCapacity(cfg.batchSize, dp.world));
    return buildLossRequest(idx.map((i) => encodedOf(trainSet[i]!, task, model, encodeCache)), mode, model, cfg.batchSize);
  };

  let initialEval: EvalEvent | null = null;
  let finalEval: EvalEvent | null = null;
  const runEval = async (step: number): Promise<EvalEvent> => {
    const { result, devLoss } = await evaluateDev(model, task, dev, mode, cfg.batchSize, encodeCache);
    const better = state.best === null || result.value > state.best.value;
    const ev: EvalEvent = { step, metric: result.metric, value: result.value, devLoss, best: better };
    if (better) {
      state.best = { value: result.value, step };
      saveModelFolder(model, join(runDir, 'best'), 'best');
    }
    evalLog.push(ev);
    evalLog.flush();
    hooks.onEval?.(ev);
    return ev;
  };

  // data-parallel: dev is evaluated by rank 0 only (the weights are the same everywhere)
  const evaluates = !dp || dp.rank === 0;
  if (state.step === 0 && cfg.evalEvery > 0 && evaluates) initialEval = await runEval(0);
  if (resume && state.step >= cfg.maxSteps) {
    // killed after the last checkpoint, before the summary: every step and evaluation is logged; finish
    ({ initialEval, finalEval } = loggedEvals(join(runDir, 'eval.jsonl'), cfg.maxSteps));
  }
  const startStep = state.step;
  const tStart = performance.now();
  let lastLoss = resume && state.step >= cfg.maxSteps ? loggedLastLoss(join(runDir, 'log.jsonl')) : Number.NaN;
  for (let step = state.step; step < cfg.maxSteps; step++) {
    const lr = lrAt(sched, step);
    let r: StepResult;
    try {
      r = await stepper.step(nextBatch, step, lr);
    } catch (e) {
      // MeZO's losses at θ ± εz and its projected gradient, a ZO method's step scalars: name the step
      if (e instanceof LmtuneError && e.code === 'NUMERIC') throw numericStop(step + 1, e.message, e.hint, model, runDir, state.step);
      throw e;
    }
    if (!Number.isFinite(r.loss)) throw numericStop(step + 1, `the training loss is ${r.loss}`, undefined, model, runDir, state.step);
    const last = step + 1 === cfg.maxSteps;
    const evalNow = cfg.evalEvery > 0 && evaluates && ((step + 1) % cfg.evalEvery === 0 || last);
    const saveNow = (step + 1) % cfg.saveEvery === 0 || last;
    // a finite loss does not prove the update was finite (an overflowing step): nothing non-finite
    // reaches best/, checkpoint/ or final/, so the last checkpoint on disk stays a good one
    if (evalNow || saveNow) {
      const bad = nonFiniteWeight(model, model.trainableNames());
      if (bad) throw numericStop(step + 1, `after the update, ${bad}`, undefined, null, runDir, state.step);
    }
    lastLoss = r.loss;
    const done = step + 1 - startStep;
    const elapsed = (performance.now() - tStart) / 1000;
    const sps = done / Math.max(elapsed, 1e-9);
    log.push({ step: step + 1, loss: r.loss, lr, ...r.extra });
    state.step = step + 1;
    state.data = { epoch: order.epoch, cursor: order.cursor };
    faultPoint(`logged:${step + 1}`);
    hooks.onStep?.({ step: step + 1, maxSteps: cfg.maxSteps, loss: r.loss, lr, stepsPerSecond: sps, etaSeconds: (cfg.maxSteps - step - 1) / sps });
    if (evalNow) {
      log.flush();
      finalEval = await runEval(step + 1);
    }
    if (saveNow) {
      log.flush();
      stepper.flush();
      if (dp) keepPreviousCheckpoint(runDir);
      writeCheckpoint(join(runDir, 'checkpoint'), {
        state: { ...state, optimizerScalars: stepper.stateScalars(), extra: stepper.extraState() },
        trainable: trainableSnapshot(model),
        optimizer: stepper.stateTensors(),
      });
      if (dp) appendFileSync(join(runDir, 'checkpoints.jsonl'), JSON.stringify({ step: step + 1, sha256: checkpointDigest(join(runDir, 'checkpoint')) }) + '\n');
    }
    hooks.afterStep?.(step + 1, model);
    faultPoint(`step:${step + 1}`);
  }
  log.flush();
  stepper.flush();
  // data-parallel replicas: their last checkpoint holds the same weights as rank 0's final/
  const finalDir = evaluates ? join(runDir, 'final') : join(runDir, 'checkpoint');
  if (evaluates) saveModelFolder(model, finalDir, 'final');
  const summary: TrainSummary = {
    runDir,
    steps: state.step,
    finalLoss: lastLoss,
    initialEval,
    finalEval,
    best: state.best,
    finalDir,
    seconds: (performance.now() - t0) / 1000,
    examples: { train: trainSet.length, dev: dev.length },
    ...(chat ? { chat: chatSummary(chat.report) } : {}),
  };
  // summary.json last: it marks the run finished (resume then only returns it), so everything a
  // finished run has exists before it (a kill between the two left a run without report.html)
  if (evaluates) writeRunReport(runDir, cfg, { sizes: summary.examples ?? null, seconds: summary.seconds });
  faultPoint('finishing');
  atomicWrite(join(runDir, 'summary.json'), stableStringify({ ...summary, seconds: undefined }));
  return summary;
}

function chatSummary(r: ChatDataReport): NonNullable<TrainSummary['chat']> {
  return { rows: r.rows, truncated: r.truncated, skipped: r.skipped.length, maxLength: r.maxLength };
}

/** the config with absolute model, data, dev and task-file paths (as a run's config.json stores it) */
export function absolutePaths(cfg: TrainConfig): TrainConfig {
  return { ...cfg, model: resolve(cfg.model), data: resolve(cfg.data), dev: cfg.dev ? resolve(cfg.dev) : null, task: existsSync(cfg.task) ? resolve(cfg.task) : cfg.task };
}

export function readRunConfig(runDir: string): TrainConfig {
  const p = join(runDir, 'config.json');
  if (!existsSync(p)) throw new LmtuneError('IO', `${runDir}: not a run folder (no config.json)`, 'pass the --out folder of an earlier `lmtune train`');
  return validateRunConfig(readJson(p, 'run config'), p);
}

/** optimizers whose checkpoint must carry optimizer.safetensors once a step was taken */
function hasOptimizerState(cfg: TrainConfig): boolean {
  const o = cfg.optimizer;
  if (o.name !== 'mezo') return o.name !== 'sgd';
  // ZO methods that keep moments or a Hessian estimate between steps
  const method = o.zoMethod ?? o.zoRule;
  return method === 'momentum' || method === 'adam' || method === 'hizoo';
}
