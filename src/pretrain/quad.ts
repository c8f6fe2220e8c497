/**
 * The Quad objective of Saunshi, Malladi & Arora (ICLR'21): instead of cross-entropy over a softmax,
 *
 *     ℓ_quad = mean over tokens t of  −h_tᵀφ_{w_t} + ½‖Φ h_t‖²
 *
 * with Φ [V, E] the output embedding (rows φ_w) and h = A·f an extra E×E linear layer on the final-norm
 * output f (the reference's `f_lin`). Its minimiser is h* = (ΦᵀΦ)⁻¹Φᵀp*: features linear in the
 * conditional mean Φᵀp*, so linear probes on h carry the paper's guarantee.
 *
 * Deliberate differences from the reference (`GPT2UntiedLMHeadModel`, obj='quad'):
 *  - A has no bias: the final layer norm's bias β already gives A(γ⊙n + β) an arbitrary offset Aβ, so
 *    a bias adds nothing (A invertible), and without it the trained model folds into a plain checkpoint;
 *  - ½‖Φh‖² is computed as ½ hᵀ(ΦᵀΦ)h, one E×E Gram per step instead of V logits per token.
 *
 * The saved checkpoint is an untied GPT-2 whose lm_head is Φ·A, so it loads and runs like any other
 * model (its logits are Φh); the features `lmtune features --kind f` returns are then f = the final
 * norm's output, of which the Quad features h = A·f are an invertible linear map (the same linear probes).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { readJson } from '../node/fsx.ts';
import { readSafetensors, writeSafetensors } from '../node/safetensors-file.ts';
import { grad, toFloat64, type Graph, type Value } from '../engine/index.ts';
import type { WeightStore } from '../models/weights.ts';
import { loadTransformer, TransformerModel } from '../heads/model.ts';
import type { Targets } from '../heads/objective.ts';
import type { PackedBatch } from '../models/batch.ts';

export const QUAD_DENSE = 'quad.dense.weight';
export const QUAD_PHI = 'quad.phi.weight';
/**
 * A and Φ as trained, saved next to the folded checkpoint: the folded head Φ·A keeps the model's
 * function but not its parameterization (Φ and A apart, and whether Φ was fixed), which
 * `lmtune train --objective quad` needs to continue the same model rather than a re-factored one.
 */
export const QUAD_FILE = 'quad.safetensors';

/**
 * The loss graph on feature rows f [K, E] with targets `labels` [K] (i64), averaged over the K tokens.
 * `weight` [K] (f32) gives each token's share of the mean (0 for padding rows).
 */
export function quadLoss(g: Graph, f: Value, dense: Value, phi: Value, labels: Value, weight: Value): Value {
  const h = f.matmul(dense, { transB: true });
  const gram = phi.matmul(phi, { transA: true });
  const linear = g.apply1('gather', [phi, labels]).mul(h).sum(-1);
  const quadratic = h.matmul(gram).mul(h).sum(-1).mul(0.5);
  return quadratic.sub(linear).mul(weight).sum();
}

/** the same loss in float64 on the host (tests): f [K, E], A [E, E], Φ [V, E] */
export function quadLossRef(f: Float64Array, K: number, E: number, dense: Float64Array, phi: Float64Array, labels: readonly number[], weight: readonly number[]): number {
  let total = 0;
  const V = phi.length / E;
  for (let t = 0; t < K; t++) {
    const h = new Float64Array(E);
    for (let i = 0; i < E; i++) for (let j = 0; j < E; j++) h[i] = h[i]! + dense[i * E + j]! * f[t * E + j]!;
    let lin = 0;
    for (let i = 0; i < E; i++) lin += h[i]! * phi[labels[t]! * E + i]!;
    let sq = 0;
    for (let w = 0; w < V; w++) {
      let z = 0;
      for (let i = 0; i < E; i++) z += phi[w * E + i]! * h[i]!;
      sq += z * z;
    }
    total += weight[t]! * (0.5 * sq - lin);
  }
  return total;
}

/**
 * The minimiser of the expected loss −hᵀΦᵀp + ½‖Φh‖² for a next-word distribution p [V]: the solution of
 * (ΦᵀΦ) h = Φᵀp, by Cholesky in float64 (ΦᵀΦ is positive definite when Φ has full column rank).
 */
