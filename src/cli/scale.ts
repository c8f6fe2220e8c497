/**
 * `lmtune scale`: translate optimizer hyperparameters to another batch size (or to an SVAG run) so that
 * the SDE is unchanged; `lmtune scale simulate`: the noisy-quadratic report. Flags are parsed and checked
 * here; every rule lives in src/scaling/.
 */
import type { Command } from 'commander';
import { diagnoseModel } from '../scaling/diagnose.ts';
import { EPS_SPELLINGS, epsPlacement as epsPlacementOf, FIRST_ORDER_OPTIMIZERS, MOMENTUM_FORMS, optimizerDefaults } from '../optim/options.ts';
import { num, numList, pick, required } from './flags.ts';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite } from '../node/fsx.ts';
import {
  defaultWdMode,
  type BetaMap,
  type EpsPlacement,
  type MomentumForm,
  type OptimizerConfig,
  type OptimizerName,
  type WeightDecayMode,
} from '../scaling/config.ts';
import { effectiveLr, scaleToBatch, sdeTime, type MomentumMap, type RuleOptions, type InvariantCheck } from '../scaling/rules.ts';
import { svagConfig } from '../scaling/svag.ts';
import { runNqmExperiment } from '../scaling/nqmReport.ts';

/** Raw flag values as commander hands them over (strings; booleans for switches). */
interface OptimizerFlags {
  optimizer?: string;
  lr?: string;
  batch?: string;
  beta1?: string;
  beta2?: string;
  alpha?: string;
  momentum?: string;
  dampening?: string;
  nesterov?: boolean;
  momentumForm?: string;
  eps?: string;
  epsPlacement?: string;
  weightDecay?: string;
  wdMode?: string;
  steps?: string;
  warmupSteps?: string;
  milestones?: string;
}

interface ScaleFlags extends OptimizerFlags {
  toBatch?: string;
  svag?: string;
  betaMap?: string;
  momentumMap?: string;
  json?: boolean;
}

interface SimulateFlags extends OptimizerFlags {
  betaMap?: string;
  momentumMap?: string;
  curvature?: string;
  noise?: string;
  x0?: string;
  time?: string;
  svag?: string;
  kappa?: string;
  replicas?: string;
  seed?: string;
  substeps?: string;
  warmSecondMoment?: boolean;
  out?: string;
  json?: boolean;
}

/** the names, spellings and PyTorch defaults are the optimizer schema's (src/optim/options.ts) */
const OPTIMIZERS: readonly OptimizerName[] = FIRST_ORDER_OPTIMIZERS;

const WD_MODES: Record<string, WeightDecayMode> = {
  coupled: 'coupledL2',
  l2: 'coupledL2',
  coupledL2: 'coupledL2',
  decoupled: 'decoupledTimesLr',
  decoupledTimesLr: 'decoupledTimesLr',
  absolute: 'decoupledAbsolute',
  decoupledAbsolute: 'decoupledAbsolute',
};
const EPS_PLACEMENTS: Readonly<Record<string, EpsPlacement>> = EPS_SPELLINGS;
const FORMS: Record<string, MomentumForm> = Object.fromEntries(MOMENTUM_FORMS.map((f) => [f, f]));
const ADAM = optimizerDefaults('adam');
const RMSPROP = optimizerDefaults('rmsprop');
const BETA_MAPS: Record<string, BetaMap> = { linear: 'linear', power: 'power' };
const MOMENTUM_MAPS: Record<string, MomentumMap> = { keep: 'keep', power: 'power' };

/**
 * Builds a typed config from the flags. Flags that do not exist for the chosen optimizer are errors
 * (silently ignoring --eps for SGD would suggest it was translated). Adam/RMSprop βs and ε default to
 * PyTorch's, and the defaults used are reported back.
 */
