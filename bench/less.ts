/**
 * LESS benchmarks.
 *
 * `npm run bench -- less`: gradient-feature extraction (per-example LoRA gradients, Adam preconditioning,
 * dense Rademacher projection to d = 8192, normalization) on a GPT-2-small-shaped model (random weights,
 * 12 layers, d = 768, vocab 50257), 128-token sequences, LoRA r = 8 (α = 32) on attn.c_attn and
 * attn.c_proj; examples/s, against the reference design in PyTorch (shared/bench/torch_gpt2.py less:
 * batch-1 backward per example, TRAK's BasicProjector) in the same run when python3 can import torch.
 *
 * `node --import tsx bench/less.ts e2e [--target trec|sst5] [--stride n] [--model DIR] ...` (flags at
 * benchLessE2e): the selection end to end on the embedded model (assets/tiny-english-lm, or --model) with
 * shared/data/instruct-pool (every n-th row) and its target: the selected mix, then LoRA training on the
 * LESS selection and on random selections of the same size, evaluated on held-out rows of the target task
 * in the target's template (chat evaluation).
 */
import '../src/node/host.ts';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { loadavg, tmpdir } from 'node:os';
import { Rng } from '../src/util/rng.ts';
import { mannWhitneyGreater, signFlipGreater } from '../src/util/exact-tests.ts';
import { asLanguageModel, loadTransformer } from '../src/heads/model.ts';
import { attachPeft } from '../src/peft/index.ts';
import { RademacherProjection } from '../src/projection/rademacher.ts';
import { SrhtProjection } from '../src/projection/srht.ts';
import { KroneckerProjection } from '../src/projection/kronecker.ts';
import { kroneckerFeatures, kroneckerMatrices, loraTokenRows } from '../src/select/kronecker.ts';
import { applyAdam, gradLayout, normalizeRows, perExampleGradients, type GradExample } from '../src/select/features.ts';
import { runStage } from '../src/select/pipeline.ts';
import { gradChunkRows } from '../src/select/grads.ts';
import type { SelectConfig } from '../src/select/config.ts';
import { train } from '../src/train/loop.ts';
import type { TrainConfig } from '../src/train/options.ts';
import { loadChatExamples } from '../src/tasks/chat-task.ts';
import { evaluateChat } from '../src/tasks/chat-eval.ts';
import { gpt2Small, peakRssMb, torchBaseline } from './harness.ts';

const SHAPE = { layers: 12, d: 768, heads: 12, vocab: 50257, seq: 128, loraR: 8, projDim: 8192 };


