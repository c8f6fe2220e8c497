/**
 * `lmtune select warmup|grads|match|write|run`: LESS data selection (src/select). Each stage resumes
 * after a kill and returns at once when it has finished; `run` does all four. The flags build the run's
 * configuration (stored as OUT/select.json); a stage called with only --out reads it back.
 */
import type { Command } from 'commander';
import { loadModelConfig } from '../models/config.ts';
import { stableStringify } from '../node/fsx.ts';
import { LmtuneError } from '../util/errors.ts';
import { runStage, type SelectionSummary, type Stage } from '../select/pipeline.ts';
import { readConfig, withAbsolutePaths, type SelectConfig } from '../select/config.ts';
import type { Amount } from '../select/write.ts';
import { AGGREGATES } from '../select/match.ts';
import type { SelectProgress } from '../select/events.ts';
import { fmtEta, num, oneOf, ProgressLine } from './flags.ts';

type Flags = Record<string, string | boolean | undefined>;

function amountOf(f: Flags): Amount {
  if (typeof f.maxSamples === 'string') return { maxSamples: num('--max-samples', f.maxSamples, { int: true, min: 1 }) };
  return { percentage: num('--percentage', String(f.percentage ?? '0.05'), { min: 0, max: 1 }) };
}

/** `--pool a.jsonl,b.jsonl` (or the flag repeated, joined by the option parser): one file stays a string */
function poolFiles(v: string): string | string[] {
  const list = v.split(',').map((p) => p.trim());
  if (list.some((p) => p === '')) throw new LmtuneError('CONFIG', `--pool ${v}: an empty file name`, 'give files separated by commas: --pool a.jsonl,b.jsonl');
  return list.length === 1 ? list[0]! : list;
}

export function buildSelectConfig(f: Flags): SelectConfig {
  const str = (k: string): string | undefined => (typeof f[k] === 'string' ? (f[k] as string) : undefined);
  const req = (k: string, flag: string): string => {
    const v = str(k);
    if (!v) throw new LmtuneError('CONFIG', `${flag} is required`, 'a new selection run needs --model, --pool, --target and --out');
    return v;
  };
  const model = req('model', '--model');
  const positions = loadModelConfig(model).maxPositions;
  const maxLength = str('maxLength') ? num('--max-length', str('maxLength'), { int: true, min: 2, max: positions }) : Math.min(2048, positions);
  const projDims = (str('projDim') ?? '8192').split(',').map((d) => num('--proj-dim', d, { int: true, min: 1 }));
  if (new Set(projDims).size !== projDims.length) throw new LmtuneError('CONFIG', `--proj-dim lists a dimension twice: ${str('projDim')}`);
  const matchDim = str('matchDim') ? num('--match-dim', str('matchDim'), { int: true, min: 1 }) : projDims[0]!;
  if (!projDims.includes(matchDim)) throw new LmtuneError('CONFIG', `--match-dim ${matchDim} is not among --proj-dim ${projDims.join(',')}`);
  const truncation = oneOf('--truncation', str('truncation') ?? 'right', ['left', 'right'] as const);
  const cfg: SelectConfig = {
    version: 1,
    model,
    pool: poolFiles(req('pool', '--pool')),
    target: req('target', '--target'),
    seed: num('--seed', str('seed') ?? '42', { int: true, min: 0 }),
    maxLength,
    truncation,
    skipInvalid: f.skipInvalid === true,
    threads: str('threads') ? num('--threads', str('threads'), { int: true, min: 1 }) : null,
    warmup: {
      percentage: num('--warmup-percentage', str('warmupPercentage') ?? '0.05', { min: 0, max: 1 }),
      epochs: num('--warmup-epochs', str('warmupEpochs') ?? '4', { int: true, min: 1 }),
      lr: num('--warmup-lr', str('warmupLr') ?? '2e-5', { min: 0 }),
      batchSize: num('--warmup-batch-size', str('warmupBatchSize') ?? '32', { int: true, min: 1 }),
      warmupRatio: num('--warmup-ratio', str('warmupRatio') ?? '0.03', { min: 0, max: 1 }),
      clipNorm: str('clip') === '0' ? null : num('--clip', str('clip') ?? '1', { min: 0 }),
      loraRank: num('--lora-r', str('loraR') ?? '8', { int: true, min: 1 }),
      loraAlpha: num('--lora-alpha', str('loraAlpha') ?? '32', { min: 0 }),
      loraTargets: str('loraTargets') ? str('loraTargets')!.split(',') : [],
    },
    grads: {
      projection: ((p) => (p === 'dense' ? 'rademacher' : p))(oneOf('--projection', str('projection') ?? 'dense', ['dense', 'srht', 'kronecker'] as const)),
      projDims,
      projSeed: num('--proj-seed', str('projSeed') ?? '0', { int: true, min: 0 }),
      dtype: oneOf('--dtype', str('dtype') ?? 'f16', ['f16', 'f32'] as const),
      batchSize: num('--grad-batch-size', str('gradBatchSize') ?? '16', { int: true, min: 1 }),
      shardRows: num('--shard-rows', str('shardRows') ?? '1024', { int: true, min: 1 }),
    },
    match: {
      aggregate: oneOf('--aggregate', str('aggregate') ?? 'max-subtask-mean', AGGREGATES),
      dim: matchDim,
      ...(oneOf('--group-by', str('groupBy') ?? 'subtask', ['subtask', 'label'] as const) === 'label' ? { groupBy: 'label' as const } : {}),
    },
    write: amountOf(f),
  };
  return withAbsolutePaths(cfg);
}

