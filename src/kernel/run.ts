/**
 * `kernel run`: the paper's question on k-shot data. For every LM-BFF seed, draw k train + k dev examples
 * per class from the pool; compute each kernel on (train, dev, test), fit its solver with the grid chosen
 * on dev; fine-tune the same model with a prompt on the same train set (SGD next to K^SGD, Adam next to
 * the SignGD kernels) for a fixed number of steps, the learning rate chosen on dev by the final weights'
 * accuracy; report test accuracy per seed and mean ± population std over seeds.
 *
 * The fine-tuned model is the final one, not the best dev checkpoint: the training loop also evaluates
 * step 0, and on this scale "best checkpoint" is often the untrained model, which would report zero-shot
 * accuracy as fine-tuning accuracy. The zero-shot test accuracy is reported separately.
 *
 * The run folder keeps each seed's k-shot files, kernel folders and fine-tuning runs; a rerun reuses what
 * finished (kernel folders resume block by block, fine-tuning runs resume from their checkpoint).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import { asLanguageModel, loadTransformer } from '../heads/model.ts';
import { evaluate, kShotSplit, lmBffTestSet, readRecords, resolveTask, type Example, type RawRecord } from '../tasks/index.ts';
import { train as fineTune } from '../train/loop.ts';
import type { TrainConfig } from '../train/options.ts';
import type { KernelProgress } from './accumulate.ts';
import { computeKernelSets, problemFromKernels, problemFromTensors } from './compute.ts';
import type { KernelFormula } from './formula.ts';
import { aggregateBySeed, gridSearch } from './select.ts';
import type { SolverName, SolverOptions } from './solvers.ts';
import { KERNEL_FILE, REPORT_FILE, readKernelFolder } from './store.ts';
import { kernelReport } from './report.ts';

export interface FineTuneGrid {
  steps: number;
  batch: number;
  sgdLrs: number[];
  adamLrs: number[];
}

export interface RunOptions {
  model: string;
  /** built-in task name or task file */
  task: string;
  /** the pool k-shot samples are drawn from */
  pool: string;
  test: string;
  k: number;
  seeds: number[];
  formulas: KernelFormula[];
  /** solver for the SGD / SignGD kernels (A-SignGD always uses `asym` on the binary kernel) */
  solver: SolverName;
  params: string;
  testLimit?: number;
  ft: FineTuneGrid | null;
  out: string;
  threads?: number;
  memBytes?: number;
  projDim?: number;
  onMessage?: (m: string) => void;
  onProgress?: (what: string, p: KernelProgress) => void;
}

export interface SeedResult {
  seed: number;
  formula: KernelFormula;
  kernel: { solver: SolverName; dev: number; test: number; best: SolverOptions; seconds: number };
  ft: { optimizer: 'sgd' | 'adam'; lr: number; dev: number; test: number; steps: number; seconds: number } | null;
}

export interface RunTableRow {
  formula: KernelFormula;
  kernelMean: number;
  kernelStd: number;
  ftOptimizer: 'sgd' | 'adam' | null;
  ftMean: number | null;
  ftStd: number | null;
  seeds: number;
}

export interface RunSummary {
  task: string;
  model: string;
  k: number;
  seeds: number[];
  testSize: number;
  /** the untrained model's test accuracy with the same prompt */
  zeroShotTest: number;
  rows: SeedResult[];
  table: RunTableRow[];
  seconds: number;
  peakRssMb: number;
}

function ftOptimizer(f: KernelFormula): 'sgd' | 'adam' {
  return f === 'sgd' ? 'sgd' : 'adam';
}

function writeJsonl(path: string, recs: readonly RawRecord[]): void {
  atomicWrite(path, recs.map((r) => JSON.stringify(r.value)).join('\n') + '\n');
}

function ftConfig(o: RunOptions, opt: 'sgd' | 'adam', lr: number, trainFile: string, devFile: string, seed: number, devSize: number): TrainConfig {
  const ft = o.ft!;
  return {
    version: 1,
    model: resolve(o.model),
    task: existsSync(o.task) ? resolve(o.task) : o.task,
    data: trainFile,
    dev: devFile,
    numTrain: null,
    numDev: 0,
    devLimit: devSize,
    optimizer: { name: opt, lr, weightDecay: 0, momentum: 0, momentumForm: 'pytorch', nesterov: false, beta1: 0.9, beta2: 0.999, eps: 1e-8, epsMode: 'outside', zoEps: 1e-3, zoSamples: 1, zoDistribution: 'gaussian', zoRule: 'sgd', zoObjective: 'ce' },
    schedule: 'constant',
    warmupSteps: 0,
    maxSteps: ft.steps,
    batchSize: ft.batch,
    gradAccum: 1,
    clipNorm: null,
    evalEvery: ft.steps,
    saveEvery: ft.steps,
    seed,
    peft: { kind: 'full' },
    objective: 'auto',
    svag: 1,
    maxLength: null,
    threads: o.threads ?? null,
  };
}

