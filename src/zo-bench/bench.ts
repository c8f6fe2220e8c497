/**
 * ZO-bench: the zeroth-order methods of src/optim/zo/ side by side under one fixed protocol (docs/zo.md):
 * one model with LoRA adapters, one task, a k-shot training sample per seed, the task's prompt, a
 * budget counted in forward passes (the cost every ZO method shares), dev accuracy and loss measured
 * every `evalEvery` passes. Per method and seed: the curve, the passes to reach the target, the final
 * accuracy, the wall time, the method's extra memory (exact, from the method) and the process's peak
 * RSS. The library never prints: progress goes through `onProgress`.
 */
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { loadTransformer, type TransformerModel } from '../heads/model.ts';
import { attachPeft } from '../peft/index.ts';
import type { PeftSpec } from '../peft/spec.ts';
import { loadExamples, resolveTask, type Example } from '../tasks/index.ts';
import { mezoStepSeed } from '../optim/zstream.ts';
import { createZoMethod, ZO_METHOD_INFO, type ZoMethodName } from '../optim/zo/registry.ts';
import type { ZoSettings } from '../optim/zo/method.ts';
import { buildLossRequest, defaultObjective, encodeExample, type Encoded } from '../train/batches.ts';
import { DataOrder, evaluateDev } from '../train/loop.ts';

export interface ZoBenchMethod {
  name: ZoMethodName;
  lr: number;
  /** overrides of the protocol's ZO settings (eps, samples, density, hessianSmooth, …) */
  settings?: Partial<ZoSettings>;
}

export interface ZoBenchProtocol {
  model: string;
  task: string;
  train: string;
  dev: string;
  /** training examples per class, drawn per seed */
  kShot: number;
  /** the first devN examples of the dev file */
  devN: number;
  peft: PeftSpec;
  batchSize: number;
  eps: number;
  seeds: number[];
  /** forward passes per run, evaluation passes not counted */
  budget: number;
  evalEvery: number;
  /** "reached" = first evaluation with dev loss ≤ this (at small budgets dev loss moves, accuracy barely) */
  targetDevLoss: number;
  methods: ZoBenchMethod[];
  threads: number;
}

export interface CurvePoint {
  passes: number;
  devAccuracy: number;
  devLoss: number;
}

export interface SeedRun {
  seed: number;
  curve: CurvePoint[];
  /** forward passes at the first evaluation reaching the target dev loss, or null */
  passesToTarget: number | null;
  finalAccuracy: number;
  finalDevLoss: number;
  steps: number;
  seconds: number;
  peakRssBytes: number;
}

export interface MethodResult {
  method: ZoMethodName;
  lr: number;
  settings: Partial<ZoSettings>;
  forwardPassesPerStep: number;
  extraMemoryBytes: number;
  extraMemory: string;
  runs: SeedRun[];
  finalAccuracyMean: number;
  finalAccuracyStd: number;
  /** median over seeds of passes to target (a seed that never reached it counts as +∞), or null */
  passesToTargetMedian: number | null;
  reachedSeeds: number;
  secondsMean: number;
  peakRssBytes: number;
}

export interface ZoBenchResult {
  protocol: ZoBenchProtocol;
  zeroShot: { devAccuracy: number; devLoss: number };
  methods: MethodResult[];
}

export type ZoBenchProgress = (e: { method: string; seed: number; passes: number; budget: number; devAccuracy?: number }) => void;

/** k examples of each class, in a seeded order */
export function kShotSample(pool: readonly Example[], k: number, seed: number): Example[] {
  const byClass = new Map<number, Example[]>();
  for (const e of pool) byClass.set(e.label, [...(byClass.get(e.label) ?? []), e]);
  const out: Example[] = [];
  for (const label of [...byClass.keys()].sort((a, b) => a - b)) {
    const xs = byClass.get(label)!;
    if (xs.length < k) throw new LmtuneError('CONFIG', `zo-bench: class ${label} has ${xs.length} training examples, the protocol asks for k = ${k}`);
    const perm = new Rng(`zo-bench/k-shot/${seed}/${label}`).permutation(xs.length);
    for (let i = 0; i < k; i++) out.push(xs[perm[i]!]!);
  }
  return out;
}

function meanStd(xs: readonly number[]): [number, number] {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.length > 1 ? xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1) : 0;
  return [m, Math.sqrt(v)];
}

async function freshModel(p: ZoBenchProtocol, seed: number): Promise<TransformerModel> {
  const model = await loadTransformer(p.model, { threads: p.threads, sharedWeights: false });
  await attachPeft(model, p.peft, seed);
  return model;
}

