/**
 * LESS gradient features (spec less.md §1 step 2): for each example, the gradient of its mean token
 * cross-entropy over supervised tokens (HF's causal-LM loss) with respect to the LoRA matrices, optionally
 * Adam-preconditioned with a warmup checkpoint's moments, projected by a Rademacher JL matrix and
 * L2-normalized.
 *
 * Per-example gradients come from one batched backward pass (the engine's perExample mode through
 * `runHead`), never one backward per example: the reference runs batch size 1 because its vmap attempt
 * "never worked".
 *
 * The Adam feature is the reference's code formula, not the paper's:
 *   m' = β1·m + (1 − β1)·g,  v' = β2·v + (1 − β2)·g²,  Γ = m' / sqrt(v' + ε)
 * ε inside the square root, no bias correction, the step count ignored; m and v are looked up by
 * parameter name (the reference's integer-keyed optimizer.pt breaks exactly there).
 *
 * The gradient vector is the concatenation, in `names` order, of each matrix flattened row-major
 * (lora_A [r, in], lora_B [out, r]), as the reference concatenates `p.grad.view(-1)`.
 */
import { LmtuneError } from '../util/errors.ts';
import { grad, type Feeds, type Value } from '../engine/index.ts';
import { packBatch, roundUp, type PackedBatch } from '../models/batch.ts';
import type { HeadContext } from '../models/graphs.ts';
import type { TransformerModel } from '../heads/model.ts';

/** a row-wise linear projection (RademacherProjection, SrhtProjection) */
export interface Projector {
  readonly inDim: number;
  readonly outDim: number;
  project(x: Float32Array | Float64Array, n: number): Promise<Float32Array>;
}

/** what the gradient step needs of an example: token ids and which positions are loss targets */
export interface GradExample {
  ids: readonly number[];
  /** 1 where position t is a loss target predicted from ids[<t] */
  supervised: Uint8Array;
}

export interface AdamMoments {
  expAvg: Float32Array;
  expAvgSq: Float32Array;
}

export interface AdamFeatureOptions {
  beta1: number;
  beta2: number;
  eps: number;
}

export const LESS_ADAM: AdamFeatureOptions = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

/** Γ = m'/sqrt(v' + ε) element-wise over one example's gradient block (float64 arithmetic, float32 out) */
export function adamFeature(g: Float32Array, m: Float32Array, v: Float32Array, out: Float32Array, o: AdamFeatureOptions = LESS_ADAM, off = 0): void {
  const { beta1: b1, beta2: b2, eps } = o;
  const c1 = 1 - b1;
  const c2 = 1 - b2;
  for (let i = 0; i < m.length; i++) {
    const gi = g[off + i]!;
    const mi = b1 * m[i]! + c1 * gi;
    const vi = b2 * v[i]! + c2 * gi * gi;
    out[off + i] = mi / Math.sqrt(vi + eps);
  }
}

/** rows of x [n, dim] scaled to unit L2 norm (F.normalize, eps 1e-12: a zero row stays zero), in place */
export function normalizeRows(x: Float32Array, n: number, dim: number): Float32Array {
  for (let r = 0; r < n; r++) {
    let s = 0;
    const o = r * dim;
    for (let k = 0; k < dim; k++) s += x[o + k]! * x[o + k]!;
    const norm = Math.max(Math.sqrt(s), 1e-12);
    for (let k = 0; k < dim; k++) x[o + k] = x[o + k]! / norm;
  }
  return x;
}

/** The parameters whose gradients make the feature, with their offsets in the concatenated vector. */
export interface GradLayout {
  names: string[];
  sizes: number[];
  offsets: number[];
  dim: number;
}

export function gradLayout(model: TransformerModel, names: readonly string[]): GradLayout {
  const sizes = names.map((n) => model.tensor(n).length);
  const offsets: number[] = [];
  let d = 0;
  for (const s of sizes) {
    offsets.push(d);
    d += s;
  }
  if (d === 0) throw new LmtuneError('CONFIG', 'no parameters to take gradients of', 'LESS features need LoRA adapters on the model');
  return { names: [...names], sizes, offsets, dim: d };
}

/**
 * What every per-example gradient head of LESS starts from: the examples packed (rows padded to
 * `batchSize`, the sequence to a multiple of 16), their supervised next-token targets (padded to a power
 * of two: few distinct graphs per run, each new shape is an ORT compile), and the [B, K] segment that
 * averages each example's token losses. `perExampleLoss` builds the matching loss in a head.
 */