export function quadMinimiser(phi: Float64Array, V: number, E: number, p: Float64Array): Float64Array {
  const G = new Float64Array(E * E);
  const rhs = new Float64Array(E);
  for (let w = 0; w < V; w++) {
    for (let i = 0; i < E; i++) {
      rhs[i] = rhs[i]! + phi[w * E + i]! * p[w]!;
      for (let j = 0; j < E; j++) G[i * E + j] = G[i * E + j]! + phi[w * E + i]! * phi[w * E + j]!;
    }
  }
  const L = new Float64Array(E * E);
  for (let i = 0; i < E; i++) {
    for (let j = 0; j <= i; j++) {
      let s = G[i * E + j]!;
      for (let k = 0; k < j; k++) s -= L[i * E + k]! * L[j * E + k]!;
      if (i === j) {
        if (!(s > 0)) throw new LmtuneError('NUMERIC', 'Quad: ΦᵀΦ is singular (Φ does not have full column rank)');
        L[i * E + i] = Math.sqrt(s);
      } else L[i * E + j] = s / L[j * E + j]!;
    }
  }
  const y = new Float64Array(E);
  for (let i = 0; i < E; i++) {
    let s = rhs[i]!;
    for (let k = 0; k < i; k++) s -= L[i * E + k]! * y[k]!;
    y[i] = s / L[i * E + i]!;
  }
  const h = new Float64Array(E);
  for (let i = E - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < E; k++) s -= L[k * E + i]! * h[k]!;
    h[i] = s / L[i * E + i]!;
  }
  return h;
}

/** the LM head a Quad model saves as: lm_head = Φ·A [V, E], so logits = Φ(A f) = Φh */
export function foldedHead(weights: WeightStore): { shape: [number, number]; data: Float32Array } {
  const phi = weights.get(QUAD_PHI);
  const dense = weights.get(QUAD_DENSE);
  const [V, E] = phi.shape as [number, number];
  const out = new Float32Array(V * E);
  const row = new Float64Array(E);
  for (let w = 0; w < V; w++) {
    row.fill(0);
    for (let k = 0; k < E; k++) {
      const p = phi.data[w * E + k]!;
      for (let j = 0; j < E; j++) row[j] = row[j]! + p * dense.data[k * E + j]!;
    }
    for (let j = 0; j < E; j++) out[w * E + j] = row[j]!;
  }
  return { shape: [V, E], data: out };
}

/**
 * One evaluation of the Quad loss on a batch (rows `targets.index` predict `targets.label`; label −100
 * rows are padding), with the gradients of `wrt` when given. Every real target weighs 1/(real targets).
 */
export async function quadLossAndGrads(model: TransformerModel, batch: PackedBatch, targets: Targets, wrt: readonly string[] = []): Promise<{ loss: number; grads: Map<string, Float32Array> | null }> {
  const { finalNorm } = model.arch;
  if (!model.arch.causal || !finalNorm) throw new LmtuneError('UNSUPPORTED', `the Quad objective needs a causal LM; ${model.cfg.family} is not one`);
  const K = targets.index.length;
  let real = 0;
  for (const y of targets.label) if (y !== -100) real++;
  if (real === 0) throw new LmtuneError('DATA', 'Quad: a batch without targets');
  const weight = Float32Array.from(targets.label, (y) => (y === -100 ? 0 : 1 / real));
  const out = await model.runHead(
    `quad|${K}|${wrt.join(',')}`,
    batch,
    (h) => {
      const f = finalNorm(h.ctx, h.rows(h.g.input('quad_index', [K], 'i64')));
      const loss = quadLoss(h.g, f, h.param(QUAD_DENSE), h.param(QUAD_PHI), h.g.input('quad_label', [K], 'i64'), h.g.input('quad_weight', [K], 'f32'));
      const outputs: Record<string, Value> = { loss };
      if (wrt.length) grad(loss, wrt.map((n) => h.param(n))).forEach((gv, i) => (outputs[`grad:${wrt[i]!}`] = gv));
      return outputs;
    },
    {
      quad_index: BigInt64Array.from(targets.index, (x) => BigInt(x)),
      // padding rows point at token 0; their weight is 0
      quad_label: BigInt64Array.from(targets.label, (y) => BigInt(y === -100 ? 0 : y)),
      quad_weight: weight,
    },
  );
  const loss = toFloat64(out.loss!)[0]!;
  if (!Number.isFinite(loss)) throw new LmtuneError('NUMERIC', `Quad loss is ${loss}`);
  if (!wrt.length) return { loss, grads: null };
  const grads = new Map<string, Float32Array>();
  for (const n of wrt) {
    const d = out[`grad:${n}`]!.data;
    grads.set(n, d instanceof Float32Array ? d : Float32Array.from(d as Float64Array));
  }
  return { loss, grads };
}

/**
 * Adds A (identity, so training starts from h = f) and Φ to a freshly initialized model: Φ ~ N(0, 0.02²)
 * when learned, or a copy of a fixed output embedding [V, E] (frozen by leaving it out of the trained names).
 */
