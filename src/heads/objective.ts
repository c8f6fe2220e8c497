/**
 * The training objectives, as one head on the model body (the `loss` graph): a scalar over target rows,
 * optionally with gradients of chosen weights, optionally per example.
 *
 *   token        token-weighted next-token cross-entropy (LM, chat, answer tokens)
 *   candidates   cross-entropy over the candidate sequences' mean log-probs (multiple choice, MeZO's
 *                classification objective); their scores are the sequence log-probs
 *   mask         cross-entropy over label words' logits at a mask (masked LMs, prompt-based fine-tuning)
 *
 * Scoring (heads/scoring.ts) runs the same graph without gradients. The MeZO −accuracy and −F1 objectives
 * are plain arithmetic on these scores and on generations, in train/stepper.ts.
 */
import { LmtuneError } from '../util/errors.ts';
import { grad, toFloat64, type Graph, type Value } from '../engine/index.ts';
import type { PackedBatch } from '../models/batch.ts';
import type { BodyOptions, HeadContext, ModelGraphs } from '../models/graphs.ts';

/** targets: row-major positions (b·T + t) whose hidden state predicts `label` */
export interface Targets {
  index: Int32Array;
  label: Int32Array;
}

export type Objective =
  | { kind: 'token'; weight: Float32Array }
  | { kind: 'candidates'; examples: number; candidates: number; /** [E·C, K] */ segment: Float32Array; gold: Int32Array }
  | { kind: 'mask'; examples: number; candIds: Int32Array; gold: Int32Array };

export interface LossRequest {
  batch: PackedBatch;
  targets: Targets;
  objective: Objective;
}

export interface LossResult {
  loss: number;
  grads: Map<string, Float32Array> | null;
}

const LOSS: BodyOptions = { name: 'loss' };

/**
 * Evaluate an objective (and gradients of `wrt`, optionally per example). `gradInto`: buffers the named
 * gradients are written into and returned as (onnxruntime writes them in place), so a training loop
 * keeps one set across steps instead of a fresh 0.5 GB per GPT-2-small step.
 */
export async function objectiveLoss(
  graphs: ModelGraphs,
  req: LossRequest,
  wrt: readonly string[] = [],
  perExample: readonly string[] = [],
  gradInto?: ReadonlyMap<string, Float32Array>,
): Promise<LossResult & { outputs: Record<string, Float64Array> }> {
  const { batch, targets, objective } = req;
  const K = targets.index.length;
  const shapeKey = objective.kind === 'token' ? 'token' : objective.kind === 'candidates' ? `cand:${objective.examples}x${objective.candidates}` : `mask:${objective.examples}x${objective.candIds.length}`;
  const key = `loss|${batch.batch}|${batch.seq}|${K}|${shapeKey}|${wrt.join(',')}|${perExample.join(',')}`;
  // the head's closure is made on a miss only: this is every training step's call (MeZO makes two)
  const built = await (graphs.cache.get(key) ?? graphs.graph(key, batch.batch, batch.seq, (h) => objectiveHead(h, K, objective, wrt, perExample), LOSS));
  const feeds = graphs.feeds(built, batch);
  feeds.tgt_index = BigInt64Array.from(targets.index, (x) => BigInt(x));
  feeds.tgt_label = BigInt64Array.from(targets.label, (x) => BigInt(x));
  if (objective.kind === 'token') feeds.tgt_weight = objective.weight;
  else if (objective.kind === 'candidates') {
    feeds.segment = objective.segment;
    feeds.gold = BigInt64Array.from(objective.gold, (x) => BigInt(x));
  } else {
    feeds.cand_ids = BigInt64Array.from(objective.candIds, (x) => BigInt(x));
    feeds.gold = BigInt64Array.from(objective.gold, (x) => BigInt(x));
  }
  if (objective.kind !== 'token') feeds.example_weight = exampleWeights(objective.gold);
  graphs.prune(built, feeds);
  const into = gradInto ? Object.fromEntries(wrt.filter((n) => gradInto.has(n)).map((n) => [`grad:${n}`, gradInto.get(n)!])) : undefined;
  const out = await built.exe.run(feeds, into);
  const loss = toFloat64(out.loss!)[0]!;
  let grads: Map<string, Float32Array> | null = null;
  if (wrt.length) {
    grads = new Map();
    for (const n of wrt) {
      const d = out[`grad:${n}`]!.data;
      const b = gradInto?.get(n);
      // the ref executor returns its own float64 arrays: rounded into the buffer as Float32Array.from would
      if (b && d !== b) b.set(d as Float32Array | Float64Array);
      grads.set(n, b ?? (d instanceof Float32Array ? d : Float32Array.from(d as Float64Array)));
    }
  }
  const outputs: Record<string, Float64Array> = {};
  for (const k of ['nll', 'scores', 'per_example']) if (out[k]) outputs[k] = toFloat64(out[k]!);
  return { loss, grads, outputs };
}

