/**
 * A fine-tuning session as the page's worker runs it: a model from a Folder, data from text, zero-shot
 * evaluation, and a training run: MeZO on LoRA adapters, full-parameter MeZO, or LoRA + Adam (the
 * engine's backward graphs). Core code only (no DOM, no Node), so the same session runs in a Web Worker
 * and in Node's tests.
 *
 * A run is a `lmtune train` run (a TrainConfig) followed step for step: data order, step seeds, the
 * reference decay filter, the lr schedule, the trajectory's sealed lines, Adam's state keyed by parameter
 * name. So it can start from a Node run's checkpoint folder (`loadRun`) and hand its own checkpoint back
 * in the run-folder layout (`runFiles`) for `lmtune train --resume`; a MeZO trajectory recorded here
 * replays with `lmtune mezo replay` to the same bits.
 */
import { LmtuneError } from '../util/errors.ts';
import { MemoryFolder, MemorySink, type Folder } from '../util/folder.ts';
import { stableStringify } from '../util/json.ts';
import { adapterFiles, TOKENIZER_FILES } from '../models/index.ts';
import { asLanguageModel, TransformerModel } from '../heads/model.ts';
import { expectedTensors, parseModelConfig } from '../models/config.ts';
import { planCheckpoint } from '../models/checkpoint.ts';
import { parseSafetensors, safetensorsBytes, serializeSafetensors } from '../models/safetensors.ts';
import { attachPeft } from '../peft/index.ts';
import type { LoraSpec, PeftSpec } from '../peft/spec.ts';
import { BUILTIN_TASKS, detectFormat, evaluate, getBuiltinTask, mezoSplit, parseRecords, type Example, type Task } from '../tasks/index.ts';
import { MezoOptimizer } from '../optim/mezo.ts';
import { Adam } from '../optim/adam.ts';
import { clipGradNorm, globalGradNorm } from '../optim/clip.ts';
import { decayAllButBiasAndNorm, mezoReferenceDecayFilter } from '../optim/decay.ts';
import { mezoStepSeed } from '../optim/zstream.ts';
import { lrAt, type Schedule } from '../optim/schedule.ts';
import { scanTrajectory, sealHeader, sealRecord, stepRecord, trajectoryHeader } from '../optim/trajectory.ts';
import { svagSdeTime } from '../scaling/svag.ts';
import { buildLossRequest, defaultObjective, encodeExample, lossUnits, type Encoded, type ObjectiveMode } from '../train/batches.ts';
import type { TrainConfig } from '../train/options.ts';
import { optimizerDefaults } from '../optim/options.ts';
import { DataOrder } from '../train/data-order.ts';
import type { RunState } from '../train/checkpoint.ts';
import { validateRunConfig, validateRunState } from '../train/validate.ts';

export interface ModelInfo {
  label: string;
  family: string;
  params: number;
  /** the weights' bytes in memory (float32) */
  weightBytes: number;
  files: string[];
}

/** what the page trains: MeZO on LoRA adapters, MeZO on every weight, or LoRA adapters with Adam */
export type Method = 'mezo-lora' | 'mezo-full' | 'adam-lora';
export const METHODS: readonly Method[] = ['mezo-lora', 'mezo-full', 'adam-lora'];

export interface TuneSettings {
  method: Method;
  steps: number;
  batchSize: number;
  lr: number;
  /** MeZO's perturbation size ε (unused by Adam) */
  eps: number;
  seed: number;
  loraRank: number;
  loraAlpha: number;
  /** evaluate on dev every this many steps (0: only at the end) */
  evalEvery: number;
  schedule: 'constant' | 'linear' | 'cosine';
}

export const DEFAULT_SETTINGS: TuneSettings = { method: 'mezo-lora', steps: 200, batchSize: 16, lr: 5e-3, eps: 1e-2, seed: 0, loraRank: 8, loraAlpha: 16, evalEvery: 50, schedule: 'linear' };

export interface ScoredExample {
  text: string;
  gold: string;
  predicted: string;
  right: boolean;
  /** log-probability score of each label word */
  scores: { label: string; score: number }[];
}

export interface DevEval {
  step: number;
  /** the task's headline metric (accuracy, F1, …) */
  metric: string;
  accuracy: number;
  devLoss: number;
  n: number;
  /** demonstrations in each prompt (0: zero-shot) */
  shots: number;
  examples: ScoredExample[];
}

export interface StepEvent {
  step: number;
  steps: number;
  loss: number;
  /** MeZO: the step's projected gradient */
  projectedGrad?: number;
  /** Adam: the gradient's global norm */
  gradNorm?: number;
  lr: number;
  /** this step's wall time (both forward passes and the update, or forward + backward + update) */
  ms: number;
  stepsPerSecond: number;
}

export interface TrainHooks {
  onStep?(e: StepEvent): void;
  onEval?(e: DevEval): void;
  /** awaited between steps: where pause holds the loop and stop is noticed */
  between?(): Promise<'go' | 'stop'>;
}