export async function benchLess(threads: number): Promise<Record<string, unknown>> {
  const batchSize = Number(process.env.LESS_BENCH_BATCH ?? 16);
  const model = gpt2Small(threads);
  await attachPeft(model, { kind: 'lora', rank: SHAPE.loraR, alpha: 4 * SHAPE.loraR, dropout: 0, targets: ['attn\\.c_attn$', 'attn\\.c_proj$'] }, 0);
  const rng = new Rng(1);
  for (const n of model.adapters!.names()) if (n.endsWith('lora_B.weight')) model.tensor(n).fill(1e-3);
  const layout = gradLayout(model, model.trainableNames());
  // by default one chunk of `select grads` (the rows it projects together: 144 here), so the projection's
  // cost per row is the pipeline's; fewer rows pay the ±1 blocks' streaming over fewer rows
  const examples = Number(process.env.LESS_BENCH_EXAMPLES ?? gradChunkRows(layout.dim, batchSize));
  // PyTorch's rate does not depend on the count (batch-1 backward, projection per 16 rows): 32 rows bound its minutes
  const torchExamples = Number(process.env.LESS_BENCH_TORCH_EXAMPLES ?? Math.min(examples, 32));
  const moments = new Map(layout.names.map((n, i) => [n, { expAvg: Float32Array.from({ length: layout.sizes[i]! }, () => rng.normal() * 1e-4), expAvgSq: Float32Array.from({ length: layout.sizes[i]! }, () => rng.uniform() * 1e-8) }]));
  const exs: GradExample[] = Array.from({ length: examples }, () => {
    const ids = Array.from({ length: SHAPE.seq }, () => rng.int(SHAPE.vocab));
    const supervised = new Uint8Array(SHAPE.seq).fill(1);
    supervised[0] = 0;
    return { ids, supervised };
  });
  const projection = new RademacherProjection({ seed: 0, inDim: layout.dim, outDim: SHAPE.projDim, threads });
  // warm-up: compile the gradient graph (the projection GEMM graph is small and compiled in the timed pass)
  await perExampleGradients(model, layout, exs.slice(0, batchSize), batchSize);
  // timed, in the stages extractFeatures runs: batched gradients + Adam, then one projection of all rows
  let t = performance.now();
  const all = new Float32Array(examples * layout.dim);
  for (let s = 0; s < examples; s += batchSize) all.set((await perExampleGradients(model, layout, exs.slice(s, s + batchSize), batchSize)).grads, s * layout.dim);
  applyAdam(all, examples, layout, moments);
  const gradSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  normalizeRows(await projection.project(all, examples), examples, SHAPE.projDim);
  const projSeconds = (performance.now() - t) / 1000;
  const seconds = gradSeconds + projSeconds;
  const srht = new SrhtProjection({ seed: 0, inDim: layout.dim, outDim: SHAPE.projDim });
  t = performance.now();
  normalizeRows(await srht.project(all, examples), examples, SHAPE.projDim);
  const srhtSeconds = (performance.now() - t) / 1000;
  // the structured path: activations and output gradients → P_out G P_inᵀ per LoRA matrix, factored Adam,
  // never a per-example gradient (src/select/kronecker.ts); its graph is compiled in a warm-up batch
  const kron = new KroneckerProjection({ seed: 0, matrices: kroneckerMatrices(model, layout), outDim: SHAPE.projDim, threads });
  await kroneckerFeatures(model, layout, exs.slice(0, batchSize), { batchSize, kind: 'adam', moments, projections: [kron] });
  t = performance.now();
  await kroneckerFeatures(model, layout, exs, { batchSize, kind: 'adam', moments, projections: [kron] });
  const kronSeconds = (performance.now() - t) / 1000;
  const torch = torchBaseline('less', ['--layers', '12', '--d', '768', '--heads', '12', '--vocab', '50257', '--seq', '128', '--lora-r', '8', '--proj-dim', '8192', '--examples', String(torchExamples)], threads);
  const torchRate = torch && typeof torch.less_examples_per_s === 'number' ? torch.less_examples_per_s : null;
  const rate = examples / seconds;
  return {
    bench: 'less',
    threads,
    shape: SHAPE,
    lora_params: layout.dim,
    examples,
    torch_examples: torchExamples,
    grad_batch: batchSize,
    less_examples_per_s: Math.round(rate * 100) / 100,
    grads_seconds: Math.round(gradSeconds * 10) / 10,
    projection_seconds: Math.round(projSeconds * 10) / 10,
    less_structured_examples_per_s: Math.round((examples / (gradSeconds + srhtSeconds)) * 100) / 100,
    srht_projection_seconds: Math.round(srhtSeconds * 10) / 10,
    less_kronecker_examples_per_s: Math.round((examples / kronSeconds) * 100) / 100,
    kronecker_seconds: Math.round(kronSeconds * 10) / 10,
    torch_less_examples_per_s: torchRate,
    speedup_vs_torch: torchRate ? Math.round((rate / torchRate) * 1000) / 1000 : null,
    ...(torch && 'error' in torch ? { torch_error: torch.error } : {}),
    peak_rss_mb: Math.round(peakRssMb()),
  };
}

// ---------------------------------------------------------------------------------------- end to end

const SHARED = new URL('../../shared/data/', import.meta.url).pathname;
const MODEL = new URL('../assets/tiny-english-lm', import.meta.url).pathname;

const TREC_LABELS: Record<string, string> = { DESC: 'description', ENTY: 'entity', ABBR: 'abbreviation', HUM: 'human', LOC: 'location', NUM: 'number' };
const SST5_LABELS = ['very negative', 'negative', 'neutral', 'positive', 'very positive'];

