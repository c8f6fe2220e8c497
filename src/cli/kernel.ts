/**
 * `lmtune kernel compute | solve | run | diagnose | compare`: the eNTK of prompt-based fine-tuning (Malladi et al. 2023).
 * Flags are parsed and checked here; the work is in src/kernel/.
 */
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { loadTransformer } from '../heads/model.ts';
import { loadExamples, LMBFF_SEEDS, resolveTask, type Example } from '../tasks/index.ts';
import { computeKernelSets, problemFromTensors, type KernelSet } from '../kernel/compute.ts';
import { KERNEL_FORMULAS, type KernelFormula } from '../kernel/formula.ts';
import { defaultGrid, gridSearch } from '../kernel/select.ts';
import { SOLVERS, solve, type SolveResult, type SolverName, type SolverOptions } from '../kernel/solvers.ts';
import { compareKernelFolders, readKernelFolder } from '../kernel/store.ts';
import { renderRunTable, runKernelExperiment } from '../kernel/run.ts';
import { diagnose } from '../kernel/diagnose.ts';
import { encodeForKernel, selectParams } from '../kernel/model-source.ts';
import type { KernelProgress } from '../kernel/accumulate.ts';
import { fmtEta, num, oneOf, ProgressLine } from './flags.ts';

function progressRenderer(): (what: string, p: KernelProgress) => void {
  const line = new ProgressLine();
  return (what, p) => line.update(`${what}: parameter block ${Math.min(p.block + 1, p.blocks)}/${p.blocks}  examples ${p.done}/${p.total}  ETA ${fmtEta(p.etaSeconds)}`, p.done, p.total);
}

function limited(exs: Example[], limit: string | undefined, flag: string): Example[] {
  return limit === undefined ? exs : exs.slice(0, num(flag, limit, { int: true, min: 1 }));
}

function f0Scaling(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (v === 'inf' || v === 'Infinity') return Infinity;
  return num('--f0-scaling', v, { min: Number.MIN_VALUE });
}

interface ComputeFlags {
  model: string;
  task: string;
  train: string;
  eval?: string;
  dev?: string;
  formula: string;
  params: string;
  binary?: boolean;
  projDim?: string;
  projSeed: string;
  out: string;
  batch: string;
  memMb: string;
  threads: string;
  limitTrain?: string;
  limitEval?: string;
  queue?: string;
}

/** `kernel compute --queue`: this process loads the model for the blocks and meta.json; workers compute the blocks */
async function computeOnQueue(o: ComputeFlags, formula: KernelFormula): Promise<void> {
  const { connectionFromUrl } = await import('../distributed/jobs.ts');
  const { computeKernelSetsQueued } = await import('../distributed/kernel-blocks.ts');
  const { renderQueueProgress } = await import('../distributed/coordinator.ts');
  connectionFromUrl(o.queue!);
  const { existsSync } = await import('node:fs');
  const { resolve } = await import('node:path');
  const threads = num('--threads', o.threads, { int: true, min: 1 });
  // workers may start in other folders: every path they read is absolute
  const sets: Record<string, { file: string; limit: number | null }> = { train: { file: resolve(o.train), limit: o.limitTrain !== undefined ? num('--limit-train', o.limitTrain, { int: true, min: 1 }) : null } };
  const limitEval = o.limitEval !== undefined ? num('--limit-eval', o.limitEval, { int: true, min: 1 }) : null;
  if (o.eval) sets.eval = { file: resolve(o.eval), limit: limitEval };
  if (o.dev) sets.dev = { file: resolve(o.dev), limit: limitEval };
  const spec = {
    task: existsSync(o.task) ? resolve(o.task) : o.task,
    sets,
    formula,
    params: o.params,
    binary: o.binary ?? false,
    projDim: o.projDim ? num('--proj-dim', o.projDim, { int: true, min: 1 }) : null,
    projSeed: num('--proj-seed', o.projSeed, { int: true, min: 0 }),
    batch: num('--batch', o.batch, { int: true, min: 1 }),
    memBytes: num('--mem-mb', o.memMb, { min: 1 }) * 2 ** 20,
    threads,
  };
  const model = await loadTransformer(resolve(o.model), { threads });
  const line = new ProgressLine();
  const res = await computeKernelSetsQueued(model, spec, resolve(o.out), {
    queueUrl: o.queue!,
    modelDir: resolve(o.model),
    onMessage: (m) => process.stderr.write(`${m}\n`),
    onQueueProgress: (p) => line.update(renderQueueProgress(p), p.done, p.total),
  });
  const m = res.meta;
  process.stderr.write(`${m.formula} kernel of ${m.params.count.toLocaleString('en-US')} parameters (${m.params.tensors} tensors, ${m.blocks} blocks on the queue), ${Object.entries(m.sets).map(([k, v]) => `${v.n} ${k}`).join(', ')}: ${m.timings!.seconds.toFixed(1)} s → ${o.out}\n`);
}