/** a run loaded from a checkpoint folder, before it continues */
export interface RunInfo {
  label: string;
  method: Method;
  step: number;
  maxSteps: number;
  task: string;
  /** where the run read its model and data (as its config.json names them) */
  model: string;
  data: string;
  settings: TuneSettings;
  /** the logged training loss up to the checkpoint, for the curve */
  losses: { step: number; loss: number }[];
  /** the logged dev evaluations up to the checkpoint (metric value and dev loss), for the dev curve */
  evals: { step: number; metric: string; accuracy: number; devLoss: number }[];
}

/** the text of an example, for showing it */
function exampleText(ex: Example): string {
  const f = ex.fields;
  return f.sentence ?? f.text ?? Object.values(f).join(' / ');
}

interface Run {
  cfg: TrainConfig;
  method: Method;
  step: number;
  order: DataOrder;
  mezo: MezoOptimizer | null;
  adam: Adam | null;
  /** Σ lr² so far (Adam's SDE time, as `lmtune train` logs it) */
  sdeTime: number;
  best: { value: number; step: number } | null;
  trajectory: string[];
  lastChk: string;
  log: string[];
  evalLog: string[];
  initialAdapters: Uint8Array | null;
}

/** a checkpoint read by `loadRun`, applied when the run continues */
interface PendingRun {
  info: RunInfo;
  cfg: TrainConfig;
  state: RunState;
  trainable: Map<string, Float32Array>;
  optimizer: Map<string, Float32Array>;
  trajectory: string[];
  lastChk: string;
  log: string[];
  evalLog: string[];
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function methodOf(cfg: TrainConfig, where: string): Method {
  const o = cfg.optimizer;
  const p = cfg.peft;
  const m: Method | null = o.name === 'mezo' ? (p.kind === 'lora' ? 'mezo-lora' : p.kind === 'full' && !p.only ? 'mezo-full' : null) : (o.name === 'adam' || o.name === 'adamw') && p.kind === 'lora' ? 'adam-lora' : null;
  if (!m) throw new LmtuneError('UNSUPPORTED', `${where}: a ${o.name} run with ${p.kind === 'full' && p.only ? `--trainable ${p.only}` : `--peft ${p.kind}`}; the page continues MeZO (LoRA or full) and LoRA + Adam/AdamW runs`, 'continue this run in Node with `lmtune train --resume`');
  const zo = o.zoMethod ?? o.zoRule;
  const unsupported: string[] = [];
  if (o.name === 'mezo' && (zo !== 'sgd' || o.zoSamples !== 1 || o.zoObjective !== 'ce')) unsupported.push(`MeZO with --zo-method ${zo}, --zo-samples ${o.zoSamples}, --zo-objective ${o.zoObjective} (the page runs sgd, 1, ce)`);
  if (cfg.svag !== 1) unsupported.push(`--svag ${cfg.svag}`);
  if (cfg.gradAccum !== 1) unsupported.push(`--grad-accum ${cfg.gradAccum}`);
  if (cfg.task === 'chat' || !BUILTIN_TASKS.some((t) => t.name === cfg.task)) unsupported.push(`--task ${cfg.task} (the page has the built-in tasks)`);
  if (cfg.maxLength !== null) unsupported.push(`--max-length ${cfg.maxLength}`);
  if (cfg.objective !== 'auto') unsupported.push(`--objective ${cfg.objective}`);
  if (unsupported.length) throw new LmtuneError('UNSUPPORTED', `${where}: the page cannot continue this run: ${unsupported.join('; ')}`, 'continue it in Node with `lmtune train --resume`');
  return m;
}

/** the settings a run config describes, as the page's form shows them */
function settingsOf(cfg: TrainConfig, method: Method): TuneSettings {
  const lora = cfg.peft.kind === 'lora' ? cfg.peft : null;
  return {
    method,
    steps: cfg.maxSteps,
    batchSize: cfg.batchSize,
    lr: cfg.optimizer.lr,
    eps: cfg.optimizer.zoEps,
    seed: cfg.seed,
    loraRank: lora?.rank ?? DEFAULT_SETTINGS.loraRank,
    loraAlpha: lora?.alpha ?? DEFAULT_SETTINGS.loraAlpha,
    evalEvery: cfg.evalEvery,
    schedule: cfg.schedule,
  };
}

function scheduleOf(cfg: TrainConfig): Schedule {
  const lr = cfg.optimizer.lr;
  if (cfg.schedule === 'constant') return { kind: 'constant', lr };
  return { kind: cfg.schedule, lr, warmupSteps: cfg.warmupSteps, totalSteps: cfg.maxSteps };
}

/** the lines of a JSONL log up to `step` (a torn or foreign line is left out: the log is for the curves) */
function logLines(bytes: Uint8Array | undefined, step: number): string[] {
  if (!bytes) return [];
  return dec
    .decode(bytes)
    .split('\n')
    .filter((l) => {
      try {
        const o = JSON.parse(l) as { step?: unknown };
        return typeof o.step === 'number' && o.step <= step;
      } catch {
        return false;
      }
    });
}

/**
 * The memory a model needs in a tab, from its config.json alone (before any weight is read): float32
 * weights held by the worker plus their copy in onnxruntime's wasm heap, which a wasm32 build caps at
 * 4 GiB. Throws a message with the numbers when it does not fit `budgetBytes`.
 */
export function checkModelFits(label: string, configText: string, budgetBytes: number, wasmLimitBytes = 4 * 1024 ** 3): { params: number; needBytes: number } {
  let raw: unknown;
  try {
    raw = JSON.parse(configText);
  } catch (e) {
    throw new LmtuneError('CONFIG', `${label}/config.json: not valid JSON (${(e as Error).message})`);
  }
  const cfg = parseModelConfig(raw, `${label}/config.json`);
  const params = expectedTensors(cfg)
    .filter((t) => !t.tiedTo)
    .reduce((s, t) => s + t.shape.reduce((p, d) => p * d, 1), 0);
  const weights = 4 * params;
  const needBytes = 2 * weights;
  const gb = (b: number): string => (b / 1024 ** 3).toFixed(b < 10 * 1024 ** 3 ? 2 : 0);
  const size = params >= 1e9 ? `${(params / 1e9).toFixed(1)}B` : `${(params / 1e6).toFixed(1)}M`;
  const what = `${label}: a ${cfg.family} model of about ${size} parameters (config.json: ${cfg.numLayers} layers, hidden size ${cfg.hiddenSize}, vocabulary ${cfg.vocabSize})`;
  if (weights > 0.9 * wasmLimitBytes) {
    throw new LmtuneError('RESOURCE', `${what} needs ${gb(weights)} GB for its float32 weights, more than onnxruntime's wasm heap can hold (at most ${gb(wasmLimitBytes)} GB in a 32-bit wasm build); nothing was loaded`, 'fine-tune a smaller model in the page (up to roughly 500M parameters), or this one with the CLI');
  }
  if (needBytes > budgetBytes) {
    throw new LmtuneError('RESOURCE', `${what} needs about ${gb(needBytes)} GB in this tab (${gb(weights)} GB of float32 weights, and the same again in onnxruntime's wasm heap), more than the ${gb(budgetBytes)} GB this tab may use; nothing was loaded`, 'fine-tune a smaller model in the page, or this one with the CLI');
  }
  return { params, needBytes };
}

export class TuneSession {
  model: TransformerModel | null = null;
  task: Task = getBuiltinTask('sst2');
  train: Example[] = [];
  dev: Example[] = [];
  /** what a run's config.json names as its model and data (the page has no paths: names as loaded) */
  modelName = '';
  dataNames: { train: string; dev: string } = { train: '', dev: '' };
  /** the compute threads the model runs on (written to a run's config.json, so a resume runs the same) */
  private threads: number | null = null;
  private tokenizerFiles = new Map<string, Uint8Array>();
  private encodeCache = new Map<Example, Encoded>();
  private run: Run | null = null;
  private pending: PendingRun | null = null;
  /** a full-parameter run changed the base weights in place: the next run needs them as loaded */
  private baseChanged = false;