export function optimizerConfigFromFlags(f: OptimizerFlags, defaultsUsed: string[]): OptimizerConfig {
  const name = required('--optimizer', f.optimizer, `Pass --optimizer ${OPTIMIZERS.join('|')}.`);
  if (!(OPTIMIZERS as readonly string[]).includes(name)) throw new LmtuneError('CONFIG', `--optimizer must be one of ${OPTIMIZERS.join(', ')}; got "${name}"`);
  const optimizer = name as OptimizerName;
  const allowed: Record<OptimizerName, string[]> = {
    sgd: [],
    sgdm: ['momentum', 'dampening', 'nesterov', 'momentumForm'],
    rmsprop: ['beta2', 'alpha', 'eps', 'epsPlacement'],
    adam: ['beta1', 'beta2', 'eps', 'epsPlacement'],
    adamw: ['beta1', 'beta2', 'eps', 'epsPlacement'],
  };
  const flagName: Record<string, string> = {
    beta1: '--beta1',
    beta2: '--beta2',
    alpha: '--alpha',
    momentum: '--momentum',
    dampening: '--dampening',
    nesterov: '--nesterov',
    momentumForm: '--momentum-form',
    eps: '--eps',
    epsPlacement: '--eps-placement',
  };
  for (const [key, flag] of Object.entries(flagName)) {
    if ((f as Record<string, unknown>)[key] !== undefined && !allowed[optimizer].includes(key)) {
      const hint = optimizer === 'rmsprop' && key === 'beta1' ? 'RMSprop has one β, its second-moment EMA (PyTorch alpha): pass it as --beta2 or --alpha.' : undefined;
      throw new LmtuneError('CONFIG', `${flag} does not apply to --optimizer ${optimizer}`, hint);
    }
  }
  const common = {
    batch: num('--batch', required('--batch', f.batch, 'The batch size the hyperparameters were tuned at.')),
    lr: num('--lr', required('--lr', f.lr, 'The learning rate at --batch.')),
    ...(f.steps !== undefined ? { steps: num('--steps', f.steps) } : {}),
    ...(f.warmupSteps !== undefined ? { warmupSteps: num('--warmup-steps', f.warmupSteps) } : {}),
    ...(f.milestones !== undefined ? { milestones: numList('--milestones', f.milestones) } : {}),
    ...(f.weightDecay !== undefined ? { weightDecay: num('--weight-decay', f.weightDecay) } : {}),
    ...(f.wdMode !== undefined || f.weightDecay !== undefined ? { wdMode: f.wdMode !== undefined ? pick('--wd-mode', f.wdMode, WD_MODES) : defaultWdMode(optimizer) } : {}),
  };
  if (optimizer === 'adamw' && f.weightDecay === undefined) defaultsUsed.push('no --weight-decay: 0 assumed (PyTorch AdamW defaults to 0.01; pass it to have it translated)');
  const epsPlacement = f.epsPlacement !== undefined ? pick('--eps-placement', f.epsPlacement, EPS_PLACEMENTS) : epsPlacementOf(ADAM.epsMode);
  const eps = (dflt: number): number => {
    if (f.eps !== undefined) return num('--eps', f.eps);
    defaultsUsed.push(`--eps ${dflt} (PyTorch default)`);
    return dflt;
  };
  switch (optimizer) {
    case 'sgd':
      return { optimizer, ...common };
    case 'sgdm': {
      const form = f.momentumForm !== undefined ? pick('--momentum-form', f.momentumForm, FORMS) : optimizerDefaults('sgdm').momentumForm;
      const momentum = num('--momentum', required('--momentum', f.momentum, 'SGDM needs its momentum β (e.g. --momentum 0.9).'));
      return {
        optimizer,
        ...common,
        momentum,
        form,
        ...(f.dampening !== undefined ? { dampening: num('--dampening', f.dampening) } : {}),
        ...(f.nesterov ? { nesterov: true } : {}),
      };
    }
    case 'rmsprop': {
      if (f.beta2 !== undefined && f.alpha !== undefined) throw new LmtuneError('CONFIG', '--beta2 and --alpha name the same RMSprop coefficient; pass one');
      const raw = f.beta2 ?? f.alpha;
      const alpha = RMSPROP.momentum;
      if (raw === undefined) defaultsUsed.push(`--beta2 (alpha) ${alpha} (PyTorch default)`);
      return { optimizer, ...common, beta2: raw !== undefined ? num(f.beta2 !== undefined ? '--beta2' : '--alpha', raw) : alpha, eps: eps(RMSPROP.eps), epsPlacement };
    }
    case 'adam':
    case 'adamw': {
      const beta = (flag: '--beta1' | '--beta2', v: string | undefined, dflt: number): number => {
        if (v !== undefined) return num(flag, v);
        defaultsUsed.push(`${flag} ${dflt} (PyTorch default)`);
        return dflt;
      };
      return { optimizer, ...common, beta1: beta('--beta1', f.beta1, ADAM.beta1 as number), beta2: beta('--beta2', f.beta2, ADAM.beta2 as number), eps: eps(ADAM.eps as number), epsPlacement };
    }
  }
}

