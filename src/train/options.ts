/**
 * Everything a training run is configured by, defined once: the zod schema of the run's `config.json`
 * (stored so `--resume` needs only the folder), its defaults, and the flags of `lmtune train` (also the
 * keys of a `--config` file). The types are the schema's; the optimizer part is the discriminated union
 * of src/optim/options.ts. Three readers share it:
 *   - `trainConfigFromOptions`: flag or `--config` values (text) → a checked TrainConfig with defaults;
 *     an error names the flag, or the config file and its key
 *   - `validateRunConfig` (validate.ts): a stored config.json, strict (no defaults: a missing key is an error)
 *   - cli/train.ts: commander's options, their help and defaults, from `TRAIN_FLAGS`
 */
import { z } from 'zod';
import { LmtuneError } from '../util/errors.ts';
import { booleanField, choiceField, fieldIssues, literalField, numberField, regexField, stringField, stringsField, typedIssueText, type FieldIssue } from '../util/fields.ts';
import { OPTIMIZERS, optimizerDefaults, optimizerOptionsSchema, optimizerSpecSchema, ZO_EPS_DEFAULT, type OptimizerName } from '../optim/options.ts';
import type { PeftSpec } from '../peft/spec.ts';
import type { ObjectiveMode } from './batches.ts';
import { zoMethodHelp } from '../optim/zo/registry.ts';

export type { OptimizerName, OptimizerSpec } from '../optim/options.ts';

export const SCHEDULES = ['constant', 'linear', 'cosine'] as const;
/** 'quad': the Quad language-modelling objective on text (src/pretrain/quad-train.ts runs it, not loop.ts) */
export const OBJECTIVES = ['auto', 'classification', 'lm', 'mask', 'quad'] as const satisfies readonly (ObjectiveMode | 'auto' | 'quad')[];
export const PEFT_KINDS = ['full', 'lora', 'prefix'] as const satisfies readonly PeftSpec['kind'][];
export const TRUNCATION_SIDES = ['right', 'left'] as const;
export const DEFAULT_OPTIMIZER: OptimizerName = 'adam';

/** the defaults that depend on nothing else (the rest: `fillDependentDefaults`) */
export const RUN_DEFAULTS = {
  version: 1,
  dev: null,
  numTrain: null,
  numDev: 64,
  devLimit: 500,
  warmupSteps: 0,
  maxSteps: 100,
  batchSize: 8,
  gradAccum: 1,
  clipNorm: null,
  seed: 42,
  objective: 'auto',
  svag: 1,
  maxLength: null,
  threads: null,
} as const;

const PEFT_DEFAULTS = { lora: { rank: 8, alpha: 16, dropout: 0, targets: [] as string[] }, prefix: { slots: 5, initByRealActivations: true } } as const;

const LARGE = 1 << 24;

const PEFT_FIELDS = {
  full: { only: regexField().optional() },
  lora: { rank: numberField({ int: true, min: 1, max: 1 << 20 }), alpha: numberField({ min: 0 }), dropout: numberField({ min: 0, max: 1 }), targets: stringsField() },
  prefix: { slots: numberField({ int: true, min: 1, max: 1 << 20 }), initByRealActivations: booleanField() },
};

const RUN_FIELDS = {
  version: literalField(1),
  model: stringField(),
  task: stringField(),
  data: stringField(),
  dev: stringField().nullable(),
  /** examples drawn for training / dev from `data` when no dev file is given (seeded) */
  numTrain: numberField({ int: true, min: 1 }).nullable(),
  numDev: numberField({ int: true, min: 0 }),
  devLimit: numberField({ int: true, min: 1 }),
  schedule: choiceField(SCHEDULES),
  /** at most maxSteps (checked across fields) */
  warmupSteps: numberField({ int: true, min: 0 }),
  maxSteps: numberField({ int: true, min: 1 }),
  batchSize: numberField({ int: true, min: 1, max: LARGE }),
  gradAccum: numberField({ int: true, min: 1, max: LARGE }),
  clipNorm: numberField({ min: 0 }).nullable(),
  evalEvery: numberField({ int: true, min: 0 }),
  saveEvery: numberField({ int: true, min: 1 }),
  seed: numberField({ int: true, min: 0 }),
  objective: choiceField(OBJECTIVES),
  /** SVAG amplification ℓ (1 = off) */
  svag: numberField({ min: 1, max: 1 << 20 }),
  maxLength: numberField({ int: true, min: 8 }).nullable(),
  threads: numberField({ int: true, min: 1, max: 4096 }).nullable(),
  /** --task chat: leave out invalid rows and rows cut away by maxLength instead of failing (absent: false) */
  skipInvalid: booleanField().optional(),
  /** --task chat: which end a row longer than maxLength loses (absent: right, as the reference) */
  truncation: choiceField(TRUNCATION_SIDES).optional(),
  /** objective quad, starting from a cross-entropy checkpoint: Φ fixed to this model folder's output embedding */
  quadPhiFrom: stringField().optional(),
};