  /** the built-in tasks the page offers: those scored by comparing candidates (classification, multiple choice) */
  static tasks(): { name: string; kind: string; labels: string[] }[] {
    return BUILTIN_TASKS.filter((t) => t.kind !== 'generation' && t.causal).map((t) => ({ name: t.name, kind: t.kind, labels: [...t.labelWords] }));
  }

  setTask(name: string): void {
    const t = TuneSession.tasks().find((x) => x.name === name);
    if (!t) throw new LmtuneError('CONFIG', `task '${name}' is not one the page runs`, `choose one of ${TuneSession.tasks().map((x) => x.name).join(', ')}`);
    if (this.task.name === name) return;
    this.task = getBuiltinTask(name);
    // examples parsed for another task do not carry over
    this.train = [];
    this.dev = [];
    this.dataNames = { train: '', dev: '' };
    this.encodeCache = new Map();
  }

  async loadModel(folder: Folder, threads?: number, name?: string): Promise<ModelInfo> {
    const files = folder.list();
    if (!files.includes('config.json')) throw new LmtuneError('IO', `${folder.label}: no config.json: not a Hugging Face model folder`, 'pick the folder that holds config.json, the tokenizer and the *.safetensors weights');
    if (!files.some((f) => f.endsWith('.safetensors'))) {
      throw new LmtuneError('IO', `${folder.label}: no weights (*.safetensors) among ${files.length} files (${files.slice(0, 8).join(', ')}${files.length > 8 ? ', …' : ''})`, 'pick a folder with model.safetensors (or sharded model-0000x-of-0000y.safetensors + model.safetensors.index.json); PyTorch .bin files are not read');
    }
    const m = await TransformerModel.load(folder, { ...(threads ? { threads } : {}), sharedWeights: false });
    if (m.kind !== 'causal') throw new LmtuneError('UNSUPPORTED', `${folder.label}: a ${m.cfg.family} (masked LM) model; the page fine-tunes causal LMs`, 'pick a GPT-2, Llama, OPT or other causal LM folder');
    if (!m.tokenizer) throw new LmtuneError('TOKENIZER', `${folder.label}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt)`, 'copy the tokenizer files next to config.json');
    // ids past the embedding's rows would index nothing: the tokenizer belongs to another model
    const rows = m.cfg.vocabSize;
    if (m.tokenizer.vocabSize > rows) {
      throw new LmtuneError('TOKENIZER', `${folder.label}: the tokenizer has ${m.tokenizer.vocabSize} token ids but the model's embedding has ${rows} rows (config.json vocab_size ${rows}): the tokenizer files come from another model`, 'copy the tokenizer files that came with these weights');
    }
    this.model = m;
    this.threads = threads ?? null;
    this.modelName = name ?? folder.label;
    this.tokenizerFiles = new Map(TOKENIZER_FILES.filter((f) => folder.exists(f)).map((f) => [f, new Uint8Array(folder.size(f))] as const));
    for (const [f, b] of this.tokenizerFiles) folder.readInto(f, 0, b);
    this.encodeCache = new Map();
    this.run = null;
    this.pending = null;
    this.baseChanged = false;
    return { label: folder.label, family: m.cfg.family, params: m.weights.numParams(), weightBytes: 4 * m.weights.numParams(), files };
  }