export function supervisedBatch(model: TransformerModel, examples: readonly GradExample[], batchSize: number): { batch: PackedBatch; K: number; feeds: Feeds } {
  const n = examples.length;
  if (n === 0 || n > batchSize) throw new LmtuneError('SHAPE', `a gradient batch holds 1..${batchSize} examples, got ${n}`);
  const seqs = examples.map((e) => [...e.ids]);
  const longest = Math.max(...seqs.map((s) => s.length));
  if (longest > model.maxPositions) throw new LmtuneError('DATA', `a sequence of ${longest} tokens exceeds the model's ${model.maxPositions} positions`, 'lower --max-length');
  const B = batchSize;
  // pad positions beyond the model's table are never read (their position ids are 0)
  const batch = packBatch(seqs, { side: 'right', padId: model.padId(), batch: B, seq: roundUp(longest, 16) });
  const index: number[] = [];
  const label: number[] = [];
  const owner: number[] = [];
  examples.forEach((e, b) => {
    for (let t = 1; t < e.ids.length; t++) {
      if (!e.supervised[t]) continue;
      index.push(b * batch.seq + t - 1);
      label.push(e.ids[t]!);
      owner.push(b);
    }
  });
  const counts = new Int32Array(B);
  for (const b of owner) counts[b]!++;
  examples.forEach((_, b) => {
    if (counts[b] === 0) throw new LmtuneError('DATA', `example ${b} of the batch has no supervised token`, 'rows without an assistant token to predict cannot have a gradient feature');
  });
  const K = Math.max(16, 2 ** Math.ceil(Math.log2(index.length)));
  const idx = new BigInt64Array(K);
  const lab = new BigInt64Array(K).fill(-100n);
  const seg = new Float32Array(B * K);
  for (let k = 0; k < index.length; k++) {
    idx[k] = BigInt(index[k]!);
    lab[k] = BigInt(label[k]!);
    seg[owner[k]! * K + k] = 1 / counts[owner[k]!]!;
  }
  return { batch, K, feeds: { tgt_index: idx, tgt_label: lab, segment: seg } };
}

/** each example's mean cross-entropy over its supervised tokens [B], from `supervisedBatch`'s feeds */
export function perExampleLoss(h: HeadContext, B: number, K: number): Value {
  const g = h.g;
  const logits = h.logits(h.rows(g.input('tgt_index', [K], 'i64')));
  const nll = g.apply('cross_entropy', [logits, g.input('tgt_label', [K], 'i64')], { ignoreIndex: -100 })[0]!;
  // per-example mean over its supervised tokens: [B, K] · [K, 1]
  return g.input('segment', [B, K], 'f32').matmul(nll.reshape([K, 1])).reshape([B]);
}

/**
 * Per-example gradients of the mean supervised-token cross-entropy, for up to `batchSize` examples in one
 * batched forward/backward. Returns [n, layout.dim] (row-major) and each example's loss.
 * Rows are padded to `batchSize`, the sequence to a multiple of 16 and the target count to a power of
 * two, so a run reuses few graphs.
 */
export async function perExampleGradients(model: TransformerModel, layout: GradLayout, examples: readonly GradExample[], batchSize: number): Promise<{ grads: Float32Array; losses: Float64Array }> {
  const { batch, K, feeds } = supervisedBatch(model, examples, batchSize);
  const n = examples.length;
  const B = batchSize;
  const out = await model.runHead(
    `less-grad|K${K}|${layout.names.join(',')}`,
    batch,
    (h) => {
      const per = perExampleLoss(h, B, K);
      const params: Value[] = layout.names.map((name) => h.param(name));
      const gs = grad(per.sum(), params, { perExample: params });
      const res: Record<string, Value> = { losses: per };
      gs.forEach((v, i) => (res[`g${i}`] = v));
      return res;
    },
    feeds,
  );
  const D = layout.dim;
  const grads = new Float32Array(n * D);
  layout.names.forEach((_, i) => {
    const d = out[`g${i}`]!.data as Float32Array | Float64Array;
    const s = layout.sizes[i]!;
    const o = layout.offsets[i]!;
    for (let b = 0; b < n; b++) grads.set(d.subarray(b * s, (b + 1) * s), b * D + o);
  });
  const l = out.losses!.data as Float32Array | Float64Array;
  return { grads, losses: Float64Array.from(l.subarray(0, n)) };
}

/** Applies the Adam feature in place to rows of [n, layout.dim] with moments by parameter name. */
export function applyAdam(grads: Float32Array, n: number, layout: GradLayout, moments: ReadonlyMap<string, AdamMoments>, o: AdamFeatureOptions = LESS_ADAM): void {
  layout.names.forEach((name, i) => {
    const mo = moments.get(name);
    if (!mo) throw new LmtuneError('CHECKPOINT', `the checkpoint's optimizer state has no moments for '${name}'`, 'Adam features need a warmup checkpoint trained with Adam (exp_avg / exp_avg_sq keyed by parameter name)');
    if (mo.expAvg.length !== layout.sizes[i] || mo.expAvgSq.length !== layout.sizes[i]) {
      throw new LmtuneError('CHECKPOINT', `moments of '${name}' have ${mo.expAvg.length} values, the parameter has ${layout.sizes[i]}`);
    }
    for (let b = 0; b < n; b++) adamFeature(grads, mo.expAvg, mo.expAvgSq, grads, o, b * layout.dim + layout.offsets[i]!);
  });
}

