/**
 * `lmtune probe --train F [--eval F] [--cv 5] [--cs 1e-6,...] [--standardize] [--json]`: a logistic-
 * regression probe on feature files, C chosen by cross-validation on the training file; with one file,
 * the mean over repeated random splits (the reference's MPQA/CR protocol).
 *
 * `lmtune probe compare --model DIR --task T --train FILE [--eval FILE]`: probes on f, Φp, subset and
 * class-word logits, with and without the prompt, next to a bag-of-words baseline (a table, --json and
 * an HTML report). The work is in src/features/.
 */
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import { loadTransformer } from '../heads/model.ts';
import { loadExamples, resolveTask, type Example } from '../tasks/index.ts';
import { exampleText } from '../features/run.ts';
import { htmlReport } from '../report/plot.ts';
import { checkCompatible, readFeatureFile } from '../features/feature-file.ts';
import { defaultCs, PROBE_SOLVER, repeatedSplits, trainAndEvaluate } from '../features/cv.ts';
import { SPLIT_TASKS } from '../features/defaults.ts';
import { compareProbes, renderCompareTable, sampleExamples, splitExamples, type CompareResult } from '../features/compare.ts';
import { fmtEta, num, ProgressLine } from './flags.ts';

export function parseCs(v: string): number[] {
  const cs = v.split(',').map((s) => s.trim());
  return cs.map((s) => {
    const c = Number(s);
    if (s === '' || !Number.isFinite(c) || c <= 0) throw new LmtuneError('CONFIG', `--cs: '${s}' is not a positive number`, 'e.g. --cs 1e-3,1e-2,0.1,1,10');
    return c;
  });
}

interface ProbeFlags {
  train?: string;
  eval?: string;
  cv: string;
  cs?: string;
  standardize?: boolean;
  maxIter: string;
  splits: string;
  testFraction: string;
  seed: string;
  json?: boolean;
}

interface CompareFlags {
  model: string;
  task: string;
  train: string;
  eval?: string;
  evalFraction: string;
  trainLimit?: string;
  evalLimit?: string;
  prompt?: string;
  cv: string;
  cs?: string;
  standardize?: boolean;
  skipEmpty?: boolean;
  maxIter: string;
  splits: string;
  testFraction: string;
  seed: string;
  batchSize: string;
  threads: string;
  json?: boolean;
  out?: string;
  html?: string;
  progress: boolean;
}

export function compareReport(r: CompareResult, model: string): string {
  const sections = [
    {
      heading: `${r.task}: linear probes on ${model}`,
      paragraphs: [
        `${r.splits ? `${r.trainN} examples, the mean over ${r.splits.count} random splits holding out ${r.splits.testFraction} (C: the median chosen)` : `${r.trainN} training and ${r.evalN} eval examples`}; C chosen by ${r.folds}-fold cross-validation over {${r.Cs.join(', ')}}${r.standardize ? ' on standardized features' : ''}; prompt ${JSON.stringify(r.prompt)}.`,
        `Subset words: ${r.subsetWords.words.join(' ') || '(none)'}${r.subsetWords.dropped.length ? `; not one token, dropped: ${r.subsetWords.dropped.map((d) => d.word).join(' ')}` : ''}.`,
        `Class words: ${r.classWords.words.join(' ') || '(none)'}${r.classWords.dropped.length ? `; not one token, dropped: ${r.classWords.dropped.map((d) => d.word).join(' ')}` : ''}.`,
      ],
      table: {
        columns: ['features', 'prompt', 'dim', 'accuracy', 'std over splits', 'C'],
        rows: r.rows.map((row) => [row.features, row.prompt ? 'yes' : 'no', row.dim, row.accuracy === null ? '—' : row.accuracy, row.std ?? '—', row.C === null ? '—' : row.C]),
      },
    },
  ];
  return htmlReport(`lmtune probe compare: ${r.task}`, sections);
}

interface AllFlags extends ProbeFlags, Omit<CompareFlags, keyof ProbeFlags | 'model' | 'task' | 'train'> {
  model?: string;
  task?: string;
}