  /** Examples of a JSONL/TSV/CSV text, validated as the CLI does (errors name `name:line`). */
  parseData(name: string, text: string): Example[] {
    const examples = parseRecords(text, name, detectFormat(name, text)).flatMap((r) => this.task.parse(r));
    if (examples.length === 0) throw new LmtuneError('DATA', `${name}: no examples`);
    return examples;
  }

  setData(which: 'train' | 'dev', examples: Example[], name = ''): void {
    this[which] = examples;
    this.dataNames[which] = name;
    this.encodeCache = new Map();
  }

  private requireModel(): TransformerModel {
    if (!this.model) throw new LmtuneError('CONFIG', 'load a model first');
    return this.model;
  }

  private mode(): ObjectiveMode {
    return defaultObjective(this.task, this.requireModel());
  }

  private encoded(e: Example): Encoded {
    let enc = this.encodeCache.get(e);
    if (!enc) {
      enc = encodeExample(this.task, e, this.requireModel());
      this.encodeCache.set(e, enc);
    }
    return enc;
  }

  /**
   * the task's metric (k-shot with `shots` demonstrations drawn from the training data, as `lmtune eval
   * --shots k --train FILE`) and the dev loss (zero-shot, the mean over examples, as `lmtune train` logs
   * it), plus the first `show` examples scored
   */
  async evaluateDev(step: number, limit: number, batchSize: number, shots = 0, show = 6, devSet: readonly Example[] = this.dev): Promise<DevEval> {
    const model = this.requireModel();
    if (!devSet.length) throw new LmtuneError('CONFIG', 'load dev data first');
    const dev = devSet.slice(0, limit);
    if (shots > 0 && !this.train.length) throw new LmtuneError('CONFIG', `${shots}-shot evaluation draws its demonstrations from the training data: load training data first`);
    const result = await evaluate(asLanguageModel(model), this.task, dev, { batchSize: 8, ...(shots > 0 ? { shots, demoPool: this.train } : {}) });
    let total = 0;
    let units = 0;
    for (let s = 0; s < dev.length; s += batchSize) {
      const req = buildLossRequest(dev.slice(s, s + batchSize).map((e) => this.encoded(e)), this.mode(), model, batchSize);
      const r = await model.loss(req);
      const u = lossUnits(req);
      total += r.loss * u;
      units += u;
    }
    const words = this.task.labelWords;
    const examples = result.predictions.slice(0, show).map((p, i): ScoredExample => {
      const pred = typeof p.prediction === 'number' ? p.prediction : -1;
      const gold = (p.gold as readonly number[])[0] ?? -1;
      const cands = dev[i]!.candidates;
      const name = (c: number): string => words[c] ?? cands?.[c] ?? String(c);
      return {
        text: exampleText(dev[i]!),
        gold: name(gold),
        predicted: name(pred),
        right: p.score === 1,
        scores: (p.candidateScores ?? []).map((score, c) => ({ label: name(c), score })),
      };
    });
    return { step, metric: result.metric, accuracy: result.value, devLoss: total / Math.max(1, units), n: dev.length, shots, examples };
  }

