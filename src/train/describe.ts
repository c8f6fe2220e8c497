/**
 * What a run was, in words a reader scans: the method and its key settings, the data, and the command
 * that reproduces it. Shared by a run's report.html and the runs dashboard (`lmtune serve --runs`), so
 * both say the same thing about the same config.json.
 */
import { basename } from 'node:path';
import type { OptimizerSpec, TrainConfig } from './options.ts';

export interface RunFact {
  label: string;
  value: string;
}

/** what the method is called: optimizer (and MeZO's update rule) with the PEFT mode, plus SVAG when on */
export function methodName(cfg: TrainConfig): string {
  const o = cfg.optimizer;
  const opt = o.name === 'mezo' ? `MeZO (${o.zoRule === 'sgd' ? 'ZO-SGD' : o.zoRule === 'momentum' ? 'ZO-momentum' : 'ZO-Adam'})` : o.name;
  const p = cfg.peft;
  const peft = p.kind === 'lora' ? `LoRA r=${p.rank} α=${p.alpha}` : p.kind === 'prefix' ? `prefix (${p.slots} slots)` : p.only ? `full (only /${p.only}/)` : 'full';
  return `${opt} · ${peft}${cfg.svag !== 1 ? ` · SVAG ℓ=${cfg.svag}` : ''}${cfg.objective === 'quad' ? ' · Quad objective' : ''}`;
}

/** train, mezo or svag: how the dashboard groups runs */
export function runKind(cfg: TrainConfig): 'train' | 'mezo' | 'svag' {
  return cfg.optimizer.name === 'mezo' ? 'mezo' : cfg.svag !== 1 ? 'svag' : 'train';
}

function optimizerSettings(o: OptimizerSpec): string[] {
  const s = [`lr ${o.lr}`];
  if (o.weightDecay) s.push(`weight decay ${o.weightDecay}`);
  if (o.name === 'sgdm') s.push(`momentum ${o.momentum} (${o.momentumForm}${o.nesterov ? ', Nesterov' : ''})`);
  if (o.name === 'rmsprop') s.push(`α ${o.momentum}`, `ε ${o.eps}`);
  if (o.name === 'adam' || o.name === 'adamw') s.push(`β ${o.beta1}/${o.beta2}`, `ε ${o.eps}`);
  if (o.name === 'mezo') {
    s.push(`ε ${o.zoEps}`, `${o.zoSamples} ${o.zoDistribution} perturbation${o.zoSamples > 1 ? 's' : ''} per step`);
    if (o.zoObjective !== 'ce') s.push(`objective −${o.zoObjective}`);
  }
  return s;
}

/** sizes of the data actually used, when the run recorded them (summary.json); else as configured */
export interface DataSizes {
  train: number;
  dev: number;
}

export function runFacts(cfg: TrainConfig, opts: { sizes?: DataSizes | null; seconds?: number | null; runDir?: string } = {}): RunFact[] {
  const facts: RunFact[] = [
    { label: 'model', value: `${basename(cfg.model)} (${cfg.model})` },
    { label: 'task', value: cfg.task },
    { label: 'method', value: methodName(cfg) },
    { label: 'optimizer', value: optimizerSettings(cfg.optimizer).join(', ') },
    {
      label: 'schedule',
      value: `${cfg.schedule}${cfg.warmupSteps ? `, ${cfg.warmupSteps} warmup steps` : ''}; ${cfg.maxSteps} steps of ${cfg.batchSize}${cfg.gradAccum > 1 ? ` × ${cfg.gradAccum} micro-batches` : ''}${cfg.clipNorm ? `, gradient norm clipped at ${cfg.clipNorm}` : ''}`,
    },
  ];
  const s = opts.sizes;
  const trainPart = s ? `${s.train} train` : cfg.numTrain ? `${cfg.numTrain} train (--num-train)` : 'all remaining rows train';
  const devPart = s ? `${s.dev} dev` : cfg.dev ? `dev from ${cfg.dev} (at most ${cfg.devLimit})` : `${Math.min(cfg.numDev, cfg.devLimit)} dev drawn from the data`;
  facts.push({ label: 'data', value: `${trainPart} / ${devPart} examples; ${cfg.data}${cfg.dev && s ? ` + ${cfg.dev}` : ''}` });
  facts.push({ label: 'evaluation', value: cfg.evalEvery > 0 ? `every ${cfg.evalEvery} steps and at step 0` : 'none' });
  facts.push({ label: 'seed', value: String(cfg.seed) });
  if (opts.seconds !== undefined && opts.seconds !== null) facts.push({ label: 'time', value: formatSeconds(opts.seconds) });
  return facts;
}