function defaulted<S extends Record<string, z.ZodType>>(shape: S, defaults: Readonly<Record<string, unknown>>): S {
  return Object.fromEntries(Object.entries(shape).map(([k, f]) => [k, k in defaults ? f.default(defaults[k] as never) : f])) as unknown as S;
}

function peftUnion(withDefaults: boolean) {
  const d = (kind: 'lora' | 'prefix'): Readonly<Record<string, unknown>> => (withDefaults ? PEFT_DEFAULTS[kind] : {});
  return z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('full'), ...PEFT_FIELDS.full }),
    z.object({ kind: z.literal('lora'), ...defaulted(PEFT_FIELDS.lora, d('lora')) }),
    z.object({ kind: z.literal('prefix'), ...defaulted(PEFT_FIELDS.prefix, d('prefix')) }),
  ]);
}

/** warmup cannot outlast the run */
function warmupWithinRun(c: { warmupSteps: unknown; maxSteps: unknown }, ctx: z.RefinementCtx): void {
  if (typeof c.maxSteps !== 'number' || typeof c.warmupSteps !== 'number' || c.warmupSteps <= c.maxSteps) return;
  const want = { kind: 'number', min: 0, max: c.maxSteps, int: true } as const;
  ctx.addIssue({ code: 'custom', path: ['warmupSteps'], input: c.warmupSteps, message: `at most maxSteps (${c.maxSteps})`, params: { want, problem: 'max' } });
}

/** the object's keys in config.json's order (the order in which problems are reported) */
function runShape<F extends typeof RUN_FIELDS, O extends z.ZodType, P extends z.ZodType>(fields: F, optimizer: O, peft: P) {
  const { version, model, task, data, dev, numTrain, numDev, devLimit, ...rest } = fields;
  const { schedule, warmupSteps, maxSteps, batchSize, gradAccum, clipNorm, evalEvery, saveEvery, seed, ...tail } = rest;
  return { version, model, task, data, dev, numTrain, numDev, devLimit, optimizer, schedule, warmupSteps, maxSteps, batchSize, gradAccum, clipNorm, evalEvery, saveEvery, seed, peft, ...tail };
}

/** a run's config.json as stored: every key present and checked */
export const runConfigSchema = z.object(runShape(RUN_FIELDS, optimizerSpecSchema, peftUnion(false))).superRefine(warmupWithinRun);

/**
 * The defaults that depend on other options: the optimizer and PEFT mode themselves (a union's tag has no
 * zod default), the schedule on the optimizer, MeZO's ε on the PEFT mode, the eval/save intervals on the
 * run length. (Each optimizer's own defaults, lr among them, are its variant's: src/optim/options.ts.)
 */
export function fillDependentDefaults(raw: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  // a value that is not an object is left for the schema to report
  const optimizer: unknown = raw.optimizer === undefined || isObj(raw.optimizer) ? { name: DEFAULT_OPTIMIZER, ...raw.optimizer } : raw.optimizer;
  const peft: unknown = raw.peft === undefined || isObj(raw.peft) ? { kind: 'full', ...raw.peft } : raw.peft;
  if (isObj(optimizer) && isObj(peft) && optimizer.zoEps === undefined && typeof peft.kind === 'string' && Object.hasOwn(ZO_EPS_DEFAULT, peft.kind)) {
    optimizer.zoEps = ZO_EPS_DEFAULT[peft.kind as PeftSpec['kind']];
  }
  const maxSteps = raw.maxSteps ?? RUN_DEFAULTS.maxSteps;
  // when maxSteps itself is wrong its own message is the one to read: the intervals get a placeholder
  const steps = typeof maxSteps === 'number' && Number.isSafeInteger(maxSteps) && maxSteps >= 1 ? maxSteps : 1;
  return {
    ...raw,
    optimizer,
    peft,
    schedule: raw.schedule ?? (isObj(optimizer) && optimizer.name === 'mezo' ? 'constant' : 'linear'),
    evalEvery: raw.evalEvery ?? Math.max(1, Math.round(steps / 5)),
    saveEvery: raw.saveEvery ?? Math.max(1, Math.round(steps / 10)),
  };
}