/** held-out rows of the target task in the target's template, as chat rows with choices and label */
function evalRows(target: 'trec' | 'sst5', poolText: string, n: number): string[] {
  const rows: string[] = [];
  if (target === 'trec') {
    const labels = Object.values(TREC_LABELS).sort();
    const src = readFileSync(join(SHARED, 'trec/TREC.train.all.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { text: string; label_name: string });
    for (const r of src) {
      // TREC has no test split in shared: train questions that are in neither the pool nor the target
      if (poolText.includes(r.text)) continue;
      const content = `What type of answer does the following question expect? Choose one of: ${labels.join(', ')}.\n\nQuestion: ${r.text}`;
      rows.push(JSON.stringify({ messages: [{ role: 'user', content }], choices: labels, label: TREC_LABELS[r.label_name] }));
    }
  } else {
    const src = readFileSync(join(SHARED, 'sst5/stsa.fine.test.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { text: string; label: number });
    for (const r of src) {
      const content = `Rate the sentiment of this movie review sentence on a five-point scale: very negative, negative, neutral, positive or very positive.\n\n${r.text}`;
      rows.push(JSON.stringify({ messages: [{ role: 'user', content }], choices: SST5_LABELS, label: SST5_LABELS[r.label] }));
    }
  }
  const perm = new Rng(`less-e2e/eval/${target}`).permutation(rows.length);
  return perm.slice(0, n).map((i) => rows[i]!);
}

function mix(lines: readonly string[]): Record<string, number> {
  const m: Record<string, number> = {};
  for (const l of lines) {
    const d = (JSON.parse(l) as { dataset?: string }).dataset ?? '(none)';
    m[d] = (m[d] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(m).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])));
}

/** what every downstream training of one e2e run shares */
interface FineTune {
  model: string;
  maxLength: number;
  threads: number;
  lr: number;
  epochs: number;
  loraRank: number;
  loraTargets: string[];
  scoring: 'mean' | 'sum';
}

async function fineTuneAndEvaluate(data: string, runDir: string, evalFile: string, ft: FineTune, seed: number): Promise<{ accuracy: number; choiceCe: number | null; predicted: Record<string, number>; steps: number; seconds: number }> {
  const rows = readFileSync(data, 'utf8').split('\n').filter((l) => l).length;
  const steps = Math.max(1, Math.round((ft.epochs * rows) / 8)); // at batch 8
  const cfg: TrainConfig = {
    version: 1,
    model: ft.model,
    task: 'chat',
    data,
    dev: null,
    numTrain: null,
    numDev: 0,
    devLimit: 1,
    optimizer: { name: 'adam', lr: ft.lr, weightDecay: 0, momentum: 0.9, momentumForm: 'pytorch', nesterov: false, beta1: 0.9, beta2: 0.999, eps: 1e-8, epsMode: 'outside', zoEps: 1e-3, zoSamples: 1, zoDistribution: 'gaussian', zoRule: 'sgd', zoObjective: 'ce' },
    schedule: 'linear',
    warmupSteps: Math.ceil(0.03 * steps),
    maxSteps: steps,
    batchSize: 8,
    gradAccum: 1,
    clipNorm: 1,
    evalEvery: 0,
    saveEvery: steps,
    seed,
    peft: { kind: 'lora', rank: ft.loraRank, alpha: 4 * ft.loraRank, dropout: 0, targets: ft.loraTargets },
    objective: 'lm',
    svag: 1,
    maxLength: ft.maxLength,
    threads: ft.threads,
    truncation: 'left',
    skipInvalid: true,
  };
  const t = performance.now();
  if (!existsSync(join(runDir, 'final'))) await train(cfg, runDir);
  const e = await evaluateOn(join(runDir, 'final'), evalFile, ft);
  return { ...e, steps, seconds: Math.round((performance.now() - t) / 1000) };
}

/**
 * Accuracy, and with sum scoring the mean cross-entropy of the gold choice among the choices
 * (−log softmax of the choices' summed log-probs, in nats): a finer signal than accuracy when a model
 * this small moves the probabilities without changing many argmaxes.
 */
async function evaluateOn(modelDir: string, evalFile: string, ft: FineTune): Promise<{ accuracy: number; choiceCe: number | null; predicted: Record<string, number> }> {
  const model = await loadTransformer(modelDir, { threads: ft.threads });
  const { examples } = loadChatExamples(evalFile);
  const r = await evaluateChat(asLanguageModel(model), examples, { batchSize: 16, maxLength: ft.maxLength, scoring: ft.scoring });
  let ce = 0;
  const predicted: Record<string, number> = {};
  for (const [i, p] of r.predictions.entries()) {
    const c = examples[i]!.chat.choices![p.prediction as number]!;
    predicted[c] = (predicted[c] ?? 0) + 1;
    const s = p.candidateScores!;
    const m = Math.max(...s);
    const lse = m + Math.log(s.reduce((a, x) => a + Math.exp(x - m), 0));
    ce += lse - s[(p.gold as readonly number[])[0]!]!;
  }
  return { accuracy: r.value, choiceCe: ft.scoring === 'sum' ? Math.round((ce / r.predictions.length) * 10000) / 10000 : null, predicted };
}

/**
 * The pool's warmup and gradient datastore do not depend on the target: a target's selection folder that
 * has neither is seeded with those of another target's finished run over the same pool file (same
 * configuration otherwise, which the datastore headers check), so only the target's gradients are computed.
 */
function reusePoolFeatures(base: string, sel: string): string | null {
  if (existsSync(join(sel, 'warmup'))) return null;
  for (const other of readdirSync(base).sort()) {
    const src = join(base, other, 'select');
    if (src === sel || !existsSync(join(src, 'grads', 'done.json'))) continue;
    cpSync(join(src, 'warmup'), join(sel, 'warmup'), { recursive: true });
    for (const ck of readdirSync(join(src, 'grads'))) {
      if (existsSync(join(src, 'grads', ck, 'pool'))) cpSync(join(src, 'grads', ck, 'pool'), join(sel, 'grads', ck, 'pool'), { recursive: true });
    }
    return src;
  }
  return null;
}

const stats = (xs: number[]): { mean: number; sd: number } => {
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean: Math.round(m * 10000) / 10000, sd: Math.round(sd * 10000) / 10000 };
};

/**
 * `node --import tsx bench/less.ts e2e [flags]`: selection, then downstream LoRA training on the LESS
 * selection, on random selections of the same size and (with --all-target) on every row of the target's
 * own source in the pool, each evaluated on held-out rows of the target task. Flags (defaults): --target
 * trec|sst5 (trec), --stride n (4), --epochs e warmup epochs (2), --proj-dim d (1024), --model DIR (the
 * embedded model), --max-length n (the model's positions), --out BASE, --eval n held-out rows (500),
 * --train-lr (3e-3), --train-epochs (6), --lora-r (8), --lora-targets a,b (the family's default),
 * --scoring mean|sum (sum), --random-seeds 1,2,3 (random draws), --train-seeds 1 (training seeds: the
 * LESS arm, every random draw and the all-target arm are trained with each), --all-target (train on every
 * row of the target's source in the subsampled pool), --select-only (stop after the selection),
 * --subtask-by subtask|label (group the target rows by their label: select's --group-by label).
 */
export async function benchLessE2e(threads: number): Promise<Record<string, unknown>> {
  const args = process.argv.slice(2);
  const arg = (k: string, d: string): string => (args.includes(k) ? args[args.indexOf(k) + 1]! : d);
  const target = arg('--target', 'trec') as 'trec' | 'sst5';
  const stride = Number(arg('--stride', '4'));
  const epochs = Number(arg('--epochs', '2'));
  const dim = Number(arg('--proj-dim', '1024'));
  const evalN = Number(arg('--eval', '500'));
  const model = resolve(arg('--model', MODEL));
  const positions = (JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')) as { n_positions: number }).n_positions;
  const maxLength = Number(arg('--max-length', String(positions)));
  const ft: FineTune = {
    model,
    maxLength,
    threads,
    lr: Number(arg('--train-lr', '3e-3')),
    epochs: Number(arg('--train-epochs', '6')),
    loraRank: Number(arg('--lora-r', '8')),
    loraTargets: args.includes('--lora-targets') ? arg('--lora-targets', '').split(',') : [],
    scoring: arg('--scoring', 'sum') as 'mean' | 'sum',
  };
  const randomSeeds = arg('--random-seeds', '1,2,3').split(',').map(Number);
  const trainSeeds = arg('--train-seeds', '1').split(',').map(Number);
  const base = arg('--out', join(tmpdir(), `lmtune-less-e2e-${basename(model)}-L${maxLength}-s${stride}-e${epochs}-d${dim}`));
  // --subtask-by label: the target rows grouped by their label instead of their task (`select --group-by
  // label`), so the reference's max over groups scores a pool row by the class it matches best rather
  // than by the mean over all classes
  const byLabel = arg('--subtask-by', 'subtask') === 'label';
  const out = join(base, byLabel ? `${target}-by-label` : target);
  mkdirSync(out, { recursive: true });
  const poolLines = readFileSync(join(SHARED, 'instruct-pool/pool.jsonl'), 'utf8').split('\n').filter((l) => l);
  const pool = join(base, 'pool.jsonl');
  if (!existsSync(pool)) writeFileSync(pool, poolLines.filter((_, i) => i % stride === 0).join('\n') + '\n');
  const cfg: SelectConfig = {
    version: 1,
    model,
    pool,
    target: join(SHARED, `instruct-pool/targets/${target}_target.jsonl`),
    seed: 42,
    maxLength,
    truncation: 'left',
    skipInvalid: true,
    threads,
    warmup: { percentage: 0.05, epochs, lr: 1e-3, batchSize: 8, warmupRatio: 0.03, clipNorm: 1, loraRank: 8, loraAlpha: 32, loraTargets: [] },
    grads: { projection: 'rademacher', projDims: [dim], projSeed: 0, dtype: 'f16', batchSize: 16, shardRows: 1024 },
    match: { aggregate: 'max-subtask-mean', dim, ...(byLabel ? { groupBy: 'label' as const } : {}) },
    write: { percentage: 0.05 },
  };
  const sel = join(out, 'select');
  const reused = reusePoolFeatures(base, sel);
  const t0 = performance.now();
  const summary = await runStage('run', sel, cfg, { onMessage: (m) => process.stderr.write(`${m}\n`) });
  const selectSeconds = (performance.now() - t0) / 1000;
  const selected = readFileSync(join(sel, 'selected.jsonl'), 'utf8').split('\n').filter((l) => l);
  const selection = {
    bench: 'less-e2e',
    target,
    model,
    max_length: maxLength,
    pool_rows: readFileSync(pool, 'utf8').split('\n').filter((l) => l).length,
    pool_stride: stride,
    warmup_epochs: epochs,
    proj_dim: dim,
    pool_features_reused_from: reused,
    selected: selected.length,
    selected_mix: mix(selected),
    select_seconds: Math.round(selectSeconds),
    grads_examples_per_s: summary.grads ? Math.round(summary.grads.examplesPerSecond) : null,
  };
  if (args.includes('--select-only')) return { ...selection, load_average: loadavg().map((x) => Math.round(x * 10) / 10), out };
  const scored = readFileSync(join(sel, 'scores.csv'), 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',').at(-2)));
  scored.sort((a, b) => a - b);
  const subLines = readFileSync(pool, 'utf8').split('\n').filter((l) => l);
  const evalFile = join(out, `eval-${target}-${evalN}.jsonl`);
  // only the target task's own pool rows can hold its questions (the search is a substring scan)
  const ownRows = poolLines.filter((l) => l.startsWith(`{"dataset": "${target}"`)).join('\n');
  writeFileSync(evalFile, evalRows(target, ownRows + readFileSync(cfg.target, 'utf8'), evalN).join('\n') + '\n');
  const tag = `${ft.loraTargets.length ? `t${ft.loraTargets.length}-` : ''}r${ft.loraRank}-lr${ft.lr}-e${ft.epochs}`;
  const log = (m: string): void => void process.stderr.write(`e2e ${target}: ${m}\n`);
  const accBase = await evaluateOn(model, evalFile, ft);
  log(`base ${JSON.stringify(accBase)}`);
  const less: number[] = [];
  const lessCe: (number | null)[] = [];
  for (const s of trainSeeds) {
    const r = await fineTuneAndEvaluate(join(sel, 'selected.jsonl'), join(out, `train-less-${tag}-seed${s}`), evalFile, ft, s);
    log(`LESS seed ${s}: ${r.accuracy} ce ${r.choiceCe} predicted ${JSON.stringify(r.predicted)} (${r.steps} steps, ${r.seconds} s)`);
    less.push(r.accuracy);
    lessCe.push(r.choiceCe);
  }
  // the random baseline: as many rows, drawn uniformly from the scored rows (seed 1 is the draw of the first version)
  const rand: number[] = [];
  const randCe: (number | null)[] = [];
  const randomMixes: Record<string, number>[] = [];
  for (const s of randomSeeds) {
    const perm = new Rng(s === 1 ? `less-e2e/random/${target}` : `less-e2e/random/${target}/${s}`).permutation(scored.length);
    const random = perm.slice(0, selected.length).map((i) => subLines[scored[i]!]!);
    const file = join(out, `random-${s}.jsonl`);
    writeFileSync(file, random.join('\n') + '\n');
    randomMixes.push(mix(random));
    // every draw with every training seed of the LESS arm, so both arms carry the training-seed noise
    for (const ts of trainSeeds) {
      const r = await fineTuneAndEvaluate(file, join(out, `train-random${s}-${tag}${ts === 1 ? '' : `-seed${ts}`}`), evalFile, ft, ts);
      log(`random draw ${s} seed ${ts}: ${r.accuracy} ce ${r.choiceCe} predicted ${JSON.stringify(r.predicted)} (${r.steps} steps, ${r.seconds} s)`);
      rand.push(r.accuracy);
      randCe.push(r.choiceCe);
    }
  }
  let all: { accuracy: number[]; choiceCe: (number | null)[]; rows: number; steps: number } | null = null;
  if (args.includes('--all-target')) {
    const own = subLines.filter((l) => l.startsWith(`{"dataset": "${target}"`));
    const file = join(out, 'all-target.jsonl');
    writeFileSync(file, own.join('\n') + '\n');
    all = { accuracy: [], choiceCe: [], rows: own.length, steps: 0 };
    for (const ts of trainSeeds) {
      const r = await fineTuneAndEvaluate(file, join(out, `train-all-${tag}${ts === 1 ? '' : `-seed${ts}`}`), evalFile, ft, ts);
      log(`all ${own.length} ${target} rows, seed ${ts}: ${r.accuracy} ce ${r.choiceCe} predicted ${JSON.stringify(r.predicted)}`);
      all.accuracy.push(r.accuracy);
      all.choiceCe.push(r.choiceCe);
      all.steps = r.steps;
    }
  }
  return {
    ...selection,
    random_mixes: randomMixes,
    train: { lr: ft.lr, epochs: ft.epochs, lora_r: ft.loraRank, lora_targets: ft.loraTargets, scoring: ft.scoring },
    eval_rows: evalN,
    accuracy_base: accBase.accuracy,
    choice_ce_base: accBase.choiceCe,
    accuracy_less: less,
    accuracy_less_stats: stats(less),
    choice_ce_less: lessCe,
    accuracy_random: rand,
    accuracy_random_stats: stats(rand),
    choice_ce_random: randCe,
    // LESS against random: every run of one arm against every run of the other, and per training seed
    // LESS minus the mean of the random draws trained with that seed
    less_vs_random: {
      mann_whitney: mannWhitneyGreater(less, rand),
      paired_by_training_seed: signFlipGreater(trainSeeds.map((_, k) => less[k]! - randomSeeds.reduce((a, __, d) => a + rand[d * trainSeeds.length + k]!, 0) / randomSeeds.length)),
    },
    accuracy_all_target: all,
    load_average: loadavg().map((x) => Math.round(x * 10) / 10),
    out,
  };
}