export function addQuadWeights(model: TransformerModel, init: { fixedPhi?: { shape: readonly number[]; data: Float32Array } | undefined }, normal: () => number): void {
  const V = model.cfg.vocabSize;
  const E = model.cfg.hiddenSize;
  const eye = new Float32Array(E * E);
  for (let i = 0; i < E; i++) eye[i * E + i] = 1;
  model.weights.set(QUAD_DENSE, [E, E], eye);
  if (init.fixedPhi) {
    const [v, e] = init.fixedPhi.shape;
    if (v !== V || e !== E) throw new LmtuneError('CONFIG', `--quad-phi-from: its output embedding is [${init.fixedPhi.shape.join(', ')}], this model needs [${V}, ${E}]`, 'pretrain with the same --vocab-size and --dim as that model');
    model.weights.set(QUAD_PHI, [V, E], Float32Array.from(init.fixedPhi.data));
  } else {
    model.weights.set(QUAD_PHI, [V, E], Float32Array.from({ length: V * E }, () => normal() * 0.02));
  }
}

/** the weights and config a Quad model is saved with: untied GPT-2, lm_head = Φ·A, no quad.* tensors */
export function foldedCheckpoint(model: TransformerModel): { raw: Record<string, unknown>; weights: WeightStore } {
  const head = foldedHead(model.weights);
  const weights = model.weights.clone();
  weights.delete(QUAD_DENSE);
  weights.delete(QUAD_PHI);
  weights.set('lm_head.weight', head.shape, head.data);
  return { raw: { ...model.cfg.raw, tie_word_embeddings: false }, weights };
}

/** a fixed Φ for --quad-phi-from: another GPT-2 checkpoint's output embedding and its vocabulary */
export async function loadQuadPhi(dir: string): Promise<{ from: string; shape: readonly number[]; data: Float32Array; vocab: Record<string, number> }> {
  const m = await loadTransformer(dir, { backend: 'ref' });
  if (m.cfg.family !== 'gpt2') throw new LmtuneError('UNSUPPORTED', `--quad-phi-from ${dir}: a ${m.cfg.family} model; lmtune pretrains GPT-2 models, whose Φ must come from a GPT-2 model`);
  const t = m.weights.has('lm_head.weight') ? m.weights.get('lm_head.weight') : m.weights.get('transformer.wte.weight');
  return { from: dir, shape: t.shape, data: t.data, vocab: readJson<Record<string, number>>(join(dir, 'vocab.json'), `--quad-phi-from ${dir} vocabulary`) };
}

/** the unfolded Quad weights of a model folder (`QUAD_FILE`), or null for a folder without one */
export interface QuadFile {
  dense: { shape: readonly number[]; data: Float32Array };
  phi: { shape: readonly number[]; data: Float32Array };
  /** the folder Φ was fixed to at pretraining (`--quad-phi-from`), or null for a learned Φ */
  phiFixedFrom: string | null;
}

/** writes `QUAD_FILE` into `dir` from a model that carries the quad.* weights */
export function writeQuadFile(dir: string, model: TransformerModel, phiFixedFrom: string | null): void {
  const t = (n: string) => ({ shape: model.weights.get(n).shape, data: model.weights.get(n).data });
  writeSafetensors(join(dir, QUAD_FILE), new Map([[QUAD_DENSE, t(QUAD_DENSE)], [QUAD_PHI, t(QUAD_PHI)]]), { format: 'pt', lmtune: 'quad', phi: phiFixedFrom === null ? 'learned' : 'fixed', ...(phiFixedFrom === null ? {} : { phi_from: phiFixedFrom }) });
}

export function readQuadFile(dir: string): QuadFile | null {
  const path = join(dir, QUAD_FILE);
  if (!existsSync(path)) return null;
  const { header, tensors } = readSafetensors(path);
  const get = (n: string) => {
    const t = tensors.get(n);
    if (!t) throw new LmtuneError('CHECKPOINT', `${path}: no tensor '${n}'`, `a ${QUAD_FILE} holds ${QUAD_DENSE} and ${QUAD_PHI}, as lmtune pretrain --objective quad writes it`);
    return { shape: t.shape, data: t.data };
  };
  const phi = header.metadata['phi'];
  if (phi !== 'learned' && phi !== 'fixed') throw new LmtuneError('CHECKPOINT', `${path}: metadata "phi" is ${JSON.stringify(phi)}, expected "learned" or "fixed"`);
  return { dense: get(QUAD_DENSE), phi: get(QUAD_PHI), phiFixedFrom: phi === 'fixed' ? (header.metadata['phi_from'] ?? '(unknown)') : null };
}

/**
 * writes a Quad model folder into `dir` (empty): the folded plain checkpoint (loads and runs like any other),
 * `QUAD_FILE`, and the tokenizer files from `tokenizerFrom` when given
 */
export function saveQuadModel(model: TransformerModel, dir: string, phiFixedFrom: string | null): void {
  const folded = foldedCheckpoint(model);
  TransformerModel.fromWeights(folded.raw, folded.weights, model.tokenizer).save(dir);
  writeQuadFile(dir, model, phiFixedFrom);
}