/** options as a caller gives them (absent keys take their defaults); `--clip 0` means no clipping */
export const runOptionsSchema = z.preprocess(
  (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? fillDependentDefaults(v as Record<string, unknown>) : v),
  z
    .object(runShape(defaulted(RUN_FIELDS, RUN_DEFAULTS), optimizerOptionsSchema, peftUnion(true)))
    .superRefine(warmupWithinRun)
    .transform((c) => (c.clipNorm === 0 ? { ...c, clipNorm: null } : c)),
);

export type TrainConfig = z.output<typeof runConfigSchema>;

/** how a flag's command-line text becomes its value */
type TextKind = 'string' | 'number' | 'optionalNumber' | 'boolean' | 'list' | 'choice' | 'optionalChoice';

export interface TrainFlag {
  /** commander's spelling: `--lr <x>` */
  flags: string;
  help: string;
  /** where the value lands in a TrainConfig (`--resume` compares them with the run's config.json) */
  path: string;
  text: TextKind;
  /** the default commander shows and fills in; absent where it depends on other options (see the help) */
  default?: string;
}

/** 1e-5, not 0.00001: defaults as one writes them */
function sci(x: number): string {
  return x !== 0 && Math.abs(x) < 1 ? x.toExponential() : String(x);
}

const LR_HELP = (() => {
  const by = new Map<number, string[]>();
  for (const n of OPTIMIZERS) {
    const lr: number = optimizerDefaults(n).lr;
    by.set(lr, [...(by.get(lr) ?? []), n]);
  }
  return [...by].map(([lr, names]) => `${names.join('/')} ${sci(lr)}`).join(', ');
})();

const od = optimizerDefaults(DEFAULT_OPTIMIZER);

/**
 * The flags of `lmtune train`, in `--help` order; the keys (commander's camelCase) are also the keys of a
 * `--config` file (kebab-case and snake_case are accepted too). A new option is one entry here plus its
 * field in the schema above.
 */