/** the loss graph's outputs on the body: loss, nll or scores + per_example, and grad:<name> */
function objectiveHead(h: HeadContext, K: number, obj: Objective, wrt: readonly string[], perExample: readonly string[]): Record<string, Value> {
  const { g, ctx } = h;
  const index = g.input('tgt_index', [K], 'i64');
  const label = g.input('tgt_label', [K], 'i64');
  const outputs: Record<string, Value> = {};
  let loss: Value;
  if (obj.kind === 'mask') {
    // label-word logits at the mask rows: decoder rows of the candidate words only
    const C = obj.candIds.length;
    const logits = h.candidateLogits(h.rows(index), g.input('cand_ids', [C], 'i64'));
    const nll = g.apply('cross_entropy', [logits, g.input('gold', [obj.examples], 'i64')], { ignoreIndex: -100 })[0]!;
    outputs.per_example = nll;
    loss = exampleMean(g, nll, obj.examples);
    outputs.scores = logits;
  } else {
    const logits = h.logits(h.rows(index));
    const nll = g.apply('cross_entropy', [logits, label], { ignoreIndex: -100 })[0]!;
    outputs.nll = nll;
    if (obj.kind === 'token') {
      loss = nll.mul(g.input('tgt_weight', [K], 'f32')).sum();
    } else {
      const E = obj.examples;
      const C = obj.candidates;
      const seg = g.input('segment', [E * C, K], 'f32');
      const seqLogp = seg.matmul(nll.reshape([K, 1])).neg().reshape([E, C]);
      const ce = g.apply('cross_entropy', [seqLogp, g.input('gold', [E], 'i64')], { ignoreIndex: -100 })[0]!;
      outputs.per_example = ce;
      outputs.scores = seqLogp;
      loss = exampleMean(g, ce, E);
    }
  }
  outputs.loss = loss;
  if (wrt.length) {
    const pv = ctx.paramValues();
    const wrtVals = wrt.map((n) => {
      const v = pv.get(n);
      if (!v) throw new LmtuneError('GRAPH', `parameter '${n}' is not used by the ${ctx.cfg.family} forward pass`);
      return v;
    });
    const perVals = perExample.map((n) => pv.get(n)!);
    // per-example gradients differentiate the sum of per-example losses
    const target = perVals.length ? (outputs.per_example ?? loss).sum() : loss;
    const grads = grad(target, wrtVals, { perExample: perVals });
    wrt.forEach((n, i) => (outputs[`grad:${n}`] = grads[i]!));
  }
  return outputs;
}

/**
 * The mean of per-example losses over the real examples only. Rows whose gold is ignored pad a
 * partial batch to its shape bucket; dividing by the bucket instead of the real count made the
 * last batch of a dev set count less, and the dev loss depend on the batch size.
 */
function exampleMean(g: Graph, perExample: Value, E: number): Value {
  return perExample.mul(g.input('example_weight', [E], 'f32')).sum();
}

/** pad K targets to a bucket with ignored rows */
export function padTargets(index: readonly number[], label: readonly number[], K: number): Targets {
  const idx = new Int32Array(K);
  const lab = new Int32Array(K).fill(-100);
  idx.set(index);
  lab.set(label);
  return { index: idx, label: lab };
}

/** 1/n for each of the n examples whose gold is not the ignore index (-100), 0 for padding rows */
export function exampleWeights(gold: Int32Array): Float32Array {
  let n = 0;
  for (const y of gold) if (y !== -100) n++;
  const w = new Float32Array(gold.length);
  for (let i = 0; i < gold.length; i++) if (gold[i] !== -100) w[i] = 1 / n;
  return w;
}