export function formatSeconds(s: number): string {
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(2)} h`;
}

/** one shell word: bare when safe, else single-quoted */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The `lmtune train` command that writes this run again: the flags that define it, plus every option
 * whose value differs from the CLI's default (so `buildTrainConfig` of these flags gives the same
 * config; train/describe.test.ts checks that round trip).
 */
export function trainCommand(cfg: TrainConfig, outDir: string): string {
  const o = cfg.optimizer;
  const f: [string, string | number | null][] = [
    ['--model', cfg.model],
    ['--task', cfg.task],
    ['--data', cfg.data],
  ];
  const add = (flag: string, v: string | number, dflt?: string | number): void => {
    if (dflt === undefined || String(v) !== String(dflt)) f.push([flag, v]);
  };
  if (cfg.dev) add('--dev', cfg.dev);
  if (cfg.numTrain !== null) add('--num-train', cfg.numTrain);
  add('--num-dev', cfg.numDev, 64);
  add('--dev-limit', cfg.devLimit, 500);
  add('--optimizer', o.name);
  add('--lr', o.lr);
  add('--weight-decay', o.weightDecay, 0);
  add('--momentum', o.momentum, o.name === 'rmsprop' ? 0.99 : 0.9);
  add('--momentum-form', o.momentumForm, 'pytorch');
  if (o.nesterov) f.push(['--nesterov', null]);
  add('--beta1', o.beta1, 0.9);
  add('--beta2', o.beta2, 0.999);
  add('--eps', o.eps, 1e-8);
  add('--eps-mode', o.epsMode, 'outside');
  if (o.name === 'mezo') add('--zo-eps', o.zoEps);
  else add('--zo-eps', o.zoEps, cfg.peft.kind === 'full' ? 1e-3 : cfg.peft.kind === 'lora' ? 1e-2 : 1e-1);
  add('--zo-samples', o.zoSamples, 1);
  add('--zo-dist', o.zoDistribution, 'gaussian');
  add('--zo-rule', o.zoRule, 'sgd');
  add('--zo-objective', o.zoObjective, 'ce');
  add('--schedule', cfg.schedule);
  add('--warmup', cfg.warmupSteps, 0);
  add('--max-steps', cfg.maxSteps);
  add('--batch-size', cfg.batchSize);
  add('--grad-accum', cfg.gradAccum, 1);
  if (cfg.clipNorm !== null) add('--clip', cfg.clipNorm);
  add('--eval-every', cfg.evalEvery);
  add('--save-every', cfg.saveEvery);
  add('--seed', cfg.seed);
  const p = cfg.peft;
  add('--peft', p.kind);
  if (p.kind === 'full' && p.only) add('--trainable', p.only);
  if (p.kind === 'lora') {
    add('--lora-r', p.rank, 8);
    add('--lora-alpha', p.alpha, 16);
    if (p.targets.length) add('--lora-targets', p.targets.join(','));
  }
  if (p.kind === 'prefix') {
    add('--prefix-slots', p.slots, 5);
    add('--prefix-init', p.initByRealActivations ? 'real' : 'random', 'real');
  }
  add('--objective', cfg.objective, 'auto');
  if (cfg.quadPhiFrom) add('--quad-phi-from', cfg.quadPhiFrom);
  add('--svag', cfg.svag, 1);
  if (cfg.maxLength !== null) add('--max-length', cfg.maxLength);
  if (cfg.threads !== null) add('--threads', cfg.threads);
  if (cfg.skipInvalid) f.push(['--skip-invalid', null]);
  if (cfg.truncation) add('--truncation', cfg.truncation);
  f.push(['--out', outDir]);
  return ['lmtune train', ...f.map(([k, v]) => (v === null ? k : `${k} ${shellWord(String(v))}`))].join(' ');
}