export const TRAIN_FLAGS = {
  model: { flags: '--model <dir>', help: 'Hugging Face model folder', path: 'model', text: 'string' },
  task: { flags: '--task <name>', help: 'built-in task (sst2, rte, ...), chat (chat-format JSONL, loss on assistant turns), a task file, or text (--objective quad: --data is plain text)', path: 'task', text: 'string' },
  data: { flags: '--data <file>', help: 'training examples (JSONL, GLUE TSV, CSV), or with --task text a text file (documents between blank lines; .jsonl: a "text" field); a dev split is drawn from it unless --dev is given', path: 'data', text: 'string' },
  dev: { flags: '--dev <file>', help: 'dev examples for evaluation and best-checkpoint selection', path: 'dev', text: 'string' },
  numTrain: { flags: '--num-train <n>', help: 'training examples to use (seeded)', path: 'numTrain', text: 'optionalNumber' },
  numDev: { flags: '--num-dev <n>', help: 'dev examples drawn from --data when --dev is absent', path: 'numDev', text: 'number', default: String(RUN_DEFAULTS.numDev) },
  devLimit: { flags: '--dev-limit <n>', help: 'evaluate at most this many dev examples', path: 'devLimit', text: 'number', default: String(RUN_DEFAULTS.devLimit) },
  optimizer: { flags: '--optimizer <name>', help: `${OPTIMIZERS.join('|')} (mezo: forward passes only, inference memory)`, path: 'optimizer.name', text: 'choice', default: DEFAULT_OPTIMIZER },
  lr: { flags: '--lr <x>', help: `learning rate (defaults: ${LR_HELP})`, path: 'optimizer.lr', text: 'number' },
  weightDecay: { flags: '--weight-decay <x>', help: 'weight decay (adam: coupled L2; adamw: decoupled; biases and norms excluded)', path: 'optimizer.weightDecay', text: 'number', default: String(od.weightDecay) },
  momentum: { flags: '--momentum <x>', help: `sgdm β / rmsprop α (smoothing) / ZO-momentum β (default ${optimizerDefaults('sgdm').momentum}; rmsprop ${optimizerDefaults('rmsprop').momentum})`, path: 'optimizer.momentum', text: 'number' },
  momentumForm: { flags: '--momentum-form <f>', help: 'sgdm form: pytorch (b = βb + g, x -= γb) or ema (m = βm + (1-β)g, x -= ηm)', path: 'optimizer.momentumForm', text: 'choice', default: String(od.momentumForm) },
  nesterov: { flags: '--nesterov', help: 'Nesterov momentum (sgdm)', path: 'optimizer.nesterov', text: 'boolean' },
  beta1: { flags: '--beta1 <x>', help: 'Adam β1', path: 'optimizer.beta1', text: 'number', default: String(od.beta1) },
  beta2: { flags: '--beta2 <x>', help: 'Adam β2', path: 'optimizer.beta2', text: 'number', default: String(od.beta2) },
  eps: { flags: '--eps <x>', help: 'Adam/RMSprop ε', path: 'optimizer.eps', text: 'number', default: String(od.eps) },
  epsMode: { flags: '--eps-mode <m>', help: 'ε outside or inside the square root', path: 'optimizer.epsMode', text: 'choice', default: String(od.epsMode) },
  zoEps: { flags: '--zo-eps <x>', help: `MeZO perturbation size ε (defaults: ${Object.entries(ZO_EPS_DEFAULT).map(([k, v]) => `${k} ${sci(v)}`).join(', ')})`, path: 'optimizer.zoEps', text: 'number' },
  zoSamples: { flags: '--zo-samples <n>', help: 'MeZO perturbations per step (n-SPSA)', path: 'optimizer.zoSamples', text: 'number', default: String(od.zoSamples) },
  zoDist: { flags: '--zo-dist <d>', help: 'MeZO perturbation distribution: gaussian or rademacher', path: 'optimizer.zoDistribution', text: 'choice', default: String(od.zoDistribution) },
  zoRule: { flags: '--zo-rule <r>', help: 'MeZO update: sgd (inference memory), momentum (+1x trainable params of memory) or adam (+2x)', path: 'optimizer.zoRule', text: 'choice', default: String(od.zoRule) },
  zoMethod: { flags: '--zo-method <name>', help: `zeroth-order method (with --optimizer mezo; default: --zo-rule): ${zoMethodHelp()}; see docs/zo.md`, path: 'optimizer.zoMethod', text: 'optionalChoice' },
  zoObjective: { flags: '--zo-objective <o>', help: 'MeZO objective: ce (cross-entropy), accuracy (−batch accuracy) or f1 (−SQuAD F1 of greedy generations): no gradients needed', path: 'optimizer.zoObjective', text: 'choice', default: String(od.zoObjective) },
  schedule: { flags: '--schedule <s>', help: 'constant, linear (warmup + decay) or cosine (default: linear; mezo: constant)', path: 'schedule', text: 'choice' },
  warmup: { flags: '--warmup <n>', help: 'warmup steps', path: 'warmupSteps', text: 'number', default: String(RUN_DEFAULTS.warmupSteps) },
  maxSteps: { flags: '--max-steps <n>', help: 'optimizer steps', path: 'maxSteps', text: 'number', default: String(RUN_DEFAULTS.maxSteps) },
  batchSize: { flags: '--batch-size <n>', help: 'examples per step', path: 'batchSize', text: 'number', default: String(RUN_DEFAULTS.batchSize) },
  gradAccum: { flags: '--grad-accum <n>', help: 'micro-batches per optimizer step (first-order only)', path: 'gradAccum', text: 'number', default: String(RUN_DEFAULTS.gradAccum) },
  clip: { flags: '--clip <x>', help: 'clip the global gradient norm', path: 'clipNorm', text: 'optionalNumber' },
  evalEvery: { flags: '--eval-every <n>', help: 'evaluate dev every n steps (0: never; default max-steps/5)', path: 'evalEvery', text: 'number' },
  saveEvery: { flags: '--save-every <n>', help: 'checkpoint every n steps (default max-steps/10)', path: 'saveEvery', text: 'number' },
  seed: { flags: '--seed <n>', help: 'seed of data order, initialization and MeZO perturbations', path: 'seed', text: 'number', default: String(RUN_DEFAULTS.seed) },
  peft: { flags: '--peft <m>', help: 'full, lora or prefix', path: 'peft.kind', text: 'choice', default: 'full' },
  trainable: { flags: '--trainable <regex>', help: 'full fine-tuning of only the weights whose names match (e.g. "ln_" for layer norms, "bias$" for BitFit)', path: 'peft.only', text: 'string' },
  loraR: { flags: '--lora-r <n>', help: 'LoRA rank', path: 'peft.rank', text: 'number', default: String(PEFT_DEFAULTS.lora.rank) },
  loraAlpha: { flags: '--lora-alpha <x>', help: 'LoRA α (scale α/r)', path: 'peft.alpha', text: 'number', default: String(PEFT_DEFAULTS.lora.alpha) },
  loraTargets: { flags: '--lora-targets <list>', help: 'comma-separated regular expressions of module names (default per family: q/v projections)', path: 'peft.targets', text: 'list' },
  prefixSlots: { flags: '--prefix-slots <n>', help: 'prefix-tuning slots per layer', path: 'peft.slots', text: 'number', default: String(PEFT_DEFAULTS.prefix.slots) },
  prefixInit: { flags: '--prefix-init <how>', help: 'real (activations of random tokens, as MeZO) or random', path: 'peft.initByRealActivations', text: 'choice', default: PEFT_DEFAULTS.prefix.initByRealActivations ? 'real' : 'random' },
  objective: { flags: '--objective <o>', help: 'auto, classification (CE over candidates), lm (answer-token CE), mask, or quad (continue a checkpoint with the Quad LM objective −hᵀφ_w + ½‖Φh‖² on text; A and Φ from its quad.safetensors, else A = I and Φ = its head; docs/features.md)', path: 'objective', text: 'choice', default: RUN_DEFAULTS.objective },
  quadPhiFrom: { flags: '--quad-phi-from <dir>', help: "--objective quad from a cross-entropy checkpoint: fix Φ to this model's output embedding (same vocabulary); learned when absent", path: 'quadPhiFrom', text: 'string' },
  svag: { flags: '--svag <l>', help: 'SVAG amplification ℓ ≥ 1 (two minibatch gradients per step, hyperparameters translated)', path: 'svag', text: 'number', default: String(RUN_DEFAULTS.svag) },
  maxLength: { flags: '--max-length <n>', help: 'token cap per sequence (chat rows are cut on the right and counted); --objective quad: the window length (default: the model\'s context, at most 128)', path: 'maxLength', text: 'optionalNumber' },
  truncation: { flags: '--truncation <side>', help: '--task chat: which end of a row longer than --max-length is cut: right (as LESS) or left (keeps the final answer)', path: 'truncation', text: 'optionalChoice' },
  skipInvalid: { flags: '--skip-invalid', help: '--task chat: leave out invalid rows and rows whose assistant tokens are all cut, instead of failing', path: 'skipInvalid', text: 'boolean' },
  threads: { flags: '--threads <n>', help: 'compute threads (default: all cores)', path: 'threads', text: 'optionalNumber' },
} as const satisfies Record<string, TrainFlag>;