export async function runKernelExperiment(o: RunOptions): Promise<RunSummary> {
  const t0 = performance.now();
  const task = resolveTask(o.task);
  mkdirSync(o.out, { recursive: true });
  const records = readRecords(o.pool);
  const pool = records.map((r) => ({ r, ex: task.parse(r) }));
  if (pool.some((p) => p.ex.length !== 1)) throw new LmtuneError('DATA', `${o.pool}: the k-shot pool needs one example per row`);
  const testAll = readRecords(o.test).flatMap((r) => task.parse(r));
  let test = lmBffTestSet(testAll);
  if (o.testLimit !== undefined) test = test.slice(0, o.testLimit);
  const model = await loadTransformer(o.model, o.threads ? { threads: o.threads } : {});
  const zeroShotTest = (await evaluate(asLanguageModel(model), task, test, { batchSize: 8 })).value;
  const rows: SeedResult[] = [];
  let peak = process.memoryUsage().rss;
  for (const seed of o.seeds) {
    const split = kShotSplit(pool, (p) => p.ex[0]!.label, o.k, seed);
    const dir = join(o.out, `seed-${seed}`);
    const trainFile = resolve(join(dir, 'train.jsonl'));
    const devFile = resolve(join(dir, 'dev.jsonl'));
    writeJsonl(trainFile, split.train.map((p) => p.r));
    writeJsonl(devFile, split.dev.map((p) => p.r));
    const trainEx: Example[] = split.train.map((p) => p.ex[0]!);
    const devEx: Example[] = split.dev.map((p) => p.ex[0]!);
    for (const formula of o.formulas) {
      const binary = formula === 'asymmetric-signgd';
      const solver: SolverName = binary ? 'asym' : o.solver;
      const kdir = join(dir, `kernel-${formula}`);
      const tk = performance.now();
      let devP;
      let testP;
      if (existsSync(join(kdir, KERNEL_FILE))) {
        const f = readKernelFolder(kdir);
        devP = problemFromTensors(f.tensors, f.meta.classes, 'dev', kdir);
        testP = problemFromTensors(f.tensors, f.meta.classes, 'eval', kdir);
      } else {
        o.onMessage?.(`seed ${seed}: ${formula} kernel on ${trainEx.length} train, ${devEx.length} dev, ${test.length} test examples`);
        const res = await computeKernelSets({
          model,
          task,
          sets: { train: { examples: trainEx, file: trainFile }, dev: { examples: devEx, file: devFile }, eval: { examples: test, file: resolve(o.test) } },
          formula,
          params: o.params,
          binary,
          ...(o.projDim ? { projDim: o.projDim } : {}),
          ...(o.threads ? { threads: o.threads } : {}),
          ...(o.memBytes ? { memBytes: o.memBytes } : {}),
          out: kdir,
          ...(o.onProgress ? { onProgress: (p: KernelProgress) => o.onProgress!(`seed ${seed} ${formula}`, p) } : {}),
        });
        devP = problemFromKernels(res.kernels, res.labels, 'dev');
        testP = problemFromKernels(res.kernels, res.labels, 'eval');
      }
      const g = gridSearch(solver, devP, testP);
      const kernelSeconds = (performance.now() - tk) / 1000;
      peak = Math.max(peak, process.memoryUsage().rss);
      let ft: SeedResult['ft'] = null;
      if (o.ft) {
        const opt = ftOptimizer(formula);
        const prior = rows.find((r) => r.seed === seed && r.ft?.optimizer === opt);
        if (prior) ft = prior.ft;
        else {
          const tf = performance.now();
          const lrs = opt === 'sgd' ? o.ft.sgdLrs : o.ft.adamLrs;
          let best: NonNullable<SeedResult['ft']> | null = null;
          for (const lr of lrs) {
            const runDir = join(dir, `ft-${opt}-lr${lr}`);
            const summaryPath = join(runDir, 'summary.json');
            const divergedPath = `${runDir}.diverged`;
            if (existsSync(divergedPath)) continue;
            if (!existsSync(summaryPath)) {
              o.onMessage?.(`seed ${seed}: fine-tuning with ${opt}, lr ${lr}, ${o.ft.steps} steps`);
              try {
                await fineTune(ftConfig(o, opt, lr, trainFile, devFile, seed, devEx.length), runDir, {}, existsSync(join(runDir, 'checkpoint')));
              } catch (e) {
                // a diverging learning rate is a grid point that lost, not a failed experiment
                if (!(e instanceof LmtuneError && e.code === 'NUMERIC')) throw e;
                atomicWrite(divergedPath, `${e.message}\n`);
                o.onMessage?.(`seed ${seed}: ${opt} at lr ${lr} diverged (${e.message})`);
                continue;
              }
            }
            const summary = JSON.parse(readFileSync(summaryPath, 'utf8')) as { finalEval: { value: number } | null; steps: number };
            const dev = summary.finalEval?.value ?? 0;
            if (!best || dev > best.dev) {
              const tuned = await loadTransformer(join(runDir, 'final'), o.threads ? { threads: o.threads } : {});
              const r = await evaluate(asLanguageModel(tuned), task, test, { batchSize: 8 });
              best = { optimizer: opt, lr, dev, test: r.value, steps: summary.steps, seconds: 0 };
            }
            peak = Math.max(peak, process.memoryUsage().rss);
          }
          if (!best) throw new LmtuneError('NUMERIC', `seed ${seed}: fine-tuning with ${opt} diverged at every learning rate (${lrs.join(', ')})`, `lower --${opt}-lr`);
          ft = { ...best, seconds: (performance.now() - tf) / 1000 };
        }
      }
      const row: SeedResult = { seed, formula, kernel: { solver, dev: g.dev.value, test: g.test.value, best: g.best, seconds: kernelSeconds }, ft };
      rows.push(row);
      o.onMessage?.(`seed ${seed} ${formula}: kernel ${(100 * row.kernel.test).toFixed(1)}% (dev ${(100 * row.kernel.dev).toFixed(1)}%)${ft ? `, ${ft.optimizer} fine-tuning ${(100 * ft.test).toFixed(1)}% (dev ${(100 * ft.dev).toFixed(1)}%, lr ${ft.lr})` : ''}`);
    }
  }
  const table: RunTableRow[] = o.formulas.map((formula) => {
    const rs = rows.filter((r) => r.formula === formula);
    const k = aggregateBySeed(rs.map((r) => ({ seed: r.seed, dev: r.kernel.dev, test: r.kernel.test })));
    const fts = rs.filter((r) => r.ft);
    const f = fts.length ? aggregateBySeed(fts.map((r) => ({ seed: r.seed, dev: r.ft!.dev, test: r.ft!.test }))) : null;
    return { formula, kernelMean: k.mean, kernelStd: k.std, ftOptimizer: o.ft ? ftOptimizer(formula) : null, ftMean: f?.mean ?? null, ftStd: f?.std ?? null, seeds: rs.length };
  });
  const summary: RunSummary = {
    task: task.name,
    model: o.model,
    k: o.k,
    seeds: o.seeds,
    testSize: test.length,
    zeroShotTest,
    rows,
    table,
    seconds: (performance.now() - t0) / 1000,
    peakRssMb: Math.round(Math.max(peak, process.memoryUsage().rss) / 2 ** 20),
  };
  atomicWrite(join(o.out, 'results.json'), stableStringify(summary));
  // heat maps of the first seed's kernels
  const seed = o.seeds[0]!;
  const shown = o.formulas.map((f) => {
    const folder = readKernelFolder(join(o.out, `seed-${seed}`, `kernel-${f}`));
    const K = folder.tensors.train_train!;
    const labels = Int32Array.from(folder.tensors.labels_train!.data as BigInt64Array, (x) => Number(x));
    return { name: `${f} (seed ${seed})`, K: K.data as Float64Array, n: labels.length, C: folder.meta.classes, labels };
  });
  atomicWrite(join(o.out, REPORT_FILE), kernelReport(`eNTK vs fine-tuning: ${task.name}, k = ${o.k}`, shown, summary));
  return summary;
}

/** The kernel-vs-fine-tuning table as text. */
export function renderRunTable(s: RunSummary): string {
  const pct = (m: number | null, sd: number | null) => (m === null ? '-' : `${(100 * m).toFixed(1)} (${(100 * (sd ?? 0)).toFixed(1)})`);
  const lines = [
    `${s.task}, k = ${s.k} per class, ${s.seeds.length} seeds, ${s.testSize} test examples: test accuracy, mean (std) over seeds`,
    `${'kernel'.padEnd(20)}${'kernel solver'.padStart(16)}${'fine-tuning'.padStart(22)}`,
  ];
  for (const r of s.table) lines.push(`${r.formula.padEnd(20)}${pct(r.kernelMean, r.kernelStd).padStart(16)}${`${r.ftOptimizer ?? ''} ${pct(r.ftMean, r.ftStd)}`.padStart(22)}`);
  lines.push(`zero-shot (no training): ${(100 * s.zeroShotTest).toFixed(1)}`);
  lines.push(`time ${s.seconds.toFixed(0)} s, peak memory ${s.peakRssMb} MB`);
  return lines.join('\n') + '\n';
}