interface SolveFlags {
  kernels: string;
  solver: string;
  reg?: string;
  f0Scaling?: string;
  gamma?: string;
  lambda?: string;
  C?: string;
  epsilon?: string;
  grid?: boolean;
  allowSingular?: boolean;
  json?: boolean;
}

interface RunFlags {
  model: string;
  task: string;
  data: string;
  test: string;
  k: string;
  seeds: string;
  formulas: string;
  solver: string;
  params: string;
  testLimit?: string;
  ft: boolean;
  ftSteps: string;
  ftBatch: string;
  sgdLr: string;
  adamLr: string;
  projDim?: string;
  memMb: string;
  threads: string;
  out: string;
  json?: boolean;
}

function numList(flag: string, v: string): number[] {
  return v.split(',').map((x) => num(flag, x));
}

function printSolve(r: SolveResult, extra: Record<string, unknown>, json: boolean | undefined): void {
  const hyper = Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, v === Infinity ? 'inf' : v]));
  if (json) {
    process.stdout.write(JSON.stringify({ metric: r.metric, value: r.value, n: r.n, solver: r.solver, ...(r.rank !== undefined ? { rank: r.rank } : {}), ...hyper }) + '\n');
    return;
  }
  process.stdout.write(`${r.solver}: ${r.metric} ${(100 * r.value).toFixed(2)}% on ${r.n} eval examples${r.rank !== undefined ? ` (train kernel rank ${r.rank})` : ''}  ${JSON.stringify(hyper)}\n`);
}