export type FeatureKind = 'adam' | 'sgd';

/**
 * Features of examples: batched per-example gradients, the Adam transform for 'adam', projection to each
 * requested dimension and normalization. Returns one [n, d] array per projection.
 */
export async function extractFeatures(
  model: TransformerModel,
  layout: GradLayout,
  examples: readonly GradExample[],
  opts: {
    batchSize: number;
    kind: FeatureKind;
    moments?: ReadonlyMap<string, AdamMoments>;
    projections: readonly Projector[];
    adam?: AdamFeatureOptions;
    /** names example k in messages (file:line); default "example k" */
    rowName?: (k: number) => string;
  },
): Promise<{ features: Float32Array[]; losses: Float64Array }> {
  const n = examples.length;
  const D = layout.dim;
  const all = new Float32Array(n * D);
  const losses = new Float64Array(n);
  const rowName = opts.rowName ?? ((k: number) => `example ${k}`);
  for (let s = 0; s < n; s += opts.batchSize) {
    const chunk = examples.slice(s, s + opts.batchSize);
    const r = await perExampleGradients(model, layout, chunk, opts.batchSize);
    all.set(r.grads, s * D);
    losses.set(r.losses, s);
  }
  // a NaN/Inf gradient would normalize to a NaN feature and score NaN against every target (ranked
  // arbitrarily, stored silently): stop at the first row, naming it and the matrix
  for (let k = 0; k < n; k++) {
    if (!Number.isFinite(losses[k]!)) throw nonFiniteFeature(`the loss of ${rowName(k)} is ${losses[k]}`, model);
  }
  checkRows(all, n, layout, rowName, 'the gradient', model);
  if (opts.kind === 'adam') {
    if (!opts.moments) throw new LmtuneError('CONFIG', 'Adam features need the checkpoint moments');
    applyAdam(all, n, layout, opts.moments, opts.adam);
    checkRows(all, n, layout, rowName, 'the Adam-preconditioned gradient (the checkpoint\'s moments)', null);
  }
  const features: Float32Array[] = [];
  for (const p of opts.projections) {
    if (p.inDim !== D) throw new LmtuneError('SHAPE', `projection input dimension ${p.inDim} differs from the gradient dimension ${D}`);
    const f = normalizeRows(await p.project(all, n), n, p.outDim);
    for (let k = 0; k < n; k++) {
      const bad = firstNonFinite(f, k * p.outDim, (k + 1) * p.outDim);
      if (bad >= 0) throw nonFiniteFeature(`the ${p.outDim}-dimensional projected feature of ${rowName(k)} holds ${f[bad]} at column ${bad - k * p.outDim}`, null);
    }
    features.push(f);
  }
  return { features, losses };
}

/** index of the first NaN/Inf in x[from, to), or −1 */
function firstNonFinite(x: Float32Array, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i]! * 0;
  if (s === 0) return -1;
  for (let i = from; i < to; i++) if (!Number.isFinite(x[i]!)) return i;
  return -1;
}

function checkRows(x: Float32Array, n: number, layout: GradLayout, rowName: (k: number) => string, what: string, model: TransformerModel | null): void {
  const D = layout.dim;
  for (let k = 0; k < n; k++) {
    const bad = firstNonFinite(x, k * D, (k + 1) * D);
    if (bad < 0) continue;
    const col = bad - k * D;
    let i = layout.offsets.length - 1;
    while (i > 0 && layout.offsets[i]! > col) i--;
    throw nonFiniteFeature(`${what} of ${rowName(k)} holds ${x[bad]} in '${layout.names[i]}' (value ${col - layout.offsets[i]!})`, model);
  }
}

/** a NUMERIC error; with the model, it also names the first weight that is not finite (the usual cause) */
function nonFiniteFeature(what: string, model: TransformerModel | null): LmtuneError {
  let cause = '';
  if (model) {
    for (const name of model.allParamNames()) {
      const d = model.tensor(name);
      const i = firstNonFinite(d, 0, d.length);
      if (i >= 0) {
        cause = `; weight '${name}' holds ${d[i]} at index ${i}`;
        break;
      }
    }
  }
  return new LmtuneError('NUMERIC', `LESS features: ${what}${cause}`, cause ? 'the model or the warmup checkpoint holds non-finite weights; retrain the warmup with a lower learning rate' : 'the warmup diverged or the row is degenerate; check the warmup log, or lower --warmup-lr');
}
