/**
 * Does fine-tuning behave like its kernel? Two checks of spec A4, between θ₀ and fine-tuned weights θ_FT:
 *
 * - linearization: f_lin(ξ) = f(ξ; θ₀) + ⟨∇f(ξ; θ₀), θ_FT − θ₀⟩; the share of fine-tuning's accuracy gain
 *   it recovers, (acc_lin − acc₀) / (acc_FT − acc₀);
 * - fixed features: the relative kernel change ‖K(θ_FT) − K(θ₀)‖_F / ‖K(θ₀)‖_F on the training set.
 *
 * The Jacobian-vector product is taken from the per-example Jacobian rows, block by block (one reverse pass
 * per class per batch, as for the kernel), not by forward mode. LoRA runs are merged into their base
 * weights first, so θ_FT − θ₀ is a difference of base weights.
 */
import { LmtuneError } from '../util/errors.ts';
import type { TransformerModel } from '../heads/model.ts';
import { mergeLora } from '../peft/index.ts';
import { computeKernels } from './accumulate.ts';
import type { KernelFormula } from './formula.ts';
import { ModelJacobianSource, type KernelEncoding } from './model-source.ts';
import { decode } from './solvers.ts';

export interface DiagnoseOptions {
  params: readonly string[];
  formula?: KernelFormula;
  batch?: number;
  blockElements?: number;
}

export interface Diagnosis {
  n: number;
  accuracy: { initial: number; finetuned: number; linearized: number };
  /** (acc_lin − acc₀) / (acc_FT − acc₀); null when fine-tuning did not change the accuracy */
  linearizedShare: number | null;
  /** ‖f_lin − f_FT‖ / ‖f_FT − f₀‖ over the eval logits */
  linearizationError: number;
  kernelChange: number;
  formula: KernelFormula;
  f0: Float64Array;
  fLinearized: Float64Array;
  fFinetuned: Float64Array;
}

/** the tuned model's weights on the base model's parameter names (LoRA merged) */
export function tunedWeights(tuned: TransformerModel): (name: string) => Float32Array {
  if (tuned.peft?.kind === 'lora' && tuned.adapters) {
    const merged = mergeLora(tuned.cfg, tuned.weights, tuned.adapters, tuned.peft);
    return (n) => merged.get(n).data;
  }
  if (tuned.peft && tuned.peft.kind !== 'full') throw new LmtuneError('UNSUPPORTED', `linearization of ${tuned.peft.kind} fine-tuning is not supported`, 'diagnose full or LoRA fine-tuning');
  return (n) => tuned.weights.get(n).data;
}

/** f [n·C] at the scored rows, by plain forward passes in batches */
export async function outputsOf(model: TransformerModel, enc: KernelEncoding, set: string, batch = 8): Promise<Float64Array> {
  const xs = enc.sets[set]!;
  const C = enc.labelIds.length;
  const out = new Float64Array(xs.length * C);
  for (let s = 0; s < xs.length; s += batch) {
    const chunk = xs.slice(s, s + batch);
    const { logits, seq } = await model.forwardAll(chunk.map((x) => x.ids));
    const V = logits.length / (chunk.length * seq);
    chunk.forEach((x, e) => enc.labelIds.forEach((id, c) => (out[(s + e) * C + c] = logits[(e * seq + x.pos) * V + id]!)));
  }
  return out;
}

function accuracy(f: Float64Array, labels: readonly number[], C: number): number {
  const p = decode(f, C);
  return labels.reduce((a, l, i) => a + (p[i] === l ? 1 : 0), 0) / labels.length;
}