export function renderSelection(s: Partial<SelectionSummary>): string {
  const rows: [string, string][] = [];
  if (s.warmup) rows.push(['warmup', `${s.warmup.rows} rows, ${s.warmup.checkpoints.length} epoch checkpoints (${s.warmup.stepsPerEpoch} steps each)`]);
  if (s.grads) rows.push(['features', `${s.grads.pool.rows} pool + ${s.grads.target.rows} target rows × ${s.grads.checkpoints.length} checkpoints, d = ${s.grads.dims.join(',')} (${s.grads.pool.skipped.length} pool rows skipped)`]);
  if (s.match) rows.push(['scores', `${s.match.scored} rows, ${s.match.aggregate} over ${s.match.subtasks.length} target group(s)`]);
  if (s.write) rows.push(['selected', `${s.write.selected} rows → ${s.out}/selected.jsonl`], ['scores', `${s.out}/scores.csv`], ['report', `${s.out}/report.html`]);
  const w = Math.max(0, ...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

function addOptions(c: Command): Command {
  return c
    .option('--out <dir>', 'selection folder (created; holds every stage and the outputs)')
    .option('--model <dir>', 'Hugging Face model folder (causal LM)')
    .option('--pool <files>', 'candidate rows, chat JSONL ({"messages": [...]}, optional "dataset"); several files (comma-separated or the flag repeated) form one pool, selected globally', (v: string, prev?: string) => (prev ? `${prev},${v}` : v))
    .option('--target <file>', 'target rows, chat JSONL with optional "subtask"')
    .option('--percentage <p>', 'select this share of the scored pool rows', '0.05')
    .option('--max-samples <n>', 'select this many rows instead of --percentage')
    .option('--seed <n>', 'seed of the warmup subset, LoRA init and data order', '42')
    .option('--max-length <n>', 'token cap per row (default: min(2048, the model\'s positions))')
    .option('--truncation <side>', 'cut too-long rows on the right (the reference) or the left (keeps the answer; short-context models)', 'right')
    .option('--warmup-percentage <p>', 'share of the pool the warmup trains on', '0.05')
    .option('--warmup-epochs <n>', 'warmup epochs (one checkpoint each)', '4')
    .option('--warmup-lr <x>', 'warmup peak learning rate (linear schedule)', '2e-5')
    .option('--warmup-batch-size <n>', 'warmup examples per update', '32')
    .option('--warmup-ratio <x>', 'share of the warmup updates spent warming up the learning rate', '0.03')
    .option('--clip <x>', 'warmup gradient-norm clip (0: off)', '1')
    .option('--lora-r <n>', 'LoRA rank', '8')
    .option('--lora-alpha <x>', 'LoRA α (scale α/r)', '32')
    .option('--lora-targets <list>', 'comma-separated regular expressions of module names (default per family)')
    .option('--proj-dim <list>', 'projection dimension(s), comma-separated', '8192')
    .option('--projection <kind>', 'dense (counter-based Rademacher, as the reference), srht (subsampled randomized Hadamard: O(D log D) per row) or kronecker (per-LoRA-matrix P_out G P_inᵀ from activations and output gradients, no per-example gradient; pool features use a factored Adam approximation)', 'dense')
    .option('--proj-seed <n>', 'projection seed', '0')
    .option('--dtype <t>', 'feature storage: f16 or f32', 'f16')
    .option('--grad-batch-size <n>', 'examples per batched per-example-gradient pass', '16')
    .option('--shard-rows <n>', 'feature rows per datastore shard', '1024')
    .option('--aggregate <a>', 'max-subtask-mean (the reference: max over subtasks of the mean cosine), mean (over all target rows), or cos-with-mean-grad (max over subtasks of the cosine with the subtask\'s mean target feature)', 'max-subtask-mean')
    .option('--group-by <field>', 'group the target rows by "subtask" (the reference) or by "label" (a classification target: each pool row is scored against the class it matches best)', 'subtask')
    .option('--match-dim <d>', 'projection dimension the scores use (default: the first of --proj-dim)')
    .option('--skip-invalid', 'skip (and report) malformed rows and rows with nothing to predict instead of failing')
    .option('--threads <n>', 'compute threads (default: all cores)')
    .option('--queue <url>', 'grads: one job per (checkpoint, pool/target shard) for the `lmtune worker`s of this Redis queue (redis://HOST:PORT[/DB]); OUT must be a folder every worker sees at the same path')
    .option('--no-progress', 'no progress line')
    .option('--json', 'print the stage summaries as one JSON object (no progress line)');
}

function renderProgress(p: SelectProgress): string {
  return `${p.stage} ${p.done}/${p.total} ${p.unit}${p.detail ? `  ${p.detail}` : ''}  ETA ${fmtEta(p.etaSeconds)}`;
}

export function register(program: Command): void {
  const select = program.command('select').description('LESS data selection: warmup, gradient features, matching, writing (each resumable); `select run` does all');
  const stages: [Stage | 'run', string][] = [
    ['run', 'all stages: resumes an interrupted run, returns at once when finished'],
    ['warmup', 'LoRA warmup on a seeded share of the pool, a checkpoint per epoch'],
    ['grads', 'per-example gradient features of the pool (Adam) and the target (SGD) at every checkpoint'],
    ['match', 'learning-rate-weighted cosine scores of every pool row'],
    ['write', 'scores.csv, selected.jsonl and report.html'],
  ];
  for (const [stage, description] of stages) {
    const cmd = addOptions(select.command(stage).description(description));
    cmd.action(async (opts: Flags) => {
      const out = typeof opts.out === 'string' ? opts.out : null;
      if (!out) throw new LmtuneError('CONFIG', '--out is required');
      let cfg: SelectConfig | null = null;
      if (typeof opts.model === 'string') cfg = buildSelectConfig(opts);
      else if (cmd.getOptionValueSource('percentage') === 'cli' || typeof opts.maxSamples === 'string') cfg = { ...readConfig(out), write: amountOf(opts) };
      const quiet = opts.json === true || opts.progress === false;
      const line = new ProgressLine();
      const queue = typeof opts.queue === 'string' ? opts.queue : undefined;
      if (queue !== undefined) {
        if (stage !== 'run' && stage !== 'grads') throw new LmtuneError('CONFIG', `--queue applies to \`select grads\` and \`select run\` (the gradient datastore), not to \`select ${stage}\``);
        (await import('../distributed/jobs.ts')).connectionFromUrl(queue);
      }
      const summary = await runStage(
        stage,
        out,
        cfg,
        {
          onProgress: quiet ? undefined : (p) => line.update(renderProgress(p), p.done, p.total),
          onMessage: quiet ? undefined : (m) => process.stderr.write(`${m}\n`),
        },
        queue !== undefined ? { queue: { queueUrl: queue } } : {},
      );
      process.stdout.write(opts.json ? stableStringify(summary) : renderSelection(summary));
    });
  }
}