export type TrainFlagKey = keyof typeof TRAIN_FLAGS;
export const TRAIN_FLAG_KEYS = Object.keys(TRAIN_FLAGS) as TrainFlagKey[];

/** option values as commander or a config file hands them over (text; booleans for switches) */
export type OptionValues = Readonly<Record<string, string | boolean | number | undefined>>;

/** `--lr` (a flag), or `c.yaml: "lr"` for a key of a config file: what an error message calls an option */
export type OptionNamer = (key: string) => string;

export function flagName(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function setAt(o: Record<string, unknown>, path: string, v: unknown): void {
  const keys = path.split('.');
  let cur = o;
  for (const k of keys.slice(0, -1)) cur = (cur[k] ??= {}) as Record<string, unknown>;
  cur[keys[keys.length - 1]!] = v;
}

const KEY_OF_PATH = new Map<string, TrainFlagKey>(TRAIN_FLAG_KEYS.map((k) => [TRAIN_FLAGS[k].path, k]));

/**
 * Flag / config-file values → a checked TrainConfig with every default filled in. Errors are
 * LmtuneError('CONFIG') naming the option as `name` does (the flag by default), with the value as typed.
 */
export function trainConfigFromOptions(values: OptionValues, name: OptionNamer = flagName): TrainConfig {
  const raw: Record<string, unknown> = {};
  const typed = new Map<string, string>();
  // text that is not a value of its kind: the message, reported with the schema's in one error
  const unreadable = new Map<string, string>();
  for (const key of TRAIN_FLAG_KEYS) {
    const def: TrainFlag = TRAIN_FLAGS[key];
    const v = values[key];
    if (v === undefined) continue;
    let value: unknown;
    try {
      value = fromText(def.text, key, v, name);
    } catch (e) {
      if (!(e instanceof LmtuneError)) throw e;
      unreadable.set(def.path, e.message);
      value = v; // fails the field's check, so the schema reports it in its place
    }
    if (value === undefined) continue;
    if (key === 'prefixInit') {
      if (value !== 'real' && value !== 'random') throw new LmtuneError('CONFIG', typedIssueText(name(key), { path: def.path, input: v, want: { kind: 'choice', choices: ['real', 'random'] }, problem: 'choice' }, String(v)));
      setAt(raw, def.path, value === 'real');
    } else setAt(raw, def.path, value);
    typed.set(def.path, String(v));
  }
  const peftKind = (raw.peft as { kind?: unknown } | undefined)?.kind ?? 'full';
  if (values.trainable && (peftKind === 'lora' || peftKind === 'prefix')) throw new LmtuneError('CONFIG', `${name('trainable')} selects base weights for full fine-tuning; it cannot be combined with --peft ${String(peftKind)}`, 'for LoRA choose modules with --lora-targets');
  // options of one variant given for another (--lora-r with full fine-tuning, commander's defaults among them) are left out, as before
  const parsed = runOptionsSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    const texts = fieldIssues(parsed.error).map((i) => unreadable.get(i.path) ?? optionIssueText(i, name, typed));
    throw new LmtuneError('CONFIG', [...new Set(texts)].join('; '));
  }
  const cfg = parsed.data;
  if (cfg.skipInvalid === false) delete cfg.skipInvalid;
  if (cfg.skipInvalid && cfg.task !== 'chat') throw new LmtuneError('CONFIG', `${name('skipInvalid')} applies to --task chat only`);
  if (cfg.truncation !== undefined && cfg.task !== 'chat') throw new LmtuneError('CONFIG', `${name('truncation')} applies to --task chat only`);
  return cfg;
}

