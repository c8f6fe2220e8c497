/**
 * `lmtune train`: fine-tune with backprop (sgd, sgdm, rmsprop, adam, adamw; optional SVAG) or MeZO,
 * full / LoRA / prefix, with evaluation, checkpoints and `--resume`. Options may also come from a
 * JSON/YAML file (`--config`); flags given on the command line win.
 */
import { readFileSync, existsSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { Command } from 'commander';
import YAML from 'yaml';
import { LmtuneError } from '../util/errors.ts';
import { stableStringify } from '../node/fsx.ts';
import { readRunConfig, train, type TrainSummary } from '../train/loop.ts';
import type { OptimizerName, TrainConfig } from '../train/options.ts';
import type { PeftSpec } from '../peft/spec.ts';
import { fmtEta, num, oneOf, ProgressLine } from './flags.ts';
import { ZO_METHOD_INFO, ZO_METHODS, zoMethodHelp } from '../optim/zo/registry.ts';

const OPTIMIZERS: OptimizerName[] = ['sgd', 'sgdm', 'rmsprop', 'adam', 'adamw', 'mezo'];
const DEFAULT_LR: Record<OptimizerName, number> = { sgd: 1e-3, sgdm: 1e-3, rmsprop: 1e-4, adam: 1e-5, adamw: 1e-5, mezo: 1e-6 };
/** MeZO's ε per PEFT mode (paper Table 16) */
const DEFAULT_ZO_EPS: Record<PeftSpec['kind'], number> = { full: 1e-3, lora: 1e-2, prefix: 1e-1 };

type Flags = Record<string, string | boolean | undefined>;

const FLAG_KEYS = [
  'model', 'task', 'data', 'dev', 'numTrain', 'numDev', 'devLimit', 'optimizer', 'lr', 'weightDecay', 'momentum', 'momentumForm', 'nesterov', 'beta1', 'beta2',
  'eps', 'epsMode', 'zoEps', 'zoSamples', 'zoDist', 'zoRule', 'zoMethod', 'zoObjective', 'schedule', 'warmup', 'maxSteps', 'batchSize', 'gradAccum', 'clip', 'evalEvery', 'saveEvery',
  'seed', 'peft', 'trainable', 'loraR', 'loraAlpha', 'loraTargets', 'prefixSlots', 'prefixInit', 'objective', 'svag', 'threads', 'maxLength', 'skipInvalid', 'truncation',
];

function loadConfigFile(path: string): Flags {
  if (!existsSync(path)) throw new LmtuneError('IO', `--config: file not found: ${path}`);
  const text = readFileSync(path, 'utf8');
  let raw: unknown;
  try {
    raw = path.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (e) {
    throw new LmtuneError('CONFIG', `${path}: cannot parse (${(e as Error).message})`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new LmtuneError('CONFIG', `${path}: expected a mapping of option names to values`);
  const out: Flags = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    const key = k.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
    if (!FLAG_KEYS.includes(key)) throw new LmtuneError('CONFIG', `${path}: unknown option '${k}'`, `known options: ${FLAG_KEYS.join(', ')}`);
    out[key] = typeof v === 'boolean' ? v : String(v);
  }
  return out;
}

function validRegex(flag: string, v: string): string {
  try {
    new RegExp(v);
  } catch {
    throw new LmtuneError('CONFIG', `${flag}: '${v}' is not a valid regular expression`);
  }
  return v;
}

export function buildTrainConfig(f: Flags): TrainConfig {
  const str = (k: string): string | undefined => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
  const req = (k: string, flag: string): string => {
    const v = str(k);
    if (!v) throw new LmtuneError('CONFIG', `${flag} is required`);
    return v;
  };
  const opt = oneOf('--optimizer', str('optimizer') ?? 'adam', OPTIMIZERS);
  const peftKind = oneOf('--peft', str('peft') ?? 'full', ['full', 'lora', 'prefix'] as const);
  if (str('trainable') && peftKind !== 'full') throw new LmtuneError('CONFIG', `--trainable selects base weights for full fine-tuning; it cannot be combined with --peft ${peftKind}`, 'for LoRA choose modules with --lora-targets');
  const peft: PeftSpec =
    peftKind === 'full'
      ? { kind: 'full', ...(str('trainable') ? { only: validRegex('--trainable', str('trainable')!) } : {}) }
      : peftKind === 'lora'
        ? { kind: 'lora', rank: num('--lora-r', str('loraR') ?? '8', { int: true, min: 1 }), alpha: num('--lora-alpha', str('loraAlpha') ?? '16', { min: 0 }), dropout: 0, targets: str('loraTargets') ? str('loraTargets')!.split(',') : [] }
        : { kind: 'prefix', slots: num('--prefix-slots', str('prefixSlots') ?? '5', { int: true, min: 1 }), initByRealActivations: (str('prefixInit') ?? 'real') === 'real' };
  const maxSteps = num('--max-steps', str('maxSteps') ?? '100', { int: true, min: 1 });
  const cfg: TrainConfig = {
    version: 1,
    model: req('model', '--model'),
    task: req('task', '--task'),
    data: req('data', '--data'),
    dev: str('dev') ?? null,
    numTrain: str('numTrain') ? num('--num-train', str('numTrain'), { int: true, min: 1 }) : null,
    numDev: num('--num-dev', str('numDev') ?? '64', { int: true, min: 0 }),
    devLimit: num('--dev-limit', str('devLimit') ?? '500', { int: true, min: 1 }),
    optimizer: {
      name: opt,
      lr: num('--lr', str('lr') ?? String(DEFAULT_LR[opt]), { min: 0 }),
      weightDecay: num('--weight-decay', str('weightDecay') ?? '0', { min: 0 }),
      momentum: num('--momentum', str('momentum') ?? (opt === 'rmsprop' ? '0.99' : '0.9'), { min: 0, max: 1 }),
      momentumForm: oneOf('--momentum-form', str('momentumForm') ?? 'pytorch', ['pytorch', 'ema'] as const),
      nesterov: f.nesterov === true || f.nesterov === 'true',
      beta1: num('--beta1', str('beta1') ?? '0.9', { min: 0, max: 1 }),
      beta2: num('--beta2', str('beta2') ?? '0.999', { min: 0, max: 1 }),
      eps: num('--eps', str('eps') ?? '1e-8', { min: 0 }),
      epsMode: oneOf('--eps-mode', str('epsMode') ?? 'outside', ['outside', 'inside'] as const),
      zoEps: num('--zo-eps', str('zoEps') ?? String(DEFAULT_ZO_EPS[peftKind]), { min: 0 }),
      zoSamples: num('--zo-samples', str('zoSamples') ?? '1', { int: true, min: 1 }),
      zoDistribution: oneOf('--zo-dist', str('zoDist') ?? 'gaussian', ['gaussian', 'rademacher'] as const),
      zoRule: oneOf('--zo-rule', str('zoRule') ?? 'sgd', ['sgd', 'momentum', 'adam'] as const),
      zoObjective: oneOf('--zo-objective', str('zoObjective') ?? 'ce', ['ce', 'accuracy', 'f1'] as const),
      ...(str('zoMethod') ? { zoMethod: oneOf('--zo-method', str('zoMethod')!, ZO_METHODS) } : {}),
    },
    schedule: oneOf('--schedule', str('schedule') ?? (opt === 'mezo' ? 'constant' : 'linear'), ['constant', 'linear', 'cosine'] as const),
    warmupSteps: num('--warmup', str('warmup') ?? '0', { int: true, min: 0, max: maxSteps }),
    maxSteps,
    batchSize: num('--batch-size', str('batchSize') ?? '8', { int: true, min: 1 }),
    gradAccum: num('--grad-accum', str('gradAccum') ?? '1', { int: true, min: 1 }),
    clipNorm: str('clip') ? num('--clip', str('clip'), { min: 0 }) : null,
    evalEvery: num('--eval-every', str('evalEvery') ?? String(Math.max(1, Math.round(maxSteps / 5))), { int: true, min: 0 }),
    saveEvery: num('--save-every', str('saveEvery') ?? String(Math.max(1, Math.round(maxSteps / 10))), { int: true, min: 1 }),
    seed: num('--seed', str('seed') ?? '42', { int: true, min: 0 }),
    peft,
    objective: oneOf('--objective', str('objective') ?? 'auto', ['auto', 'classification', 'lm', 'mask'] as const),
    svag: num('--svag', str('svag') ?? '1', { min: 1 }),
    maxLength: str('maxLength') ? num('--max-length', str('maxLength'), { int: true, min: 8 }) : null,
    threads: str('threads') ? num('--threads', str('threads'), { int: true, min: 1 }) : null,
  };
  if (cfg.clipNorm === 0) cfg.clipNorm = null;
  if (cfg.optimizer.zoMethod !== undefined && opt !== 'mezo') throw new LmtuneError('CONFIG', `--zo-method applies to --optimizer mezo, not ${opt}`);
  if (f.skipInvalid === true || f.skipInvalid === 'true') {
    if (cfg.task !== 'chat') throw new LmtuneError('CONFIG', '--skip-invalid applies to --task chat only');
    cfg.skipInvalid = true;
  }
  const truncation = str('truncation');
  if (truncation) {
    if (cfg.task !== 'chat') throw new LmtuneError('CONFIG', '--truncation applies to --task chat only');
    cfg.truncation = oneOf('--truncation', truncation, ['right', 'left'] as const);
  }
  return cfg;
}

/** where each flag lands in a TrainConfig (resume compares them with the run's config.json) */
const FLAG_PATHS: Record<string, string> = {
  optimizer: 'optimizer.name', lr: 'optimizer.lr', weightDecay: 'optimizer.weightDecay', momentum: 'optimizer.momentum', momentumForm: 'optimizer.momentumForm',
  nesterov: 'optimizer.nesterov', beta1: 'optimizer.beta1', beta2: 'optimizer.beta2', eps: 'optimizer.eps', epsMode: 'optimizer.epsMode', zoEps: 'optimizer.zoEps',
  zoSamples: 'optimizer.zoSamples', zoDist: 'optimizer.zoDistribution', zoRule: 'optimizer.zoRule', zoMethod: 'optimizer.zoMethod', zoObjective: 'optimizer.zoObjective', warmup: 'warmupSteps',
  clip: 'clipNorm', peft: 'peft.kind', trainable: 'peft.only', loraR: 'peft.rank', loraAlpha: 'peft.alpha', loraTargets: 'peft.targets', prefixSlots: 'peft.slots',
  prefixInit: 'peft.initByRealActivations',
};

function at(o: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);
}

function kebab(k: string): string {
  return '--' + k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * `--resume` continues a run with its own config.json: a flag given with it that disagrees with the run
 * would be silently ignored, so it is refused, naming the flag and both values.
 */
export function refuseChangedFlags(run: TrainConfig, runDir: string, given: readonly (readonly [string, string | boolean | undefined])[]): void {
  const differing: string[] = [];
  for (const [k, v] of given) {
    const base: Flags = { model: run.model, task: run.task, data: run.data, optimizer: run.optimizer.name, peft: run.peft.kind, [k]: v };
    const path = FLAG_PATHS[k] ?? k;
    let mine: unknown = at(buildTrainConfig(base), path);
    if ((k === 'model' || k === 'data' || k === 'dev') && typeof mine === 'string') mine = resolvePath(mine);
    if (k === 'task' && typeof mine === 'string' && existsSync(mine)) mine = resolvePath(mine);
    const theirs = at(run, path);
    if (stableStringify(mine) !== stableStringify(theirs)) differing.push(`${kebab(k)} ${JSON.stringify(v)} (the run has ${JSON.stringify(theirs)})`);
  }
  if (differing.length) {
    throw new LmtuneError('CONFIG', `--resume ${runDir} continues the run with its config.json; these flags disagree with it: ${differing.join('; ')}`, 'drop them to resume, or start a new run with --out');
  }
}

export function renderSummary(s: TrainSummary): string {
  const rows: [string, string][] = [
    ['steps', String(s.steps)],
    ['final train loss', s.finalLoss.toFixed(4)],
  ];
  if (s.initialEval) rows.push([`dev ${s.initialEval.metric} before`, s.initialEval.value.toFixed(4)]);
  if (s.finalEval) rows.push([`dev ${s.finalEval.metric} after`, s.finalEval.value.toFixed(4)]);
  if (s.chat) rows.push(['chat rows', `${s.chat.rows} read, ${s.chat.truncated} truncated to ${s.chat.maxLength} tokens, ${s.chat.skipped} skipped`]);
  if (s.best) rows.push(['best dev', `${s.best.value.toFixed(4)} at step ${s.best.step} (${s.runDir}/best)`]);
  rows.push(['final checkpoint', s.finalDir], ['report', `${s.runDir}/report.html`], ['time', `${s.seconds.toFixed(1)} s`]);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

export function register(program: Command): void {
  program
    .command('train')
    .description('fine-tune a model on a task: backprop (sgd, sgdm, rmsprop, adam, adamw; --svag) or MeZO; full, LoRA or prefix')
    .option('--model <dir>', 'Hugging Face model folder')
    .option('--task <name>', 'built-in task (sst2, rte, ...), chat (chat-format JSONL, loss on assistant turns) or a task file')
    .option('--data <file>', 'training examples (JSONL, GLUE TSV, CSV); a dev split is drawn from it unless --dev is given')
    .option('--dev <file>', 'dev examples for evaluation and best-checkpoint selection')
    .option('--num-train <n>', 'training examples to use (seeded)')
    .option('--num-dev <n>', 'dev examples drawn from --data when --dev is absent', '64')
    .option('--dev-limit <n>', 'evaluate at most this many dev examples', '500')
    .option('--optimizer <name>', `${OPTIMIZERS.join('|')} (mezo: forward passes only, inference memory)`, 'adam')
    .option('--lr <x>', 'learning rate (defaults: adam/adamw 1e-5, sgd/sgdm 1e-3, rmsprop 1e-4, mezo 1e-6)')
    .option('--weight-decay <x>', 'weight decay (adam: coupled L2; adamw: decoupled; biases and norms excluded)', '0')
    .option('--momentum <x>', 'sgdm β / rmsprop α (smoothing) / ZO-momentum β')
    .option('--momentum-form <f>', 'sgdm form: pytorch (b = βb + g, x -= γb) or ema (m = βm + (1-β)g, x -= ηm)', 'pytorch')
    .option('--nesterov', 'Nesterov momentum (sgdm)')
    .option('--beta1 <x>', 'Adam β1', '0.9')
    .option('--beta2 <x>', 'Adam β2', '0.999')
    .option('--eps <x>', 'Adam/RMSprop ε', '1e-8')
    .option('--eps-mode <m>', 'ε outside or inside the square root', 'outside')
    .option('--zo-eps <x>', 'MeZO perturbation size ε (defaults: full 1e-3, lora 1e-2, prefix 1e-1)')
    .option('--zo-samples <n>', 'MeZO perturbations per step (n-SPSA)', '1')
    .option('--zo-dist <d>', 'MeZO perturbation distribution: gaussian or rademacher', 'gaussian')
    .option('--zo-rule <r>', 'MeZO update: sgd (inference memory), momentum (+1x trainable params of memory) or adam (+2x)', 'sgd')
    .option('--zo-method <name>', `zeroth-order method (with --optimizer mezo; default: --zo-rule): ${zoMethodHelp()}; see docs/zo.md`)
    .option('--zo-objective <o>', 'MeZO objective: ce (cross-entropy), accuracy (−batch accuracy) or f1 (−SQuAD F1 of greedy generations): no gradients needed', 'ce')
    .option('--schedule <s>', 'constant, linear (warmup + decay) or cosine (default: linear; mezo: constant)')
    .option('--warmup <n>', 'warmup steps', '0')
    .option('--max-steps <n>', 'optimizer steps', '100')
    .option('--batch-size <n>', 'examples per step', '8')
    .option('--grad-accum <n>', 'micro-batches per optimizer step (first-order only)', '1')
    .option('--clip <x>', 'clip the global gradient norm')
    .option('--eval-every <n>', 'evaluate dev every n steps (0: never; default max-steps/5)')
    .option('--save-every <n>', 'checkpoint every n steps (default max-steps/10)')
    .option('--seed <n>', 'seed of data order, initialization and MeZO perturbations', '42')
    .option('--peft <m>', 'full, lora or prefix', 'full')
    .option('--trainable <regex>', 'full fine-tuning of only the weights whose names match (e.g. "ln_" for layer norms, "bias$" for BitFit)')
    .option('--lora-r <n>', 'LoRA rank', '8')
    .option('--lora-alpha <x>', 'LoRA α (scale α/r)', '16')
    .option('--lora-targets <list>', 'comma-separated regular expressions of module names (default per family: q/v projections)')
    .option('--prefix-slots <n>', 'prefix-tuning slots per layer', '5')
    .option('--prefix-init <how>', 'real (activations of random tokens, as MeZO) or random', 'real')
    .option('--objective <o>', 'auto, classification (CE over candidates), lm (answer-token CE) or mask', 'auto')
    .option('--svag <l>', 'SVAG amplification ℓ ≥ 1 (two minibatch gradients per step, hyperparameters translated)', '1')
    .option('--max-length <n>', 'token cap per sequence (chat rows are cut on the right and counted)')
    .option('--truncation <side>', '--task chat: which end of a row longer than --max-length is cut: right (as LESS) or left (keeps the final answer)')
    .option('--skip-invalid', '--task chat: leave out invalid rows and rows whose assistant tokens are all cut, instead of failing')
    .option('--threads <n>', 'compute threads (default: all cores)')
    .option('--config <file>', 'read options from a JSON/YAML file (command-line flags win)')
    .option('--out <dir>', 'run folder (checkpoints, logs, report)', 'runs/train')
    .option('--resume <dir>', 'continue the run in this folder from its last checkpoint')
    .option('--json', 'print the summary as one JSON object')
    .action(async (opts: Flags) => {
      const progress = new ProgressLine();
      const hooks = {
        onStep: (e: { step: number; maxSteps: number; loss: number; lr: number; stepsPerSecond: number; etaSeconds: number }) =>
          progress.update(`step ${e.step}/${e.maxSteps}  loss ${e.loss.toFixed(4)}  lr ${e.lr.toExponential(2)}  ${e.stepsPerSecond.toFixed(2)} steps/s  ETA ${fmtEta(e.etaSeconds)}`, e.step, e.maxSteps),
        onEval: (e: { step: number; metric: string; value: number; devLoss: number; best: boolean }) =>
          process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}eval @ step ${e.step}: dev ${e.metric} ${e.value.toFixed(4)}, dev loss ${e.devLoss.toFixed(4)}${e.best ? ' (best)' : ''}\n`),
        onMessage: (m: string) => process.stderr.write(`${m}\n`),
      };
      let summary: TrainSummary;
      if (typeof opts.resume === 'string') {
        const cfg = readRunConfig(opts.resume);
        const cmd = program.commands.find((c) => c.name() === 'train')!;
        if (typeof opts.config === 'string') throw new LmtuneError('CONFIG', `--config ${opts.config} cannot be combined with --resume ${opts.resume}: the run continues with its own config.json`, 'drop --config, or start a new run with --out');
        refuseChangedFlags(cfg, opts.resume, FLAG_KEYS.filter((k) => opts[k] !== undefined && cmd.getOptionValueSource(k) === 'cli').map((k) => [k, opts[k]] as const));
        summary = await train(cfg, opts.resume, hooks, true);
      } else {
        const fromFile = typeof opts.config === 'string' ? loadConfigFile(opts.config) : {};
        // commander fills defaults; only flags the user typed should override the file
        const explicit: Flags = {};
        for (const k of FLAG_KEYS) if (opts[k] !== undefined && program.commands.find((c) => c.name() === 'train')!.getOptionValueSource(k) === 'cli') explicit[k] = opts[k];
        const merged: Flags = { ...opts, ...fromFile, ...explicit };
        const cfg = buildTrainConfig(merged);
        if (cfg.optimizer.name === 'mezo') {
          const m = cfg.optimizer.zoMethod ?? cfg.optimizer.zoRule;
          process.stderr.write(`zo method ${m} (${ZO_METHOD_INFO[m].paper}): ${ZO_METHOD_INFO[m].passes} forward passes per step; memory beyond inference: ${ZO_METHOD_INFO[m].memory}\n`);
        }
        summary = await train(cfg, String(opts.out), hooks, false);
      }
      process.stdout.write(opts.json ? stableStringify(summary) : renderSummary(summary));
    });
}