  /** the run config `lmtune train` would have written for these settings */
  runConfig(s: TuneSettings, devLimit: number): TrainConfig {
    const mezo = s.method !== 'adam-lora';
    const peft: PeftSpec = s.method === 'mezo-full' ? { kind: 'full' } : { kind: 'lora', rank: s.loraRank, alpha: s.loraAlpha, dropout: 0, targets: [] };
    return {
      version: 1,
      model: this.modelName || 'model',
      task: this.task.name,
      data: this.dataNames.train || 'train.jsonl',
      dev: this.dataNames.dev || 'dev.jsonl',
      numTrain: null,
      numDev: 64,
      devLimit: Math.max(1, devLimit),
      // the schema's defaults (optim/options.ts) for everything the page does not set
      optimizer: mezo ? { ...optimizerDefaults('mezo'), name: 'mezo', lr: s.lr, zoEps: s.eps } : { ...optimizerDefaults('adam'), name: 'adam', lr: s.lr, zoEps: s.eps },
      schedule: s.schedule,
      warmupSteps: 0,
      maxSteps: s.steps,
      batchSize: s.batchSize,
      gradAccum: 1,
      clipNorm: null,
      // the page evaluates at the end when asked for 0; Node's 0 would mean never
      evalEvery: s.evalEvery > 0 ? s.evalEvery : s.steps,
      saveEvery: s.steps,
      seed: s.seed,
      peft,
      objective: 'auto',
      svag: 1,
      maxLength: null,
      threads: this.threads,
    };
  }

  /** a fresh run (seeded adapters, step 0) of `s`; returns the steps done (fewer than asked when stopped) */
  async fineTune(s: TuneSettings, devLimit: number, hooks: TrainHooks = {}): Promise<number> {
    this.requireModel();
    if (!this.train.length) throw new LmtuneError('CONFIG', 'load training data first');
    this.pending = null;
    const cfg = this.runConfig(s, devLimit);
    const run = await this.startRun(cfg, methodOf(cfg, 'the page\'s settings'), this.train.length);
    if (run.mezo) {
      const head = sealHeader(trajectoryHeader(run.mezo));
      run.trajectory = [head.line];
      run.lastChk = head.chk;
    }
    return this.runSteps(run, this.train, this.dev.slice(0, cfg.devLimit), hooks);
  }

  /** adapters attached (seeded) and the optimizer made, as `lmtune train` prepares a run */
  private async startRun(cfg: TrainConfig, method: Method, n: number, restoresAll = false): Promise<Run> {
    const model = this.requireModel();
    // a new run starts from the loaded weights (a LoRA run's base, a MeZO trajectory's start); only a
    // full-parameter checkpoint, which sets every weight, may follow a full-parameter run
    if (this.baseChanged && !restoresAll) throw new LmtuneError('CONFIG', 'the last run was full-parameter MeZO, which changed the model\'s weights in place', 'load the model again to start a new run from its original weights (download the fine-tuned one first)');
    if (method === 'mezo-full') this.baseChanged = true;
    await attachPeft(model, cfg.peft, cfg.seed);
    // a MeZO-LoRA run is its initial adapters plus the trajectory: keep the initial ones as bytes now
    const initialAdapters = method === 'mezo-lora' ? this.adapterBytes().weights : null;
    const o = cfg.optimizer;
    const params = model.trainableParams();
    const run: Run = {
      cfg,
      method,
      step: 0,
      order: new DataOrder(n, cfg.seed),
      mezo: o.name === 'mezo' ? new MezoOptimizer(params, { eps: o.zoEps, weightDecay: o.weightDecay, decayFilter: mezoReferenceDecayFilter, distribution: o.zoDistribution, nSpsa: 1, rule: { kind: 'sgd' } }) : null,
      adam: o.name === 'mezo' ? null : new Adam({ beta1: o.beta1, beta2: o.beta2, eps: o.eps, epsMode: o.epsMode, weightDecay: o.weightDecay, weightDecayMode: o.name === 'adamw' ? 'decoupled' : 'coupled', decayFilter: decayAllButBiasAndNorm }),
      sdeTime: 0,
      best: null,
      trajectory: [],
      lastChk: '',
      log: [],
      evalLog: [],
      initialAdapters,
    };
    this.run = run;
    return run;
  }