function ruleOptions(f: { betaMap?: string; momentumMap?: string }): RuleOptions {
  const o: RuleOptions = {};
  if (f.betaMap !== undefined) o.betaMap = pick('--beta-map', f.betaMap, BETA_MAPS);
  if (f.momentumMap !== undefined) o.momentumMap = pick('--momentum-map', f.momentumMap, MOMENTUM_MAPS);
  return o;
}

/** 15 significant digits: drops the float noise of 1 − κ(1 − β) (0.6000000000000001 → 0.6). */
function clean(x: number): number {
  return Number.isFinite(x) ? Number(x.toPrecision(15)) : x;
}

function cleanDeep(v: unknown): unknown {
  if (typeof v === 'number') return clean(v);
  if (Array.isArray(v)) return v.map(cleanDeep);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, cleanDeep(x)]));
  return v;
}

function invariantsObject(inv: InvariantCheck[]): Record<string, { before: number; after: number; description: string }> {
  return Object.fromEntries(inv.map((i) => [i.name, { before: i.before, after: i.after, description: i.description }]));
}

/** The JSON object `lmtune scale --json` prints (also what the table is drawn from). */
export function scaleCommandResult(f: ScaleFlags): Record<string, unknown> {
  const defaultsUsed: string[] = [];
  const cfg = optimizerConfigFromFlags(f, defaultsUsed);
  const opts = ruleOptions(f);
  if ((f.toBatch === undefined) === (f.svag === undefined)) {
    throw new LmtuneError('CONFIG', f.toBatch === undefined ? 'missing --to-batch' : 'pass either --to-batch or --svag, not both', 'Use --to-batch N to translate to batch N, or --svag A for the SVAG run with covariance amplification A.');
  }
  const extra: Record<string, unknown> = {};
  let out: Record<string, unknown>;
  if (f.toBatch !== undefined) {
    const r = scaleToBatch(cfg, num('--to-batch', f.toBatch), opts);
    out = { command: 'scale', optimizer: cfg.optimizer, rule: r.rule, kappa: r.kappa, from: r.from, config: r.config, invariants: invariantsObject(r.invariants), warnings: r.warnings, notes: [...defaultsUsed.map((d) => `default used: ${d}`), ...r.notes] };
    if (cfg.optimizer === 'sgdm') extra.sgdEquivalent = { from: { lr: effectiveLr(r.from) }, config: { lr: effectiveLr(r.config) } };
  } else {
    const a = num('--svag', f.svag!);
    const r = svagConfig(cfg, a, opts);
    out = {
      command: 'scale',
      optimizer: cfg.optimizer,
      rule: 'svag',
      amplification: a,
      from: r.from,
      config: r.config,
      stepsMultiplier: r.stepsMultiplier,
      epochsMultiplier: r.epochsMultiplier,
      invariants: invariantsObject(r.invariants),
      warnings: r.warnings,
      notes: [...defaultsUsed.map((d) => `default used: ${d}`), ...r.notes],
    };
    if (cfg.optimizer === 'sgdm') extra.sgdEquivalent = { from: { lr: effectiveLr(r.from) }, config: { lr: effectiveLr(r.config) } };
  }
  return cleanDeep({ ...out, ...extra }) as Record<string, unknown>;
}

function fmtNum(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v)) return `[${v.map(fmtNum).join(', ')}]`;
  if (v === undefined) return '—';
  return String(v);
}

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, j) => Math.max(...rows.map((r) => (r[j] ?? '').length)));
  return rows.map((r) => '  ' + r.map((c, j) => (j === r.length - 1 ? c : c.padEnd(w[j]! + 2))).join('')).join('\n');
}

/** 10 significant digits: enough to see that an invariant is kept, without the last bits of rounding. */
function short(x: number): string {
  return String(Number(x.toPrecision(10)));
}