export function register(program: Command): void {
  // one command with an optional mode rather than a `compare` subcommand: both take --train/--eval, and
  // commander gives a flag to the parent command unless positional options are enabled program-wide
  program
    .command('probe')
    .argument('[mode]', '"compare" for the whole table from a model and a task')
    .description('logistic-regression probe on feature files (C by k-fold cross-validation); `probe compare`: probes on f, Φp, subset and class-word logits with and without the prompt, next to bag of words')
    .option('--train <file>', 'training features (lmtune features); compare: training examples')
    .option('--eval <file>', 'eval features (without it: the mean over repeated random splits of --train); compare: eval examples (without it: --eval-fraction of --train)')
    .option('--cv <k>', 'cross-validation folds', '5')
    .option('--cs <list>', 'comma-separated Cs (inverse L2 strength on the summed loss; default 10^-6..10^3, or 10^-3..10^2 from 10 000 examples)')
    .option('--standardize', 'standardize features (training mean and std) before the probe')
    .option('--max-iter <n>', 'L-BFGS iterations per fit (the reference\'s max_iter)', String(PROBE_SOLVER.maxIter))
    .option('--splits <n>', 'random splits without --eval (compare: MPQA and CR)', '10')
    .option('--test-fraction <x>', 'held-out fraction per split without --eval (compare: MPQA and CR)', '0.1')
    .option('--seed <n>', 'seed of the random splits and samples', '0')
    .option('--json', 'print the result as JSON ({metric, value, n, C} for a probe)')
    .option('--model <dir>', 'compare: causal LM checkpoint folder')
    .option('--task <name>', 'compare: classification task (sst2, agnews, cr, mpqa, ...)')
    .option('--eval-fraction <x>', 'compare: held-out fraction when --eval is not given (tasks other than MPQA and CR)', '0.3')
    .option('--train-limit <n>', 'compare: a seeded random sample of n training examples')
    .option('--eval-limit <n>', 'compare: a seeded random sample of n eval examples')
    .option('--prompt <text>', 'compare: the prompt of the "with prompt" rows (default: the task\'s)')
    .option('--batch-size <n>', 'compare: texts per forward pass', '16')
    .option('--threads <n>', 'compare: compute threads', '1')
    .option('--out <file>', 'compare: also write the result JSON here')
    .option('--html <file>', 'compare: write an HTML report here')
    .option('--skip-empty', 'compare: drop examples with an empty text instead of failing')
    .option('--no-progress', 'compare: do not show progress')
    .action(async (mode: string | undefined, flags: AllFlags) => {
      if (mode === undefined) return probeFiles(flags);
      if (mode !== 'compare') throw new LmtuneError('CONFIG', `unknown probe mode '${mode}'`, 'lmtune probe --train F --eval F, or lmtune probe compare --model DIR --task T --train FILE');
      for (const f of ['model', 'task', 'train'] as const) if (!flags[f]) throw new LmtuneError('CONFIG', `probe compare: --${f} is required`);
      return compare({ ...flags, model: flags.model!, task: flags.task!, train: flags.train! });
    });
}