function optionIssueText(i: FieldIssue, name: OptionNamer, typed: ReadonlyMap<string, string>): string {
  const key = KEY_OF_PATH.get(i.path);
  return typedIssueText(key ? name(key) : i.path, i, typed.get(i.path) ?? (typeof i.input === 'string' ? i.input : JSON.stringify(i.input)));
}

function fromText(kind: TextKind, key: string, v: string | boolean | number, name: OptionNamer): unknown {
  const bad = (want: FieldIssue['want'], problem: FieldIssue['problem']): never => {
    throw new LmtuneError('CONFIG', typedIssueText(name(key), { path: key, input: v, want, problem }, String(v)));
  };
  switch (kind) {
    case 'boolean':
      if (v === true || v === 'true') return true;
      if (v === false || v === 'false') return false;
      return bad({ kind: 'boolean' }, 'type');
    case 'number':
    case 'optionalNumber': {
      if (typeof v === 'number') return v;
      if (typeof v !== 'string') return bad({ kind: 'number', min: -Infinity, max: Infinity, int: false }, 'type');
      // an empty optional number means "none"; an empty number with a default is a mistake
      if (v.trim() === '') return kind === 'optionalNumber' ? undefined : bad({ kind: 'number', min: -Infinity, max: Infinity, int: false }, 'empty');
      const x = Number(v.trim());
      return Number.isFinite(x) ? x : bad({ kind: 'number', min: -Infinity, max: Infinity, int: false }, 'type');
    }
    case 'list':
      return typeof v === 'string' ? (v === '' ? [] : v.split(',')) : bad({ kind: 'strings' }, 'type');
    case 'choice':
      return String(v);
    case 'string':
    case 'optionalChoice':
      // an empty string is an absent option (a required one is then reported as missing)
      return typeof v === 'string' ? (v === '' ? undefined : v) : String(v);
  }
}