  /**
   * Reads a run folder's files (`config.json`, `checkpoint/` or `checkpoint.old/`, `trajectory.jsonl` for
   * MeZO, the logs), keyed by their path in the folder, and checks them against the loaded model; the
   * run continues with `continueRun` once its data is loaded.
   */
  loadRun(label: string, files: ReadonlyMap<string, Uint8Array>): RunInfo {
    const model = this.requireModel();
    const json = (name: string, what: string): unknown => {
      const b = files.get(name);
      if (!b) throw new LmtuneError('IO', `${label}: no ${name}: not an lmtune run folder`, 'pick the --out folder of `lmtune train` (it holds config.json and checkpoint/), or a run the page downloaded and unpacked');
      try {
        return JSON.parse(dec.decode(b));
      } catch (e) {
        throw new LmtuneError('CHECKPOINT', `${label}/${name}: not valid JSON (${(e as Error).message}) in this ${what}`);
      }
    };
    const cfg = validateRunConfig(json('config.json', 'run config'), `${label}/config.json`);
    const method = methodOf(cfg, `${label}/config.json`);
    const ck = files.has('checkpoint/state.json') ? 'checkpoint' : files.has('checkpoint.old/state.json') ? 'checkpoint.old' : null;
    if (!ck) throw new LmtuneError('CHECKPOINT', `${label}: no checkpoint/state.json: the run has not checkpointed yet`, 'let it run to its first --save-every step, or continue it in Node');
    const state = validateRunState(json(`${ck}/state.json`, 'checkpoint state'), `${label}/${ck}/state.json`, cfg.maxSteps);
    if (state.step >= cfg.maxSteps) throw new LmtuneError('CONFIG', `${label}: the run is finished (step ${state.step} of ${cfg.maxSteps}); there is nothing to continue`, 'start a new run from its final/ folder');
    const tensors = (name: string): Map<string, Float32Array> => {
      if (!files.has(name)) return new Map();
      return new Map([...parseSafetensors(new MemoryFolder(label, new Map([[name, files.get(name)!]])), name).tensors].map(([k, t]) => [k, t.data as Float32Array]));
    };
    const trainable = tensors(`${ck}/trainable.safetensors`);
    if (!trainable.size) throw new LmtuneError('CHECKPOINT', `${label}/${ck}/trainable.safetensors: missing`, 'restore the file, or start the run again');
    const optimizer = tensors(`${ck}/optimizer.safetensors`);
    if (method === 'adam-lora' && state.step > 0 && optimizer.size === 0) throw new LmtuneError('CHECKPOINT', `${label}/${ck}/optimizer.safetensors: missing; Adam keeps state that continuing needs`, 'restore the file, or start the run again');
    // the checkpoint's tensors must be the model's (base weights for full MeZO; adapters are checked when attached)
    if (method === 'mezo-full') {
      for (const [n, t] of trainable) {
        if (!model.weights.has(n)) throw new LmtuneError('CHECKPOINT', `${label}/${ck}/trainable.safetensors: tensor '${n}' is not a weight of the loaded model (${model.cfg.family})`, 'load the model the run was started from');
        if (model.weights.get(n).data.length !== t.length) throw new LmtuneError('CHECKPOINT', `${label}/${ck}/trainable.safetensors: tensor '${n}' has ${t.length} values, the loaded model's has ${model.weights.get(n).data.length}`, 'load the model the run was started from');
      }
    }
    let trajectory: string[] = [];
    let lastChk = '';
    if (method !== 'adam-lora') {
      const tb = files.get('trajectory.jsonl');
      if (!tb) throw new LmtuneError('CHECKPOINT', `${label}: no trajectory.jsonl: a MeZO run continues its trajectory`, 'restore the file from the run folder');
      const scan = scanTrajectory(tb, `${label}/trajectory.jsonl`);
      const recs = scan.trajectory?.records.length ?? 0;
      if (recs < state.step) throw new LmtuneError('CHECKPOINT', `${label}/trajectory.jsonl: ${recs} steps logged, the checkpoint is at step ${state.step}`, 'the trajectory is shorter than the checkpoint: restore it');
      trajectory = dec.decode(tb.subarray(0, scan.ends[state.step]!)).split('\n').filter(Boolean);
      lastChk = scan.chks[state.step]!;
    }
    const log = logLines(files.get('log.jsonl'), state.step);
    const evalLog = logLines(files.get('eval.jsonl'), state.step);
    const info: RunInfo = {
      label,
      method,
      step: state.step,
      maxSteps: cfg.maxSteps,
      task: cfg.task,
      model: cfg.model,
      data: cfg.data,
      settings: settingsOf(cfg, method),
      losses: log.map((l) => JSON.parse(l) as { step: number; loss: number }).map((o) => ({ step: o.step, loss: o.loss })),
      evals: evalLog.map((l) => JSON.parse(l) as { step: number; metric?: string; value: number; devLoss: number }).map((o) => ({ step: o.step, metric: o.metric ?? 'accuracy', accuracy: o.value, devLoss: o.devLoss })),
    };
    this.pending = { info, cfg, state, trainable, optimizer, trajectory, lastChk, log, evalLog };
    if (this.task.name !== cfg.task) this.setTask(cfg.task);
    return info;
  }

  /** the run `loadRun` read, if it has not continued yet */
  pendingRun(): RunInfo | null {
    return this.pending?.info ?? null;
  }