export async function diagnose(base: TransformerModel, tuned: TransformerModel, enc: KernelEncoding, o: DiagnoseOptions): Promise<Diagnosis> {
  if (!enc.sets.train || !enc.sets.eval) throw new LmtuneError('CONFIG', 'diagnose needs a train set (kernel change) and an eval set (linearization)');
  if (base.cfg.family !== tuned.cfg.family) throw new LmtuneError('CHECKPOINT', `the fine-tuned model is a ${tuned.cfg.family}, the base a ${base.cfg.family}`);
  const C = enc.labelIds.length;
  const w = tunedWeights(tuned);
  const batch = o.batch ?? 8;
  // as `kernel compute`: one block's training Jacobian and its sign copy in 1 GiB
  const blockElements = o.blockElements ?? Math.max(1, Math.floor(2 ** 30 / (8 * enc.sets.train.length * C)));
  for (const n of o.params) {
    if (!tuned.weights.has(n)) throw new LmtuneError('CHECKPOINT', `the fine-tuned model has no weight '${n}'`, 'diagnose a fine-tuning run of the same base model');
    if (tuned.weights.get(n).data.length !== base.tensor(n).length) throw new LmtuneError('CHECKPOINT', `weight '${n}' differs in size between the base and the fine-tuned model`);
  }
  const evalOnly: KernelEncoding = { ...enc, sets: { eval: enc.sets.eval } };
  const src = new ModelJacobianSource(base, evalOnly, { params: o.params, blockElements, batch });
  const M = enc.sets.eval.length;
  const f0 = new Float64Array(M * C);
  const lin = new Float64Array(M * C);
  for (let b = 0; b < src.blocks.length; b++) {
    const P = src.blocks[b]!;
    const delta = new Float64Array(P);
    let off = 0;
    for (const n of src.paramsOfBlock(b)) {
      const t0 = base.tensor(n);
      const t1 = w(n);
      for (let k = 0; k < t0.length; k++) delta[off + k] = t1[k]! - t0[k]!;
      off += t0.length;
    }
    for (let e = 0; e < M; e += batch) {
      const n = Math.min(batch, M - e);
      const { rows, f } = await src.jacobian('eval', e, n, b);
      if (b === 0) f0.set(f, e * C);
      for (let r = 0; r < n * C; r++) {
        let s = 0;
        for (let k = 0; k < P; k++) s += rows[r * P + k]! * delta[k]!;
        lin[e * C + r] = lin[e * C + r]! + s;
      }
    }
  }
  for (let i = 0; i < lin.length; i++) lin[i] = lin[i]! + f0[i]!;
  // the fine-tuned outputs: the base model's graph fed with the tuned weights (LoRA merged)
  const saved = new Map(o.params.map((n) => [n, Float32Array.from(base.tensor(n))]));
  let fT: Float64Array;
  let kT: Float64Array;
  const formula = o.formula ?? 'sgd';
  const trainOnly: KernelEncoding = { ...enc, sets: { train: enc.sets.train } };
  const k0 = (await computeKernels(new ModelJacobianSource(base, trainOnly, { params: o.params, blockElements, batch }), { formula, batch })).kernels.train_train!;
  try {
    for (const n of o.params) base.tensor(n).set(w(n));
    fT = await outputsOf(base, enc, 'eval', batch);
    kT = (await computeKernels(new ModelJacobianSource(base, trainOnly, { params: o.params, blockElements, batch }), { formula, batch })).kernels.train_train!;
  } finally {
    for (const n of o.params) base.tensor(n).set(saved.get(n)!);
  }
  let dk = 0;
  let nk = 0;
  for (let i = 0; i < k0.length; i++) {
    dk += (kT[i]! - k0[i]!) ** 2;
    nk += k0[i]! ** 2;
  }
  let el = 0;
  let eFt = 0;
  for (let i = 0; i < lin.length; i++) {
    el += (lin[i]! - fT[i]!) ** 2;
    eFt += (fT[i]! - f0[i]!) ** 2;
  }
  const labels = enc.sets.eval.map((x) => x.label);
  const acc0 = accuracy(f0, labels, C);
  const accT = accuracy(fT, labels, C);
  const accL = accuracy(lin, labels, C);
  return {
    n: M,
    accuracy: { initial: acc0, finetuned: accT, linearized: accL },
    linearizedShare: accT !== acc0 ? (accL - acc0) / (accT - acc0) : null,
    linearizationError: Math.sqrt(el / Math.max(eFt, Number.MIN_VALUE)),
    kernelChange: Math.sqrt(dk / Math.max(nk, Number.MIN_VALUE)),
    formula,
    f0,
    fLinearized: lin,
    fFinetuned: fT,
  };
}
