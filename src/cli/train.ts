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
import { flagName, TRAIN_FLAG_KEYS, TRAIN_FLAGS, trainConfigFromOptions, type TrainConfig, type TrainFlag } from '../train/options.ts';
import { fmtEta, num, ProgressLine } from './flags.ts';
import { trainDataParallel, type DataParallelFlags } from '../distributed/data-parallel.ts';
import { blameConfigFile } from './config-blame.ts';
import { ZO_METHOD_INFO } from '../optim/zo/registry.ts';
import { checkQuadConfig, trainQuad, withQuadDefaults } from '../pretrain/quad-train.ts';

type Flags = Record<string, string | boolean | undefined>;

/** the option keys of `lmtune train` (also those a --config file may set), from the run schema */
const FLAG_KEYS: readonly string[] = TRAIN_FLAG_KEYS;

/** flags of the task loop and of MeZO that `--objective quad` (a backprop LM loss on text) has no use for */
const NOT_FOR_QUAD = ['numTrain', 'zoEps', 'zoSamples', 'zoDist', 'zoRule', 'zoMethod', 'zoObjective', 'trainable', 'loraR', 'loraAlpha', 'loraTargets', 'prefixSlots', 'prefixInit', 'gradAccum', 'svag', 'skipInvalid', 'truncation'];

/** refuses, naming it, a flag given (on the command line or in --config) that --objective quad does not use */
export function refuseFlagsForQuad(given: readonly string[]): void {
  const bad = given.filter((k) => NOT_FOR_QUAD.includes(k));
  if (bad.length) throw new LmtuneError('CONFIG', `${bad.map(kebab).join(', ')} ${bad.length > 1 ? 'do' : 'does'} not apply to --objective quad (a language-modelling loss on text, trained with backprop on every weight)`, 'see `lmtune train --help` and docs/features.md');
}

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

/**
 * Flag (or --config) values → the run's TrainConfig: parsing, defaults and checks are the run schema's
 * (src/train/options.ts); what stays here is what the quad objective adds on top.
 */
export function buildTrainConfig(f: Flags): TrainConfig {
  // --objective quad reads --data as plain text unless a task names how to read it; its rules (the
  // options it does not implement, --quad-phi-from and --task text only with it) are quad-train.ts's
  const cfg = trainConfigFromOptions(withQuadDefaults(f));
  checkQuadConfig(cfg);
  return cfg;
}

/** where each flag lands in a TrainConfig (resume compares them with the run's config.json) */
const FLAG_PATHS: Record<string, string> = Object.fromEntries(TRAIN_FLAG_KEYS.map((k) => [k, TRAIN_FLAGS[k].path]));

function at(o: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);
}

const kebab = flagName;

/**
 * `--resume` continues a run with its own config.json: a flag given with it that disagrees with the run
 * would be silently ignored, so it is refused, naming the flag and both values.
 */
export function refuseChangedFlags(run: TrainConfig, runDir: string, given: readonly (readonly [string, string | boolean | undefined])[]): void {
  const differing: string[] = [];
  for (const [k, v] of given) {
    const base: Flags = { model: run.model, task: run.task, data: run.data, optimizer: run.optimizer.name, peft: run.peft.kind, objective: run.objective, [k]: v };
    const path = FLAG_PATHS[k] ?? k;
    let mine: unknown = at(buildTrainConfig(base), path);
    if ((k === 'model' || k === 'data' || k === 'dev' || k === 'quadPhiFrom') && typeof mine === 'string') mine = resolvePath(mine);
    if (k === 'task' && typeof mine === 'string' && existsSync(mine)) mine = resolvePath(mine);
    const theirs = at(run, path);
    if (stableStringify(mine) !== stableStringify(theirs)) differing.push(`${kebab(k)} ${JSON.stringify(v)} (the run has ${JSON.stringify(theirs)})`);
  }
  if (differing.length) {
    throw new LmtuneError('CONFIG', `--resume ${runDir} continues the run with its config.json; these flags disagree with it: ${differing.join('; ')}`, 'drop them to resume, or start a new run with --out');
  }
}

