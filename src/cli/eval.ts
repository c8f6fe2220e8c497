/**
 * `lmtune eval --model DIR --task NAME --data FILE [--shots k] [--seed s] [--limit n] [--json] [--out FILE]`:
 * evaluates a checkpoint on a task (built-in name or task file) and writes a JSON result file. Flags are
 * parsed and checked here; the work is `runEvaluation` (src/tasks/run-eval.ts).
 */
import { basename, extname, join } from 'node:path';
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import { checkOutputFile } from '../node/outputs.ts';
import type { LanguageModel } from '../models/api.ts';
import type { EvalProgress, EvalRecord } from '../tasks/index.ts';
import { runEvaluation } from '../tasks/run-eval.ts';

export interface EvalCommandDeps {
  /** how a checkpoint folder becomes a model (default: src/heads/model.ts, loaded on first use) */
  readonly loadModel?: (dir: string) => Promise<LanguageModel>;
  readonly stdout?: (s: string) => void;
  readonly stderr?: (s: string) => void;
  /** draw an in-place progress bar (default: stderr is a terminal) */
  readonly tty?: boolean;
}

interface EvalFlags {
  model: string;
  task: string;
  data: string;
  train?: string;
  shots: string;
  seed: string;
  limit?: string;
  json?: boolean;
  out?: string;
  scoring: string;
  calibrate?: boolean;
  batchSize: string;
  maxLength?: string;
  progress: boolean;
  queue?: string;
  sliceSize: string;
}