  /** continues the run `loadRun` read, on the loaded data, to its config's last step */
  async continueRun(hooks: TrainHooks = {}): Promise<number> {
    const p = this.pending;
    if (!p) throw new LmtuneError('CONFIG', 'no run to continue: pick a run folder first');
    const { cfg, state, info } = p;
    const model = this.requireModel();
    if (!this.train.length) throw new LmtuneError('CONFIG', `load the run's training data first (${cfg.data})`);
    let train = this.train;
    let dev = this.dev;
    if (cfg.dev === null) {
      // the run drew its dev split from --data (seeded): draw the same split from the loaded training file
      const split = mezoSplit(train, { numTrain: cfg.numTrain ?? Math.max(1, train.length - cfg.numDev), numDev: cfg.numDev, seed: cfg.seed });
      train = split.train;
      dev = split.dev;
    } else {
      if (!dev.length) throw new LmtuneError('CONFIG', `load the run's dev data first (${cfg.dev})`);
      if (cfg.numTrain) train = train.slice(0, cfg.numTrain);
    }
    if (state.data.cursor >= train.length) throw new LmtuneError('CHECKPOINT', `${info.label}/checkpoint/state.json: "data.cursor" is ${state.data.cursor}, past the ${train.length} training examples loaded`, `load the run's training data (${cfg.data})`);
    const run = await this.startRun(cfg, info.method, train.length, info.method === 'mezo-full');
    for (const [n, t] of p.trainable) {
      if (!model.trainableNames().includes(n)) throw new LmtuneError('CHECKPOINT', `${info.label}/checkpoint/trainable.safetensors: tensor '${n}' is not trainable here (${info.method} on ${model.cfg.family})`, 'load the model the run was started from');
      const dst = model.tensor(n);
      if (dst.length !== t.length) throw new LmtuneError('CHECKPOINT', `${info.label}/checkpoint/trainable.safetensors: tensor '${n}' has ${t.length} values, the model has ${dst.length}`, 'load the model the run was started from');
      dst.set(t);
    }
    if (run.adam && (p.optimizer.size || Object.keys(state.optimizerScalars).length)) run.adam.loadState(p.optimizer, state.optimizerScalars);
    run.step = state.step;
    run.order.epoch = state.data.epoch;
    run.order.cursor = state.data.cursor;
    run.best = state.best;
    run.sdeTime = state.extra.sde_time ?? 0;
    run.trajectory = p.trajectory;
    run.lastChk = p.lastChk;
    run.log = p.log;
    run.evalLog = p.evalLog;
    this.pending = null;
    return this.runSteps(run, train, dev.slice(0, cfg.devLimit), hooks);
  }

  /** steps from run.step to the config's last, as src/train/loop.ts and stepper.ts take them */
  private async runSteps(run: Run, train: readonly Example[], dev: readonly Example[], hooks: TrainHooks): Promise<number> {
    const model = this.requireModel();
    const cfg = run.cfg;
    const sched = scheduleOf(cfg);
    const mode = this.mode();
    const params = model.trainableParams();
    const names = params.map((p) => p.name);
    const o = cfg.optimizer;
    const sdeCfg = { optimizer: o.name === 'adamw' ? ('adamw' as const) : ('adam' as const), lr: o.lr, batch: cfg.batchSize, beta1: o.beta1, beta2: o.beta2, eps: o.eps, epsPlacement: o.epsMode === 'inside' ? ('insideSqrt' as const) : ('outsideSqrt' as const), weightDecay: o.weightDecay, wdMode: o.name === 'adamw' ? ('decoupledTimesLr' as const) : ('coupledL2' as const) };
    const start = run.step;
    let busyMs = 0;
    for (let step = run.step; step < cfg.maxSteps; step++) {
      if ((await hooks.between?.()) === 'stop') break;
      const t0 = performance.now();
      const lr = lrAt(sched, step);
      const req = buildLossRequest(run.order.next(cfg.batchSize).map((i) => this.encoded(train[i]!)), mode, model, cfg.batchSize);
      let loss: number;
      let extra: Record<string, number>;
      if (run.mezo) {
        const r = await run.mezo.step(mezoStepSeed(cfg.seed, step), async () => (await model.loss(req)).loss, lr);
        const sealed = sealRecord(stepRecord(run.mezo, step, r, lr), run.lastChk);
        run.trajectory.push(sealed.line);
        run.lastChk = sealed.chk!;
        loss = r.lossPlus;
        extra = { projected_grad: r.projectedGrad, loss_minus: r.lossMinus };
      } else {
        const r = await model.loss(req, names);
        loss = r.loss;
        const grads = r.grads!;
        const norm = Number.isFinite(loss) ? (cfg.clipNorm ? clipGradNorm(grads, cfg.clipNorm, { errorIfNonfinite: false }) : globalGradNorm(grads)) : Number.NaN;
        if (Number.isFinite(norm)) {
          run.adam!.step(params, grads, lr);
          run.sdeTime += svagSdeTime({ ...sdeCfg, lr }, 1);
        } else loss = Number.NaN;
        extra = { grad_norm: norm, sde_time: run.sdeTime };
      }
      if (!Number.isFinite(loss)) throw new LmtuneError('NUMERIC', `step ${step + 1}: the training loss is ${loss}`, 'lower the learning rate and start again');
      run.step = step + 1;
      run.log.push(JSON.stringify({ step: step + 1, loss, lr, ...extra }));
      const ms = performance.now() - t0;
      busyMs += ms;
      hooks.onStep?.({
        step: run.step,
        steps: cfg.maxSteps,
        loss,
        lr,
        ms,
        stepsPerSecond: (1000 * (run.step - start)) / busyMs,
        ...(run.mezo ? { projectedGrad: extra.projected_grad! } : { gradNorm: extra.grad_norm! }),
      });
      const last = run.step === cfg.maxSteps;
      if (cfg.evalEvery > 0 && run.step % cfg.evalEvery === 0 && !last) await this.logEval(run, dev, hooks);
    }
    if (run.step > start) await this.logEval(run, dev, hooks);
    return run.step - start;
  }