/** --data-parallel, --world, --rank (or $LMTUNE_RANK), --dp-timeout; undefined without --data-parallel */
export function dataParallelFlags(opts: Flags, timeoutGiven: boolean): DataParallelFlags | undefined {
  const url = typeof opts.dataParallel === 'string' ? opts.dataParallel : undefined;
  if (url === undefined) {
    const stray: string[] = ['world', 'rank'].filter((k) => opts[k] !== undefined);
    if (timeoutGiven) stray.push('dpTimeout');
    if (stray.length) throw new LmtuneError('CONFIG', `${stray.map(kebab).join(', ')} ${stray.length > 1 ? 'apply' : 'applies'} to --data-parallel runs only`, 'add --data-parallel redis://HOST:PORT');
    return undefined;
  }
  if (opts.world === undefined) throw new LmtuneError('CONFIG', '--data-parallel needs --world (the number of ranks)');
  const world = num('--world', String(opts.world), { int: true, min: 1 });
  const fromEnv = opts.rank === undefined ? process.env.LMTUNE_RANK : undefined;
  if (opts.rank === undefined && (fromEnv === undefined || fromEnv === '')) throw new LmtuneError('CONFIG', '--data-parallel needs --rank (or LMTUNE_RANK in the environment)', `give each process its own rank in [0, ${world - 1}]`);
  const rank = num(fromEnv !== undefined ? 'LMTUNE_RANK' : '--rank', String(opts.rank ?? fromEnv), { int: true, min: 0, max: world - 1 });
  const timeoutMs = 1000 * num('--dp-timeout', String(opts.dpTimeout ?? '60'), { min: 0.1 });
  return { url: String(url), world, rank, timeoutMs };
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
  const cmd = program
    .command('train')
    .description('fine-tune a model on a task: backprop (sgd, sgdm, rmsprop, adam, adamw; --svag) or MeZO; full, LoRA or prefix; or continue a checkpoint on text with the Quad objective (--objective quad)');
  // the run's options, with their help and defaults, are the run schema's (src/train/options.ts)
  for (const k of TRAIN_FLAG_KEYS) {
    const d: TrainFlag = TRAIN_FLAGS[k];
    cmd.option(d.flags, d.help, d.default);
  }
  cmd
    .option('--config <file>', 'read options from a JSON/YAML file (command-line flags win)')
    .option('--out <dir>', 'run folder (checkpoints, logs, report)', 'runs/train')
    .option('--resume <dir>', 'continue the run in this folder from its last checkpoint')
    .option('--data-parallel <url>', 'data-parallel MeZO: this process is one of --world ranks that meet at this Redis (redis://HOST:PORT[/DB]); per step only the seed and a few numbers per rank cross it; running the same command again resumes (docs/distributed.md)')
    .option('--world <n>', '--data-parallel: number of ranks (processes, any machines)')
    .option('--rank <r>', '--data-parallel: this process\'s rank in [0, world) (default: $LMTUNE_RANK); rank 0 writes the run to --out, rank r to --out/rank-r')
    .option('--dp-timeout <s>', '--data-parallel: a rank silent this long is dead and the run stops, naming it', '60')
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
      const dp = dataParallelFlags(opts, cmd.getOptionValueSource('dpTimeout') === 'cli');
      const run = (cfg: TrainConfig, dir: string, resume: boolean): Promise<TrainSummary> =>
        dp ? trainDataParallel(cfg, dir, dp, hooks) : cfg.objective === 'quad' ? trainQuad(cfg, dir, hooks, resume) : train(cfg, dir, hooks, resume);
      if (typeof opts.resume === 'string') {
        const cfg = readRunConfig(opts.resume);
        const cmd = program.commands.find((c) => c.name() === 'train')!;
        if (typeof opts.config === 'string') throw new LmtuneError('CONFIG', `--config ${opts.config} cannot be combined with --resume ${opts.resume}: the run continues with its own config.json`, 'drop --config, or start a new run with --out');
        refuseChangedFlags(cfg, opts.resume, FLAG_KEYS.filter((k) => opts[k] !== undefined && cmd.getOptionValueSource(k) === 'cli').map((k) => [k, opts[k]] as const));
        summary = await run(cfg, opts.resume, true);
      } else {
        const fromFile = typeof opts.config === 'string' ? loadConfigFile(opts.config) : {};
        // commander fills defaults; only flags the user typed should override the file
        const explicit: Flags = {};
        for (const k of FLAG_KEYS) if (opts[k] !== undefined && program.commands.find((c) => c.name() === 'train')!.getOptionValueSource(k) === 'cli') explicit[k] = opts[k];
        const merged: Flags = { ...opts, ...fromFile, ...explicit };
        let cfg: TrainConfig;
        try {
          if (merged.objective === 'quad') refuseFlagsForQuad([...Object.keys(fromFile), ...Object.keys(explicit)]);
          cfg = buildTrainConfig(merged);
        } catch (e) {
          // a value from --config is blamed on the file's line and key, not on a flag that was never typed
          throw typeof opts.config === 'string' ? blameConfigFile(e, opts.config, fromFile, explicit) : e;
        }
        if (cfg.optimizer.name === 'mezo') {
          const m = cfg.optimizer.zoMethod ?? cfg.optimizer.zoRule;
          process.stderr.write(`zo method ${m} (${ZO_METHOD_INFO[m].paper}): ${ZO_METHOD_INFO[m].passes} forward passes per step; memory beyond inference: ${ZO_METHOD_INFO[m].memory}\n`);
        }
        summary = await run(cfg, String(opts.out), false);
      }
      process.stdout.write(opts.json ? stableStringify(summary) : renderSummary(summary));
    });
}