function intFlag(name: string, v: string, min: number): number {
  if (!/^-?\d+$/.test(v.trim()) || Number(v) < min) throw new LmtuneError('CONFIG', `${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** Default result path: runs/eval/<task>__<data file stem>__k<shots>_s<seed>.json */
export function defaultOutPath(task: string, data: string, shots: number, seed: number): string {
  const stem = basename(data, extname(data)).replace(/[^\w.-]+/g, '_');
  const t = basename(task, extname(task)).replace(/[^\w.-]+/g, '_');
  return join('runs', 'eval', `${t}__${stem}__k${shots}_s${seed}.json`);
}

/** The metrics table printed without --json. */
export function renderEvalTable(r: EvalRecord, outPath: string): string {
  const rows: [string, string][] = [
    ['task', `${r.task} (${r.kind}, ${r.model} LM)`],
    ['data', r.data],
    ['examples', String(r.n)],
    ['shots', r.shots > 0 ? `${r.shots} from ${r.train ?? r.data}, seed ${r.seed}` : '0'],
    ['scoring', r.kind === 'generation' ? 'greedy generation' : r.model === 'masked' ? 'label-word logits' : r.scoring],
  ];
  for (const [k, v] of Object.entries(r.metrics)) rows.push([k === r.metric ? `${k} *` : k, v.toFixed(4)]);
  if (r.truncated !== undefined) rows.push(['truncated', `${r.truncated} (contexts cut to the max length)`]);
  rows.push(['result file', outPath]);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

/** One progress line: a 30-cell bar, the count and the rate. */
export function renderProgress(p: EvalProgress): string {
  const frac = p.total > 0 ? p.done / p.total : 1;
  const cells = Math.round(frac * 30);
  return `[${'#'.repeat(cells)}${'.'.repeat(30 - cells)}] ${p.done}/${p.total} ${p.examplesPerSecond.toFixed(1)} ex/s`;
}

export function register(program: Command, deps: EvalCommandDeps = {}): void {
  program
    .command('eval')
    .description('evaluate a checkpoint on a task: prompt-based classification, multiple choice or generation')
    .requiredOption('--model <dir>', 'checkpoint folder')
    .requiredOption('--task <name>', 'built-in task (sst2, rte, cb, boolq, copa, squad, ...), chat (chat-format JSONL) or a task file (.json/.yaml)')
    .requiredOption('--data <file>', 'examples to evaluate: JSONL, GLUE-style TSV with a header, CSV, or "<label> <text>" lines')
    .option('--train <file>', 'demonstrations for --shots (default: the --data file, never an example itself)')
    .option('--shots <k>', 'in-context demonstrations per example (causal LMs)', '0')
    .option('--seed <s>', 'seed of the demonstration draws', '0')
    .option('--limit <n>', 'evaluate only the first n examples')
    .option('--scoring <rule>', 'candidate score for causal LMs: mean or sum of answer-token log-probs', 'mean')
    .option('--calibrate', 'surface-form-competition calibration (causal LMs)')
    .option('--batch-size <n>', 'examples per model call', '8')
    .option('--max-length <n>', 'token cap for inputs (default: the model context / the template max length)')
    .option('--json', 'print one JSON object (metric, value, n, ...) instead of a table')
    .option('--out <file>', 'result file (default runs/eval/<task>__<data>__k<shots>_s<seed>.json)')
    .option('--no-progress', 'do not show the progress bar')
    .option('--queue <url>', 'split the data into slices run by `lmtune worker`s of this Redis queue (redis://HOST:PORT[/DB])')
    .option('--slice-size <n>', 'examples per queued job (rounded up to a multiple of --batch-size)', '256')
    .action(async (flags: EvalFlags) => {
      const shots = intFlag('--shots', flags.shots, 0);
      const seed = intFlag('--seed', flags.seed, 0);
      const limit = flags.limit !== undefined ? intFlag('--limit', flags.limit, 1) : undefined;
      const batchSize = intFlag('--batch-size', flags.batchSize, 1);
      const maxLength = flags.maxLength !== undefined ? intFlag('--max-length', flags.maxLength, 2) : undefined;
      if (flags.scoring !== 'mean' && flags.scoring !== 'sum') throw new LmtuneError('CONFIG', `--scoring must be mean or sum, got ${JSON.stringify(flags.scoring)}`);
      if (flags.train !== undefined && shots === 0) throw new LmtuneError('CONFIG', '--train only supplies demonstrations; add --shots k');
      const out = deps.stdout ?? ((s: string) => void process.stdout.write(s));
      const err = deps.stderr ?? ((s: string) => void process.stderr.write(s));
      const tty = deps.tty ?? Boolean(process.stderr.isTTY);

      // the result file is checked before the evaluation, not after it
      const outPath = flags.out ?? defaultOutPath(flags.task, flags.data, shots, seed);
      checkOutputFile(outPath, '--out');
      if (flags.queue !== undefined) {
        // workers load the model; this process only slices, waits and merges
        const { runDistributedEvaluation } = await import('../distributed/eval-slices.ts');
        const { renderQueueProgress } = await import('../distributed/coordinator.ts');
        let last = 0;
        const record = await runDistributedEvaluation({
          queueUrl: flags.queue,
          modelDir: flags.model,
          task: flags.task,
          data: flags.data,
          shots,
          seed,
          ...(limit !== undefined ? { limit } : {}),
          scoring: flags.scoring,
          ...(flags.calibrate ? { calibrate: true } : {}),
          batchSize,
          ...(maxLength !== undefined ? { maxLength } : {}),
          sliceSize: intFlag('--slice-size', flags.sliceSize, 1),
          onProgress: (p) => {
            if (!flags.progress) return;
            if (tty) err(`\r${renderQueueProgress(p)}`);
            else if (p.done === p.total || performance.now() - last > 5000) {
              last = performance.now();
              err(`${renderQueueProgress(p)}\n`);
            }
          },
        });
        if (flags.progress && tty) err('\n');
        return finish(record);
      }
      const load = deps.loadModel ?? (async (dir: string) => (await import('../heads/model.ts')).loadModel(dir));
      const model = await load(flags.model);

      let lastLine = 0;
      const onProgress = (p: EvalProgress) => {
        if (!flags.progress) return;
        if (tty) err(`\r${renderProgress(p)}`);
        else if (p.done === p.total || performance.now() - lastLine > 5000) {
          // not a terminal: a plain line now and then
          lastLine = performance.now();
          err(`${renderProgress(p)}\n`);
        }
      };
      const record = await runEvaluation(model, {
        task: flags.task,
        data: flags.data,
        ...(flags.train !== undefined ? { train: flags.train } : {}),
        shots,
        seed,
        ...(limit !== undefined ? { limit } : {}),
        scoring: flags.scoring,
        ...(flags.calibrate ? { calibrate: true } : {}),
        batchSize,
        ...(maxLength !== undefined ? { maxLength } : {}),
        onProgress,
      });
      if (flags.progress && tty) err('\n');
      finish(record);

      function finish(record: EvalRecord): void {
        atomicWrite(outPath, stableStringify({ ...record, modelDir: flags.model }));
        if (flags.json) {
          const { predictions: _p, ...summary } = record;
          out(JSON.stringify({ ...summary, modelDir: flags.model, out: outPath }) + '\n');
        } else out(renderEvalTable(record, outPath));
      }
    });
}