  private async logEval(run: Run, dev: readonly Example[], hooks: TrainHooks): Promise<void> {
    const ev = await this.evaluateDev(run.step, run.cfg.devLimit, run.cfg.batchSize, 0, 6, dev);
    const better = run.best === null || ev.accuracy > run.best.value;
    if (better) run.best = { value: ev.accuracy, step: run.step };
    run.evalLog.push(JSON.stringify({ step: run.step, metric: ev.metric, value: ev.accuracy, devLoss: ev.devLoss, best: better }));
    hooks.onEval?.(ev);
  }

  private adapterBytes(): { config: Uint8Array; weights: Uint8Array } {
    const model = this.requireModel();
    if (!model.adapters || !model.peft || model.peft.kind !== 'lora') throw new LmtuneError('CONFIG', 'no adapters yet: fine-tune first');
    const out: Record<string, Uint8Array> = {};
    for (const f of adapterFiles(model.peft as LoraSpec, model.adapters)) {
      const sink = new MemorySink();
      f.write(sink);
      out[f.name] = sink.bytes();
    }
    return { config: out['adapter_config.json']!, weights: out['adapter_model.safetensors']! };
  }

  /** the full model as an HF folder (config.json, model.safetensors, the tokenizer's files) */
  private modelBytes(): Record<string, Uint8Array> {
    const model = this.requireModel();
    const plan = planCheckpoint('the download', { ...model.cfg.raw } as Record<string, unknown>, new Map(model.weights.entries()));
    const sink = new MemorySink();
    serializeSafetensors(sink, plan.weightFiles[0]!.tensors, { format: 'pt' }, 'model.safetensors');
    return { 'config.json': enc.encode(plan.config), 'model.safetensors': sink.bytes(), ...Object.fromEntries(this.tokenizerFiles) };
  }

  /**
   * The run folder as `lmtune train` lays it out (config.json, checkpoint/ with state.json,
   * trainable.safetensors and, for Adam, optimizer.safetensors, the logs and the trajectory), keyed by
   * path: `lmtune train --resume` continues it.
   */
  runFiles(): Record<string, Uint8Array> {
    const run = this.run;
    const model = this.requireModel();
    if (!run) throw new LmtuneError('CONFIG', 'nothing to download yet: fine-tune first');
    const state: RunState = {
      step: run.step,
      data: { epoch: run.order.epoch, cursor: run.order.cursor },
      best: run.best,
      optimizerScalars: run.adam ? run.adam.stateScalars() : {},
      extra: run.adam ? { sde_time: run.sdeTime } : {},
    };
    const trainable = new Map(model.trainableNames().map((n) => [n, model.adapters?.has(n) ? model.adapters.get(n) : model.weights.get(n)] as const));
    const out: Record<string, Uint8Array> = {
      'config.json': enc.encode(stableStringify(run.cfg)),
      'checkpoint/state.json': enc.encode(stableStringify(state)),
      'checkpoint/trainable.safetensors': safetensorsBytes(new Map([...trainable].map(([k, t]) => [k, { shape: t.shape, data: t.data }] as const))),
      'log.jsonl': enc.encode(run.log.map((l) => l + '\n').join('')),
      'eval.jsonl': enc.encode(run.evalLog.map((l) => l + '\n').join('')),
    };
    if (run.adam) {
      const opt = run.adam.stateTensors();
      if (opt.size) out['checkpoint/optimizer.safetensors'] = safetensorsBytes(new Map([...opt].map(([k, v]) => [k, { shape: [v.length], data: v }] as const)));
    }
    if (run.mezo) out['trajectory.jsonl'] = enc.encode(run.trajectory.join('\n') + '\n');
    return out;
  }

  /**
   * what the page downloads: LoRA runs give the adapters (PEFT layout); full MeZO the model folder; MeZO
   * also the trajectory (and, for LoRA, the adapters at step 0 it replays from)
   */
  downloads(): Record<string, Uint8Array> {
    const run = this.run;
    if (!run) throw new LmtuneError('CONFIG', 'nothing to download yet: fine-tune first');
    const out: Record<string, Uint8Array> = {};
    if (run.method === 'mezo-full') Object.assign(out, this.modelBytes());
    else {
      const now = this.adapterBytes();
      out['adapter_config.json'] = now.config;
      out['adapter_model.safetensors'] = now.weights;
    }
    if (run.initialAdapters) out['initial_adapter_model.safetensors'] = run.initialAdapters;
    if (run.mezo) out['trajectory.jsonl'] = enc.encode(run.trajectory.join('\n') + '\n');
    return out;
  }
}