/** The human-readable rendering of `scaleCommandResult`. */
export function renderScaleResult(r: Record<string, unknown>): string {
  const from = r.from as Record<string, unknown>;
  const to = r.config as Record<string, unknown>;
  const head =
    r.rule === 'svag'
      ? `lmtune scale: ${String(r.optimizer)} → SVAG with covariance amplification a = ${String(r.amplification)} (steps ×${String(r.stepsMultiplier)}, epochs ×${String(r.epochsMultiplier)})`
      : `lmtune scale: ${String(r.optimizer)}, batch ${String(from.batch)} → ${String(to.batch)} (κ = ${String(r.kappa)}), ${String(r.rule)} scaling rule`;
  const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].filter((k) => k !== 'optimizer');
  const lines = [head, '', table([['hyperparameter', 'from', 'to'], ...keys.map((k) => [k, fmtNum(from[k]), fmtNum(to[k])])])];
  const sgdEq = r.sgdEquivalent as { from: { lr: number }; config: { lr: number } } | undefined;
  if (sgdEq) lines.push('', `SGD-equivalent learning rate η_eff = γ(1−d)/(1−β): ${sgdEq.from.lr} → ${sgdEq.config.lr} (P3)`);
  const inv = r.invariants as Record<string, { before: number; after: number; description: string }>;
  lines.push('', 'SDE invariants (kept):', table([['name', 'before', 'after', 'meaning'], ...Object.entries(inv).map(([k, v]) => [k, short(v.before), short(v.after), v.description])]));
  const warnings = r.warnings as string[];
  const notes = r.notes as string[];
  if (warnings.length) lines.push('', 'warnings:', ...warnings.map((w) => `  - ${w}`));
  if (notes.length) lines.push('', 'notes:', ...notes.map((n) => `  - ${n}`));
  return lines.join('\n') + '\n';
}

function addOptimizerOptions(cmd: Command): Command {
  return cmd
    .option('--optimizer <name>', OPTIMIZERS.join(' | '))
    .option('--lr <x>', 'learning rate at --batch (PyTorch γ for sgdm in pytorch form)')
    .option('--batch <n>', 'batch size the hyperparameters are for')
    .option('--beta1 <x>', `Adam β1 (default ${ADAM.beta1})`)
    .option('--beta2 <x>', `Adam β2 (default ${ADAM.beta2}) or RMSprop alpha (default ${RMSPROP.momentum})`)
    .option('--alpha <x>', 'RMSprop alpha (same as --beta2)')
    .option('--momentum <x>', 'SGDM momentum β')
    .option('--dampening <x>', 'SGDM dampening (pytorch form)')
    .option('--nesterov', 'SGDM with Nesterov momentum')
    .option('--momentum-form <form>', 'pytorch (b ← βb + g) | ema (m ← βm + (1−β)g)', undefined)
    .option('--eps <x>', `epsilon (default ${ADAM.eps})`)
    .option('--eps-placement <where>', 'outside (√v + ε, PyTorch) | inside (√(v + ε))')
    .option('--weight-decay <x>', 'weight decay λ')
    .option('--wd-mode <mode>', 'coupled (L2 in the gradient) | decoupled (x ← x − lr·λ·x, AdamW) | absolute (x ← (1−λ)x)')
    .option('--beta-map <map>', 'linear: 1 − κ(1−β) (paper) | power: β^κ')
    .option('--momentum-map <map>', 'SGDM momentum under the LSR: keep (default) | power (β^κ)')
    .option('--steps <n>', 'training steps (translated so epochs stay constant)')
    .option('--warmup-steps <n>', 'warmup steps')
    .option('--milestones <list>', 'comma-separated LR-decay steps');
}

/** Flags that only `lmtune scale simulate` reads (camelCase as commander stores them → the flag). */
const SIMULATE_ONLY: Record<string, string> = {
  curvature: '--curvature',
  noise: '--noise',
  x0: '--x0',
  time: '--time',
  kappa: '--kappa',
  replicas: '--replicas',
  seed: '--seed',
  substeps: '--substeps',
  warmSecondMoment: '--warm-second-moment',
  out: '--out',
};

interface DiagnoseFlags {
  model?: string;
  task?: string;
  data?: string;
  batch?: string;
  toBatch?: string;
  k?: string;
  seed?: string;
  peft?: string;
  json?: boolean;
}