async function runOne(p: ZoBenchProtocol, m: ZoBenchMethod, seed: number, pool: readonly Example[], dev: readonly Example[], onProgress?: ZoBenchProgress): Promise<SeedRun & { passesPerStep: number; stateBytes: number }> {
  const t0 = performance.now();
  const task = resolveTask(p.task);
  const model = await freshModel(p, seed);
  const mode = defaultObjective(task, model);
  const train = kShotSample(pool, p.kShot, seed);
  const cache = new Map<Example, Encoded>();
  const enc = (e: Example): Encoded => {
    let x = cache.get(e);
    if (!x) cache.set(e, (x = encodeExample(task, e, model)));
    return x;
  };
  const method = createZoMethod(m.name, model.trainableParams(), { eps: p.eps, ...m.settings });
  const order = new DataOrder(train.length, seed);
  let peak = process.memoryUsage().rss;
  const curve: CurvePoint[] = [];
  const evalAt = async (passes: number): Promise<void> => {
    const { result, devLoss } = await evaluateDev(model, task, dev, mode, p.batchSize, cache);
    curve.push({ passes, devAccuracy: result.value, devLoss });
    onProgress?.({ method: m.name, seed, passes, budget: p.budget, devAccuracy: result.value });
  };
  await evalAt(0);
  let passes = 0;
  let nextEval = p.evalEvery;
  let steps = 0;
  const per = method.passesPerStep();
  while (passes + per <= p.budget) {
    const req = buildLossRequest(order.next(p.batchSize).map((i) => enc(train[i]!)), mode, model, p.batchSize);
    const r = await method.step(mezoStepSeed(seed, steps), async () => (await model.loss(req)).loss, m.lr);
    passes += r.forwardPasses;
    steps++;
    peak = Math.max(peak, process.memoryUsage().rss);
    if (passes >= nextEval) {
      await evalAt(passes);
      while (nextEval <= passes) nextEval += p.evalEvery;
    }
  }
  if (curve[curve.length - 1]!.passes !== passes) await evalAt(passes);
  const hit = curve.find((c) => c.devLoss <= p.targetDevLoss);
  const last = curve[curve.length - 1]!;
  return { seed, curve, passesToTarget: hit ? hit.passes : null, finalAccuracy: last.devAccuracy, finalDevLoss: last.devLoss, steps, seconds: (performance.now() - t0) / 1000, peakRssBytes: peak, passesPerStep: per, stateBytes: method.stateBytes() };
}

export async function runZoBench(p: ZoBenchProtocol, onProgress?: ZoBenchProgress): Promise<ZoBenchResult> {
  if (p.methods.length === 0) throw new LmtuneError('CONFIG', 'zo-bench: no methods to run');
  if (!(p.budget > 0 && p.evalEvery > 0)) throw new LmtuneError('CONFIG', `zo-bench: budget and eval-every must be > 0 (got ${p.budget}, ${p.evalEvery})`);
  const task = resolveTask(p.task);
  const pool = loadExamples(task, p.train);
  const dev = loadExamples(task, p.dev).slice(0, p.devN);
  const zsModel = await freshModel(p, p.seeds[0] ?? 0);
  const zs = await evaluateDev(zsModel, task, dev, defaultObjective(task, zsModel), p.batchSize, new Map());
  const methods: MethodResult[] = [];
  for (const m of p.methods) {
    const runs: (SeedRun & { passesPerStep: number; stateBytes: number })[] = [];
    for (const seed of p.seeds) runs.push(await runOne(p, m, seed, pool, dev, onProgress));
    const [mean, std] = meanStd(runs.map((r) => r.finalAccuracy));
    const toTarget = runs.map((r) => r.passesToTarget ?? Number.POSITIVE_INFINITY).sort((a, b) => a - b);
    const median = toTarget[Math.floor((toTarget.length - 1) / 2)]!;
    methods.push({
      method: m.name,
      lr: m.lr,
      settings: m.settings ?? {},
      forwardPassesPerStep: runs[0]!.passesPerStep,
      extraMemoryBytes: runs[0]!.stateBytes,
      extraMemory: ZO_METHOD_INFO[m.name].memory,
      runs: runs.map(({ passesPerStep: _p, stateBytes: _s, ...r }) => r),
      finalAccuracyMean: mean,
      finalAccuracyStd: std,
      passesToTargetMedian: Number.isFinite(median) ? median : null,
      reachedSeeds: runs.filter((r) => r.passesToTarget !== null).length,
      secondsMean: runs.reduce((a, r) => a + r.seconds, 0) / runs.length,
      peakRssBytes: Math.max(...runs.map((r) => r.peakRssBytes)),
    });
  }
  return { protocol: p, zeroShot: { devAccuracy: zs.result.value, devLoss: zs.devLoss }, methods };
}

/**
 * The protocol's learning rates (constant) and settings per method, for LoRA on the embedded model at
 * ε = 1e-2, batch 16: for each, the better of two values in a 240-pass pilot on seed 0 (docs/zo.md).
 */
export const DEFAULT_METHODS: ZoBenchMethod[] = [
  { name: 'sgd', lr: 5e-3 },
  { name: 'sign', lr: 1e-2 },
  { name: 'conservative', lr: 3e-2 },
  { name: 'momentum', lr: 1e-3 },
  { name: 'adam', lr: 1.5e-2 },
  { name: 'hizoo', lr: 5e-3 },
  { name: 'sparse-magnitude', lr: 4e-2 },
  { name: 'sparse-random', lr: 4e-2 },
  { name: 'sparse-layer', lr: 3e-2 },
  { name: 'fzoo', lr: 3e-2, settings: { samples: 8 } },
  { name: 'block', lr: 3e-2 },
];