export function register(program: Command): void {
  const kernel = program.command('kernel').description('eNTK of prompt-based fine-tuning (arXiv 2210.05643): compute kernels, solve them, compare with fine-tuning');

  kernel
    .command('compute')
    .description('per-example Jacobians of the label-word logits → float64 kernels in DIR/kernels.safetensors (resumable)')
    .requiredOption('--model <dir>', 'checkpoint folder')
    .requiredOption('--task <name|file>', 'built-in task or task file (its template and label words)')
    .requiredOption('--train <file>', 'training examples')
    .option('--eval <file>', 'evaluation examples (train_eval kernel)')
    .option('--dev <file>', 'dev examples for choosing solver hyperparameters (train_dev kernel)')
    .requiredOption('--formula <f>', `${KERNEL_FORMULAS.join(' | ')}`)
    .option('--params <p>', 'all | lora | bitfit | a regex over parameter names', 'all')
    .option('--binary', 'f = f₁ − f₀ and labels ±1 (two-class tasks; required by asymmetric-signgd)')
    .option('--proj-dim <d>', 'kernel of JL-projected gradients (Rademacher, dimension d)')
    .option('--proj-seed <s>', 'projection seed', '0')
    .requiredOption('--out <dir>', 'kernel folder (a rerun with the same flags resumes)')
    .option('--batch <n>', 'examples per graph call', '8')
    .option('--mem-mb <n>', 'memory for one parameter block of training Jacobians', '1024')
    .option('--threads <n>', 'onnxruntime threads', '1')
    .option('--limit-train <n>', 'only the first n training examples')
    .option('--limit-eval <n>', 'only the first n eval/dev examples')
    .option('--queue <url>', 'one job per parameter block for the `lmtune worker`s of this Redis queue (redis://HOST:PORT[/DB]); --out, --model and the data must be at the same paths on every worker')
    .action(async (o: ComputeFlags) => {
      const formula = oneOf('--formula', o.formula, KERNEL_FORMULAS) as KernelFormula;
      if (o.queue !== undefined) return computeOnQueue(o, formula);
      const task = resolveTask(o.task);
      const sets: Record<string, KernelSet> = { train: { examples: limited(loadExamples(task, o.train), o.limitTrain, '--limit-train'), file: o.train } };
      if (o.eval) sets.eval = { examples: limited(loadExamples(task, o.eval), o.limitEval, '--limit-eval'), file: o.eval };
      if (o.dev) sets.dev = { examples: limited(loadExamples(task, o.dev), o.limitEval, '--limit-eval'), file: o.dev };
      const threads = num('--threads', o.threads, { int: true, min: 1 });
      const model = await loadTransformer(o.model, { threads });
      const render = progressRenderer();
      const res = await computeKernelSets({
        model,
        task,
        sets,
        formula,
        params: o.params,
        binary: o.binary ?? false,
        ...(o.projDim ? { projDim: num('--proj-dim', o.projDim, { int: true, min: 1 }), projSeed: num('--proj-seed', o.projSeed, { int: true, min: 0 }) } : {}),
        batch: num('--batch', o.batch, { int: true, min: 1 }),
        memBytes: num('--mem-mb', o.memMb, { min: 1 }) * 2 ** 20,
        threads,
        out: o.out,
        onProgress: (p) => render('kernel', p),
      });
      const m = res.meta;
      process.stderr.write(`${m.formula} kernel of ${m.params.count.toLocaleString('en-US')} parameters (${m.params.tensors} tensors, ${m.blocks} blocks), ${Object.entries(m.sets).map(([k, v]) => `${v.n} ${k}`).join(', ')}: ${m.timings!.seconds.toFixed(1)} s, peak memory ${m.peakRssMb} MB → ${o.out}\n`);
    });

  kernel
    .command('solve')
    .description('fit a kernel solver on train and score the eval set (or choose its hyperparameters on dev with --grid)')
    .requiredOption('--kernels <dir>', 'folder written by kernel compute')
    .option('--solver <s>', SOLVERS.join(' | '), 'lstsq')
    .option('--reg <r>', 'relative ridge: K + r·‖K‖₂·I')
    .option('--f0-scaling <s>', 'fit Y − f₀/s and add f₀/s back (inf: ignore f₀, the default)')
    .option('--gamma <g>', 'asym: γ')
    .option('--lambda <l>', 'asym: λ')
    .option('--C <c>', 'svr/svc: C', '1')
    .option('--epsilon <e>', 'svr: ε', '0.1')
    .option('--grid', 'choose the hyperparameters on the dev kernels (compute with --dev) and report eval')
    .option('--allow-singular', 'lstsq: accept a singular train kernel without a ridge (minimum-norm solution)')
    .option('--json', 'print {metric, value, n, ...} as one JSON line')
    .action((o: SolveFlags) => {
      const solver = oneOf('--solver', o.solver, SOLVERS) as SolverName;
      const folder = readKernelFolder(o.kernels);
      const meta = folder.meta;
      if (solver === 'asym' && meta.formula !== 'asymmetric-signgd') {
        throw new LmtuneError('CONFIG', `--solver asym needs an asymmetric-signgd kernel; ${o.kernels} holds ${meta.formula}`, 'compute it with --formula asymmetric-signgd --binary');
      }
      const opts: SolverOptions = {
        ...(o.reg !== undefined ? { reg: num('--reg', o.reg, { min: 0 }) } : {}),
        ...(o.f0Scaling !== undefined ? { f0Scaling: f0Scaling(o.f0Scaling)! } : {}),
        ...(o.gamma !== undefined ? { gamma: num('--gamma', o.gamma, { min: Number.MIN_VALUE }) } : {}),
        ...(o.lambda !== undefined ? { lambda: num('--lambda', o.lambda, { min: 0, max: 1 }) } : {}),
        ...(solver === 'svr' || solver === 'svc' ? { C: num('--C', o.C ?? '1', { min: Number.MIN_VALUE }) } : {}),
        ...(solver === 'svr' ? { epsilon: num('--epsilon', o.epsilon ?? '0.1', { min: 0 }) } : {}),
        ...(o.allowSingular ? { allowSingular: true } : {}),
      };
      const evalP = problemFromTensors(folder.tensors, meta.classes, 'eval', o.kernels);
      if (o.grid) {
        const devP = problemFromTensors(folder.tensors, meta.classes, 'dev', o.kernels);
        const grid = defaultGrid(solver).map((g) => ({ ...opts, ...g }));
        const g = gridSearch(solver, devP, evalP, grid);
        printSolve(g.test, { ...g.best, dev: g.dev.value, tried: g.tried, skipped: g.skipped, formula: meta.formula }, o.json);
        return;
      }
      printSolve(solve(solver, evalP, opts), { ...opts, formula: meta.formula }, o.json);
    });

  kernel
    .command('diagnose')
    .description('linearization checks between θ₀ and fine-tuned weights: accuracy share of the linearized model, relative kernel change')
    .requiredOption('--model <dir>', 'the base checkpoint θ₀')
    .requiredOption('--finetuned <dir>', 'the fine-tuned model (e.g. RUN/final; LoRA adapters are merged)')
    .requiredOption('--task <name|file>', 'built-in task or task file')
    .requiredOption('--train <file>', 'examples for the kernel change')
    .requiredOption('--eval <file>', 'examples for the linearized model')
    .option('--formula <f>', 'kernel whose change is measured', 'sgd')
    .option('--params <p>', 'all | bitfit | a regex over parameter names', 'all')
    .option('--limit-train <n>', 'only the first n training examples')
    .option('--limit-eval <n>', 'only the first n eval examples')
    .option('--batch <n>', 'examples per graph call', '8')
    .option('--threads <n>', 'onnxruntime threads', '1')
    .option('--json', 'one JSON object')
    .action(async (o: { model: string; finetuned: string; task: string; train: string; eval: string; formula: string; params: string; limitTrain?: string; limitEval?: string; batch: string; threads: string; json?: boolean }) => {
      const formula = oneOf('--formula', o.formula, KERNEL_FORMULAS) as KernelFormula;
      if (o.params === 'lora') throw new LmtuneError('CONFIG', '--params lora: diagnose differentiates base weights (LoRA runs are merged into them)', 'use --params all or a regex');
      const task = resolveTask(o.task);
      const threads = num('--threads', o.threads, { int: true, min: 1 });
      const base = await loadTransformer(o.model, { threads });
      const tuned = await loadTransformer(o.finetuned, { threads });
      const enc = encodeForKernel(task, base, {
        train: limited(loadExamples(task, o.train), o.limitTrain, '--limit-train'),
        eval: limited(loadExamples(task, o.eval), o.limitEval, '--limit-eval'),
      });
      const d = await diagnose(base, tuned, enc, { params: selectParams(base, o.params), formula, batch: num('--batch', o.batch, { int: true, min: 1 }) });
      const out = { n: d.n, accuracy: d.accuracy, linearized_share: d.linearizedShare, linearization_error: d.linearizationError, kernel_change: d.kernelChange, formula: d.formula };
      if (o.json) {
        process.stdout.write(JSON.stringify(out) + '\n');
        return;
      }
      const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
      process.stdout.write(
        `eval accuracy on ${d.n} examples: θ₀ ${pct(d.accuracy.initial)}, fine-tuned ${pct(d.accuracy.finetuned)}, linearized ${pct(d.accuracy.linearized)}\n` +
          `share of the fine-tuning gain the linearized model recovers: ${d.linearizedShare === null ? 'n/a (fine-tuning did not change the accuracy)' : pct(d.linearizedShare)}\n` +
          `‖f_lin − f_FT‖ / ‖f_FT − f₀‖ on the eval logits: ${d.linearizationError.toFixed(4)}\n` +
          `relative ${d.formula} kernel change ‖K(θ_FT) − K(θ₀)‖_F / ‖K(θ₀)‖_F on ${enc.sets.train!.length} training examples: ${d.kernelChange.toFixed(4)}\n`,
      );
    });

  kernel
    .command('compare')
    .description('relative Frobenius difference ‖A − B‖_F / ‖B‖_F of each kernel two folders share (e.g. projected vs exact)')
    .argument('<a>', 'kernel folder')
    .argument('<b>', 'reference kernel folder')
    .option('--json', 'one JSON object')
    .action((a: string, b: string, o: { json?: boolean }) => {
      const fa = readKernelFolder(a);
      const fb = readKernelFolder(b);
      if (fa.meta.model.fingerprint !== fb.meta.model.fingerprint) throw new LmtuneError('DATA', `${a} and ${b} are kernels of different models (fingerprints ${fa.meta.model.fingerprint}, ${fb.meta.model.fingerprint})`);
      for (const s of Object.keys(fb.meta.sets)) {
        if (fa.meta.sets[s]?.sha256 !== fb.meta.sets[s]?.sha256 || fa.meta.sets[s]?.n !== fb.meta.sets[s]?.n) throw new LmtuneError('DATA', `${a} and ${b} were computed on different ${s} data`);
      }
      const d = compareKernelFolders(fa, fb);
      process.stdout.write(o.json ? JSON.stringify(d) + '\n' : Object.entries(d).map(([k, v]) => `${k.padEnd(14)} ${v.toExponential(3)}`).join('\n') + '\n');
    });

  kernel
    .command('run')
    .description('k-shot kernel accuracy next to prompt-based fine-tuning over the LM-BFF seeds (compute + solve + fine-tune)')
    .requiredOption('--model <dir>', 'checkpoint folder')
    .requiredOption('--task <name|file>', 'built-in task or task file')
    .requiredOption('--data <file>', 'pool the k-shot train/dev samples are drawn from')
    .requiredOption('--test <file>', 'test examples (capped at 1000, seed 42, as LM-BFF)')
    .option('--k <n>', 'examples per class in train (and in dev)', '16')
    .option('--seeds <list>', 'data seeds', LMBFF_SEEDS.join(','))
    .option('--formulas <list>', 'kernels to compare', 'sgd,signgd')
    .option('--solver <s>', 'solver for the sgd/signgd kernels (asymmetric-signgd uses asym)', 'lstsq')
    .option('--params <p>', 'all | lora | bitfit | regex', 'all')
    .option('--test-limit <n>', 'only the first n test examples')
    .option('--no-ft', 'skip the fine-tuning comparison')
    .option('--ft-steps <n>', 'fine-tuning steps', '100')
    .option('--ft-batch <n>', 'fine-tuning batch size', '8')
    .option('--sgd-lr <list>', 'SGD learning rates tried (chosen on dev)', '0.01,0.1')
    .option('--adam-lr <list>', 'Adam learning rates tried (chosen on dev)', '1e-4,1e-3')
    .option('--proj-dim <d>', 'JL-projected kernels')
    .option('--mem-mb <n>', 'memory for one parameter block of training Jacobians', '1024')
    .option('--threads <n>', 'onnxruntime threads', '1')
    .requiredOption('--out <dir>', 'run folder (a rerun reuses finished kernels and fine-tuning runs)')
    .option('--json', 'print the summary as one JSON object')
    .action(async (o: RunFlags) => {
      const formulas = o.formulas.split(',').map((f) => oneOf('--formulas', f.trim(), KERNEL_FORMULAS) as KernelFormula);
      const render = progressRenderer();
      const s = await runKernelExperiment({
        model: o.model,
        task: o.task,
        pool: o.data,
        test: o.test,
        k: num('--k', o.k, { int: true, min: 1 }),
        seeds: numList('--seeds', o.seeds),
        formulas,
        solver: oneOf('--solver', o.solver, SOLVERS) as SolverName,
        params: o.params,
        ...(o.testLimit ? { testLimit: num('--test-limit', o.testLimit, { int: true, min: 1 }) } : {}),
        ft: o.ft
          ? {
              steps: num('--ft-steps', o.ftSteps, { int: true, min: 1 }),
              batch: num('--ft-batch', o.ftBatch, { int: true, min: 1 }),
              sgdLrs: numList('--sgd-lr', o.sgdLr),
              adamLrs: numList('--adam-lr', o.adamLr),
            }
          : null,
        out: o.out,
        threads: num('--threads', o.threads, { int: true, min: 1 }),
        memBytes: num('--mem-mb', o.memMb, { min: 1 }) * 2 ** 20,
        ...(o.projDim ? { projDim: num('--proj-dim', o.projDim, { int: true, min: 1 }) } : {}),
        onMessage: (m) => process.stderr.write(`${m}\n`),
        onProgress: render,
      });
      process.stdout.write(o.json ? JSON.stringify(s) + '\n' : renderRunTable(s));
    });
}