if (process.argv[1] && process.argv[1].endsWith('less.ts') && process.argv[2] === 'e2e') {
  process.stdout.write(JSON.stringify(await benchLessE2e(Number(process.env.LMTUNE_THREADS ?? 2))) + '\n');
}

// ------------------------------------------------------------------------- projection quality

function ranks(x: Float64Array): Float64Array {
  const idx = [...x.keys()].sort((a, b) => x[a]! - x[b]!);
  const r = new Float64Array(x.length);
  idx.forEach((i, k) => (r[i] = k));
  return r;
}

function spearman(a: Float64Array, b: Float64Array): number {
  const ra = ranks(a);
  const rb = ranks(b);
  const n = a.length;
  const m = (n - 1) / 2;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    sab += (ra[i]! - m) * (rb[i]! - m);
    saa += (ra[i]! - m) ** 2;
    sbb += (rb[i]! - m) ** 2;
  }
  return sab / Math.sqrt(saa * sbb);
}

/**
 * `node --import tsx bench/less.ts quality --out E2E_OUT [--every 5]`: on a finished e2e run, exact
 * (unprojected) LESS scores of every n-th pool row against the projected scores the run computed:
 * Spearman correlation and the overlap of the top 5%.
 */
export async function lessProjectionQuality(threads: number): Promise<Record<string, unknown>> {
  const args = process.argv.slice(2);
  const out = args[args.indexOf('--out') + 1]!;
  const every = Number(args.includes('--every') ? args[args.indexOf('--every') + 1] : '5');
  const sel = join(out, 'select');
  const cfg = JSON.parse(readFileSync(join(sel, 'select.json'), 'utf8')) as SelectConfig;
  const warm = JSON.parse(readFileSync(join(sel, 'warmup/done.json'), 'utf8')) as { checkpoints: { name: string; lr: number; dir: string }[] };
  const { readChatFile, encodeRows } = await import('../src/select/pool.ts');
  const { readSafetensors } = await import('../src/node/safetensors-file.ts');
  const { Matcher, subtaskGroups } = await import('../src/select/match.ts');
  const { readScores } = await import('../src/select/pipeline.ts');
  const model = await loadTransformer(cfg.model, { threads });
  await attachPeft(model, { kind: 'lora', rank: cfg.warmup.loraRank, alpha: cfg.warmup.loraAlpha, dropout: 0, targets: cfg.warmup.loraTargets }, cfg.seed);
  const layout = gradLayout(model, model.trainableNames());
  const pool = encodeRows(readChatFile(cfg.pool, { skipInvalid: true }), model.tokenizer!, cfg.maxLength, true, cfg.truncation);
  const target = encodeRows(readChatFile(cfg.target, { skipInvalid: true }), model.tokenizer!, cfg.maxLength, true, cfg.truncation);
  const subset = [...pool.encoded.keys()].filter((i) => i % every === 0).sort((a, b) => a - b);
  const tIdx = [...target.encoded.keys()].sort((a, b) => a - b);
  const features = async (ex: GradExample[], adam: Map<string, { expAvg: Float32Array; expAvgSq: Float32Array }> | null): Promise<Float32Array> => {
    const all = new Float32Array(ex.length * layout.dim);
    for (let s = 0; s < ex.length; s += 16) all.set((await perExampleGradients(model, layout, ex.slice(s, s + 16), 16)).grads, s * layout.dim);
    if (adam) applyAdam(all, ex.length, layout, adam);
    return normalizeRows(all, ex.length, layout.dim);
  };
  const G: Float32Array[] = [];
  const V: Float32Array[] = [];
  // the structured path's features (factored Adam for the pool, plain for the target), per dimension
  const kronDims = [1024, 8192];
  const kps = kronDims.map((d) => new KroneckerProjection({ seed: 0, matrices: kroneckerMatrices(model, layout), outDim: d, threads }));
  const KG: Float32Array[][] = kronDims.map(() => []);
  const KV: Float32Array[][] = kronDims.map(() => []);
  for (const ck of warm.checkpoints) {
    const dir = join(sel, ck.dir);
    for (const [k, t] of readSafetensors(join(dir, 'trainable.safetensors')).tensors) model.tensor(k).set(t.data);
    const opt = readSafetensors(join(dir, 'optimizer.safetensors')).tensors;
    const moments = new Map(layout.names.map((n) => [n, { expAvg: opt.get(`exp_avg:${n}`)!.data, expAvgSq: opt.get(`exp_avg_sq:${n}`)!.data }]));
    G.push(await features(subset.map((i) => pool.encoded.get(i)!), moments));
    V.push(await features(tIdx.map((i) => target.encoded.get(i)!), null));
    const kg = await kroneckerFeatures(model, layout, subset.map((i) => pool.encoded.get(i)!), { batchSize: 16, kind: 'adam', moments, projections: kps });
    const kv = await kroneckerFeatures(model, layout, tIdx.map((i) => target.encoded.get(i)!), { batchSize: 16, kind: 'sgd', projections: kps });
    kronDims.forEach((_, p) => {
      KG[p]!.push(kg.features[p]!);
      KV[p]!.push(kv.features[p]!);
    });
  }
  const tRows = readChatFile(cfg.target, { skipInvalid: true }).rows.filter((r) => target.encoded.has(r.index));
  const groups = subtaskGroups(tRows.map((r) => r.chat.subtask), [], cfg.match.aggregate);
  const exact = new Matcher(V, tIdx.length, layout.dim, warm.checkpoints.map((c) => c.lr), groups).score(G, subset.length);
  const all = readScores(sel);
  const k = Math.max(1, Math.floor(0.05 * subset.length));
  const top = (x: Float64Array): Set<number> => new Set([...x.keys()].sort((a, b) => x[b]! - x[a]! || a - b).slice(0, k));
  const te = top(exact);
  const compare = (projected: Float64Array): { spearman: number; top5_overlap: number } => {
    let overlap = 0;
    for (const i of top(projected)) if (te.has(i)) overlap++;
    return { spearman: Math.round(spearman(exact, projected) * 10000) / 10000, top5_overlap: Math.round((overlap / k) * 1000) / 1000 };
  };
  const res: Record<string, unknown> = { bench: 'less-quality', rows: subset.length, grad_dim: layout.dim, top5_rows: k };
  res[`dense_d${cfg.match.dim}`] = compare(Float64Array.from(subset, (i) => all[i]!));
  for (const d of [1024, 8192]) {
    const P = new SrhtProjection({ seed: 0, inDim: layout.dim, outDim: d });
    const proj = async (x: Float32Array, n: number): Promise<Float32Array> => normalizeRows(await P.project(x, n), n, d);
    const Gp = await Promise.all(G.map((g) => proj(g, subset.length)));
    const Vp = await Promise.all(V.map((v) => proj(v, tIdx.length)));
    res[`srht_d${d}`] = compare(new Matcher(Vp, tIdx.length, d, warm.checkpoints.map((c) => c.lr), groups).score(Gp, subset.length));
  }
  const lrs = warm.checkpoints.map((c) => c.lr);
  for (const [p, d] of kronDims.entries()) {
    // the structured path as `select grads --projection kronecker` computes it (factored Adam)
    res[`kronecker_d${d}`] = compare(new Matcher(KV[p]!, tIdx.length, d, lrs, groups).score(KG[p]!, subset.length));
    // the same projection of the exact Adam features: the projection's own error, without the Adam approximation
    const proj = async (x: Float32Array, n: number): Promise<Float32Array> => normalizeRows(await kps[p]!.project(x, n), n, d);
    const Gp: Float32Array[] = [];
    for (const g of G) Gp.push(await proj(g, subset.length));
    const Vp: Float32Array[] = [];
    for (const v of V) Vp.push(await proj(v, tIdx.length));
    res[`kronecker_exact_adam_d${d}`] = compare(new Matcher(Vp, tIdx.length, d, lrs, groups).score(Gp, subset.length));
  }
  return res;
}