async function runDiagnose(f: DiagnoseFlags): Promise<void> {
  for (const [k, flag] of [['model', '--model'], ['task', '--task'], ['data', '--data'], ['batch', '--batch'], ['toBatch', '--to-batch']] as const) {
    if (!f[k]) throw new LmtuneError('CONFIG', `lmtune scale diagnose needs ${flag}`);
  }
  const int = (flag: string, v: string): number => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < 1) throw new LmtuneError('CONFIG', `${flag} must be a positive integer, got ${v}`);
    return x;
  };
  const peft = f.peft ?? 'full';
  if (peft !== 'full' && peft !== 'lora') throw new LmtuneError('CONFIG', `--peft must be full or lora, got ${peft}`);
  const d = await diagnoseModel(
    {
      model: f.model!,
      task: f.task!,
      data: f.data!,
      batch: int('--batch', f.batch!),
      toBatch: int('--to-batch', f.toBatch!),
      K: int('--k', f.k ?? '8'),
      seed: Number(f.seed ?? '0'),
      peft: peft === 'full' ? { kind: 'full' } : { kind: 'lora', rank: 8, alpha: 16, dropout: 0, targets: [] },
    },
    (k) => process.stderr.write(`gradient ${k + 1}\r`),
  );
  if (f.json) {
    process.stdout.write(JSON.stringify(d) + '\n');
    return;
  }
  const e = d.estimate;
  const rows: [string, string][] = [
    ['trainable parameters', String(d.trainable)],
    ['minibatch gradients K', `${e.K} at batch ${e.batch}`],
    ['signal ‖∇L‖² (unbiased)', e.gradNormSq.toPrecision(4)],
    ['noise tr Σ_B', e.noiseTrace.toPrecision(4)],
    ['noise-to-signal at B', e.nsr.toPrecision(4)],
    ['B_noise = B·tr Σ_B / ‖∇L‖²', e.bNoise.toPrecision(4)],
    ['κ_max (largest batch multiplier in the regime)', `${d.check.kappaMax.toPrecision(4)} (batch ≤ ${Math.floor(d.check.batchMax)})`],
    [`batch ${e.batch} → ${f.toBatch}`, d.check.withinRegime ? 'inside the SDE regime' : 'OUTSIDE the SDE regime'],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + `\n${d.check.reason}\n`);
}

function rejectFlags(flags: Record<string, unknown>, names: Record<string, string>, mode: string): void {
  for (const [k, flag] of Object.entries(names)) {
    if (flags[k] !== undefined) throw new LmtuneError('CONFIG', `${flag} does not apply to ${mode}`);
  }
}

function runSimulate(flags: SimulateFlags): void {
  rejectFlags(flags as Record<string, unknown>, { toBatch: '--to-batch' }, 'lmtune scale simulate (use --kappa to compare batch sizes)');
  const defaultsUsed: string[] = [];
  const config = optimizerConfigFromFlags(flags, defaultsUsed);
  const out = required('--out', flags.out, 'Name the HTML file to write, e.g. --out nqm.html.');
  const horizon = flags.time !== undefined ? num('--time', flags.time) : undefined;
  if (horizon === undefined && config.steps === undefined) throw new LmtuneError('CONFIG', 'missing --time (or --steps)', 'How long to simulate, in SDE time.');
  const replicas = num('--replicas', flags.replicas ?? '2000');
  const seed = num('--seed', flags.seed ?? '0');
  const substeps = num('--substeps', flags.substeps ?? '16');
  if (!Number.isInteger(replicas) || replicas < 2) throw new LmtuneError('CONFIG', `--replicas must be an integer ≥ 2, got ${replicas}`);
  if (!Number.isInteger(seed) || seed < 0) throw new LmtuneError('CONFIG', `--seed must be a non-negative integer, got ${seed}`);
  if (!Number.isInteger(substeps) || substeps < 1) throw new LmtuneError('CONFIG', `--substeps must be a positive integer, got ${substeps}`);
  const result = runNqmExperiment({
    config,
    problem: { curvature: num('--curvature', flags.curvature ?? '1'), noise: num('--noise', flags.noise ?? '1'), x0: num('--x0', flags.x0 ?? '1') },
    horizon: horizon ?? sdeTime(config, config.steps!),
    amplifications: numList('--svag', flags.svag ?? '1,2,4,8'),
    kappas: flags.kappa !== undefined ? numList('--kappa', flags.kappa) : [],
    replicas,
    seed,
    substeps,
    rules: ruleOptions(flags),
    warmSecondMoment: flags.warmSecondMoment ?? false,
  });
  atomicWrite(out, result.html);
  if (flags.json) {
    const runs = result.runs.map((r) => ({ label: r.label, kind: r.kind, steps: r.steps, finalMean: r.finalMean, finalVariance: r.finalVariance, stationaryVariance: r.stationaryVariance ?? null, config: r.config }));
    process.stdout.write(JSON.stringify(cleanDeep({ command: 'scale simulate', report: out, sdeStationaryVariance: result.sdeStationaryVariance, runs })) + '\n');
    return;
  }
  const rows = result.runs.map((r) => [r.label, String(r.steps), r.finalMean.toPrecision(4), r.finalVariance.toPrecision(4), r.stationaryVariance?.toPrecision(4) ?? '—']);
  process.stdout.write(
    [
      `noisy quadratic, ${replicas} replicas; SDE stationary variance ${result.sdeStationaryVariance.toPrecision(4)}`,
      table([['run', 'steps', 'E[x] end', 'Var[x] end', 'stationary Var (closed form)'], ...rows]),
      `report: ${out}`,
    ].join('\n') + '\n',
  );
}