function probeFiles(flags: ProbeFlags): void {
  if (!flags.train) throw new LmtuneError('CONFIG', '--train is required', 'lmtune probe --train train.safetensors --eval eval.safetensors');
  const tr = readFeatureFile(flags.train, '--train');
  const folds = num('--cv', flags.cv, { int: true, min: 2 });
  const Cs = flags.cs !== undefined ? parseCs(flags.cs) : defaultCs(tr.data.n);
  const cv = { Cs, folds, standardize: Boolean(flags.standardize), solver: { ...PROBE_SOLVER, maxIter: num('--max-iter', flags.maxIter, { int: true, min: 1 }) } };
  let result: Record<string, unknown>;
  if (flags.eval) {
    const ev = readFeatureFile(flags.eval, '--eval');
    checkCompatible({ path: flags.train, meta: tr.meta, d: tr.data.d }, { path: flags.eval, meta: ev.meta, d: ev.data.d });
    const r = trainAndEvaluate(tr.data, ev.data, cv);
    result = { metric: r.metric, value: r.value, n: r.n, C: r.C, cvScores: r.scores, Cs };
  } else {
    const r = repeatedSplits(tr.data, {
      ...cv,
      splits: num('--splits', flags.splits, { int: true, min: 1 }),
      testFraction: num('--test-fraction', flags.testFraction, { min: 0, max: 1 }),
      seed: num('--seed', flags.seed, { int: true, min: 0 }),
    });
    result = { metric: r.metric, value: r.value, std: r.std, n: r.n, C: r.Cs, values: r.values, splits: r.values.length };
  }
  if (flags.json) process.stdout.write(JSON.stringify(result) + '\n');
  else {
    const v = result.value as number;
    const std = result.std !== undefined ? ` ± ${(result.std as number).toFixed(4)} over ${String(result.splits)} splits` : '';
    process.stdout.write(`${tr.meta.kind} features (${tr.data.d} dims, ${tr.data.n} training examples): accuracy ${v.toFixed(4)}${std} on ${String(result.n)} eval examples, C ${Array.isArray(result.C) ? result.C.join(',') : String(result.C)}\n`);
  }
}

async function compare(flags: CompareFlags): Promise<void> {
  const seed = num('--seed', flags.seed, { int: true, min: 0 });
  const task = resolveTask(flags.task);
  const drop = (xs: Example[]) => (flags.skipEmpty ? xs.filter((e) => exampleText(task, e).trim() !== '') : xs);
  const all = drop(loadExamples(task, flags.train));
  let train: typeof all;
  let evalSet: typeof all;
  // MPQA and CR have no test split: the reference averages over random 90/10 splits
  const splits = !flags.eval && SPLIT_TASKS.has(task.name) ? { count: num('--splits', flags.splits, { int: true, min: 1 }), testFraction: num('--test-fraction', flags.testFraction, { min: 0, max: 1 }), seed } : null;
  if (flags.eval) {
    train = all;
    evalSet = drop(loadExamples(task, flags.eval));
  } else if (splits) {
    train = all;
    evalSet = [];
  } else ({ train, eval: evalSet } = splitExamples(all, num('--eval-fraction', flags.evalFraction), seed));
  const limit = (flag: string, v: string | undefined) => (v === undefined ? null : num(flag, v, { int: true, min: 2 }));
  train = sampleExamples(train, limit('--train-limit', flags.trainLimit), seed, 'train');
  evalSet = sampleExamples(evalSet, limit('--eval-limit', flags.evalLimit), seed, 'eval');
  const model = await loadTransformer(flags.model, { threads: num('--threads', flags.threads, { int: true, min: 1 }) });
  const progress = new ProgressLine();
  let stage = '';
  let t0 = performance.now();
  const r = await compareProbes(
    model,
    task,
    train,
    evalSet,
    {
      folds: num('--cv', flags.cv, { int: true, min: 2 }),
      Cs: flags.cs !== undefined ? parseCs(flags.cs) : null,
      standardize: Boolean(flags.standardize),
      prompt: flags.prompt ?? null,
      batchSize: num('--batch-size', flags.batchSize, { int: true, min: 1 }),
      maxIter: num('--max-iter', flags.maxIter, { int: true, min: 1 }),
      splits,
    },
    (p) => {
      if (!flags.progress) return;
      if (p.stage !== stage) {
        stage = p.stage;
        t0 = performance.now();
      }
      const rate = p.done / ((performance.now() - t0) / 1000);
      progress.update(`${p.stage} ${p.done}/${p.total}  ETA ${fmtEta((p.total - p.done) / rate)}`, p.done, p.total);
    },
  );
  const record = { ...r, model: flags.model, train: flags.train, eval: flags.eval ?? null, seed };
  if (flags.out) atomicWrite(flags.out, stableStringify(record));
  if (flags.html) atomicWrite(flags.html, compareReport(r, flags.model));
  process.stdout.write(flags.json ? JSON.stringify(record) + '\n' : renderCompareTable(r));
}