if (process.argv[1] && process.argv[1].endsWith('less.ts') && process.argv[2] === 'quality') {
  process.stdout.write(JSON.stringify(await lessProjectionQuality(Number(process.env.LMTUNE_THREADS ?? 2))) + '\n');
}

// ------------------------------------------------------------- per-example vs structured (Kronecker)

/**
 * `node --import tsx bench/less.ts speed [--model tiny|gpt2] [--examples n] [--batch b] [--proj-dim d]`:
 * seconds per example of (a) the engine's per-example gradients + Adam + dense projection, (b) the same
 * gradients + SRHT, (c) the Kronecker path (one forward/backward for activations and output gradients,
 * factored Adam, P_out G P_inᵀ), with the gradient pass of (a)/(b) and the forward/backward of (c) timed
 * apart. tiny: the embedded model on real pool rows (64 tokens, LoRA r = 8 on c_attn); gpt2: the
 * GPT-2-small shape of `bench -- less` (128 random tokens, LoRA on c_attn and c_proj).
 */
export async function benchLessSpeed(threads: number): Promise<Record<string, unknown>> {
  const args = process.argv.slice(2);
  const arg = (k: string, d: string): string => (args.includes(k) ? args[args.indexOf(k) + 1]! : d);
  const which = arg('--model', 'tiny');
  const rng = new Rng(1);
  let model;
  let exs: GradExample[];
  if (which === 'gpt2') {
    model = gpt2Small(threads);
    await attachPeft(model, { kind: 'lora', rank: 8, alpha: 32, dropout: 0, targets: ['attn\\.c_attn$', 'attn\\.c_proj$'] }, 0);
    exs = Array.from({ length: Number(arg('--examples', '8')) }, () => {
      const ids = Array.from({ length: SHAPE.seq }, () => rng.int(SHAPE.vocab));
      const supervised = new Uint8Array(SHAPE.seq).fill(1);
      supervised[0] = 0;
      return { ids, supervised };
    });
  } else {
    model = await loadTransformer(MODEL, { threads });
    await attachPeft(model, { kind: 'lora', rank: 8, alpha: 32, dropout: 0, targets: [] }, 0);
    const { readChatFile, encodeRows } = await import('../src/select/pool.ts');
    const pool = encodeRows(readChatFile(join(SHARED, 'instruct-pool/pool.jsonl'), { skipInvalid: true }), model.tokenizer!, 64, true, 'left');
    exs = [...pool.encoded.keys()].sort((a, b) => a - b).slice(0, Number(arg('--examples', '64'))).map((i) => pool.encoded.get(i)!);
  }
  const batchSize = Number(arg('--batch', which === 'gpt2' ? '8' : '16'));
  const dim = Number(arg('--proj-dim', '8192'));
  for (const n of model.adapters!.names()) if (n.endsWith('lora_B.weight')) model.tensor(n).forEach((_, i, a) => (a[i] = 1e-3 * rng.normal()));
  const layout = gradLayout(model, model.trainableNames());
  const moments = new Map(layout.names.map((nm, i) => [nm, { expAvg: Float32Array.from({ length: layout.sizes[i]! }, () => rng.normal() * 1e-4), expAvgSq: Float32Array.from({ length: layout.sizes[i]! }, () => rng.uniform() * 1e-8) }]));
  const n = exs.length;
  const kron = new KroneckerProjection({ seed: 0, matrices: kroneckerMatrices(model, layout), outDim: dim, threads });
  const dense = new RademacherProjection({ seed: 0, inDim: layout.dim, outDim: dim, threads });
  const srht = new SrhtProjection({ seed: 0, inDim: layout.dim, outDim: Math.min(dim, 2 ** Math.ceil(Math.log2(layout.dim))) });
  // warm-up: compile every graph once (gradient head, token head, projection GEMMs)
  const warm = exs.slice(0, batchSize);
  const wg = (await perExampleGradients(model, layout, warm, batchSize)).grads;
  await dense.project(wg, warm.length);
  await kroneckerFeatures(model, layout, warm, { batchSize, kind: 'adam', moments, projections: [kron] });
  const time = async (f: () => Promise<unknown>): Promise<number> => {
    const t = performance.now();
    await f();
    return (performance.now() - t) / 1000;
  };
  const all = new Float32Array(n * layout.dim);
  const gradSec = await time(async () => {
    for (let s = 0; s < n; s += batchSize) all.set((await perExampleGradients(model, layout, exs.slice(s, s + batchSize), batchSize)).grads, s * layout.dim);
    applyAdam(all, n, layout, moments);
  });
  const denseSec = await time(async () => normalizeRows(await dense.project(all, n), n, dim));
  const srhtSec = await time(async () => normalizeRows(await srht.project(all, n), n, srht.outDim));
  const tokenSec = await time(async () => {
    for (let s = 0; s < n; s += batchSize) await loraTokenRows(model, layout, exs.slice(s, s + batchSize), batchSize);
  });
  const kronSec = await time(() => kroneckerFeatures(model, layout, exs, { batchSize, kind: 'adam', moments, projections: [kron] }));
  const ms = (x: number): number => Math.round((x / n) * 10000) / 10;
  return {
    bench: 'less-speed',
    model: which,
    threads,
    examples: n,
    grad_batch: batchSize,
    lora_params: layout.dim,
    lora_matrices: layout.names.length,
    proj_dim: dim,
    srht_dim: srht.outDim,
    ms_per_example: {
      per_example_grads_adam: ms(gradSec),
      dense_projection: ms(denseSec),
      srht_projection: ms(srhtSec),
      structured_forward_backward: ms(tokenSec),
      kronecker_total: ms(kronSec),
      a_grads_dense: ms(gradSec + denseSec),
      b_grads_srht: ms(gradSec + srhtSec),
      c_kronecker: ms(kronSec),
    },
    peak_rss_mb: Math.round(peakRssMb()),
  };
}

if (process.argv[1] && process.argv[1].endsWith('less.ts') && process.argv[2] === 'speed') {
  process.stdout.write(JSON.stringify(await benchLessSpeed(Number(process.env.LMTUNE_THREADS ?? 2))) + '\n');
}