/**
 * Adds `lmtune scale` (translate) and `lmtune scale simulate` (noisy-quadratic report). The mode is a
 * positional argument of one command rather than a commander subcommand, because both modes take the
 * optimizer flags and commander would hand flags after `simulate` to the parent unless the root program
 * enabled positional options (which would change every other command).
 */
export function register(program: Command): void {
  addOptimizerOptions(
    program
      .command('scale')
      .argument('[mode]', "omit to translate hyperparameters; 'simulate' for the noisy-quadratic report")
      .description(
        'Translate optimizer hyperparameters to another batch size (linear rule for SGD, square-root rule for RMSprop/Adam) or to an SVAG run so that the SDE is unchanged; ' +
          "'lmtune scale simulate' checks the rules on a noisy quadratic and writes an HTML report",
      )
      .showHelpAfterError(),
  )
    .option('--to-batch <n>', 'target batch size κB')
    .option('--svag <a>', 'translate to the SVAG run with noise covariance amplification a ≥ 1 (simulate: comma-separated list, default 1,2,4,8)')
    .option('--json', 'print one JSON object instead of a table')
    .option('--curvature <h>', 'simulate: quadratic curvature h (default 1)')
    .option('--noise <s>', 'simulate: per-example gradient noise standard deviation s (default 1)')
    .option('--x0 <x>', 'simulate: starting point (default 1)')
    .option('--time <T>', 'simulate: SDE time to simulate (k·η for SGD, k·η² for Adam); default --steps × SDE time per step')
    .option('--kappa <list>', 'simulate: batch multipliers to compare under the scaling rule')
    .option('--replicas <n>', 'simulate: independent replicas (default 2000)')
    .option('--seed <n>', 'simulate: random seed (default 0)')
    .option('--substeps <n>', 'simulate: Euler–Maruyama steps per optimizer step (default 16)')
    .option('--warm-second-moment', 'simulate: start the RMSprop second moment at the noise level instead of 0')
    .option('--out <file>', 'simulate: HTML report to write')
    .option('--model <dir>', 'diagnose: model folder')
    .option('--task <name>', 'diagnose: task (built-in name or task file)')
    .option('--data <file>', 'diagnose: training examples')
    .option('--k <n>', 'diagnose: minibatch gradients to measure (default 8)')
    .option('--peft <m>', 'diagnose: which parameters are trained: full or lora (default full)')
    .action((mode: string | undefined, flags: ScaleFlags & SimulateFlags) => {
      if (mode === 'simulate') return runSimulate(flags);
      if (mode === 'diagnose') return runDiagnose(flags as unknown as DiagnoseFlags);
      if (mode !== undefined) {
        throw new LmtuneError(
          'CONFIG',
          `unknown mode "lmtune scale ${mode}"`,
          mode === 'diagnose' ? 'diagnose needs a model and task and is not wired yet; the library function is diagnoseBatchChange in src/scaling/noise.ts.' : 'Omit the mode to translate hyperparameters, or use "simulate".',
        );
      }
      rejectFlags(flags as Record<string, unknown>, SIMULATE_ONLY, 'lmtune scale (only to lmtune scale simulate)');
      const r = scaleCommandResult(flags);
      process.stdout.write(flags.json ? JSON.stringify(r) + '\n' : renderScaleResult(r));
    });
}
