/**
 * LESS features through the Kronecker-factored projection (`--projection kronecker`, LoGra-style): the
 * feature of each LoRA matrix W (u = x Aᵀ, v = u Bᵀ inside the LoRA branch) is P_out G P_inᵀ =
 * Σ_t (P_out δ_t)(P_in x_t)ᵀ with x_t the matrix's input and δ_t = ∂L/∂(its output) at token t, so no
 * per-example gradient and no per-example D-vector is ever formed (src/projection/kronecker.ts).
 *
 * x_t and δ_t of every LoRA matrix come from one batched forward/backward: the forward records each LoRA
 * module's x, u and v (ForwardContext.loraValues), and the head differentiates Σ_b L_b with respect to
 * u and v. Examples do not interact in the batch, so row b of ∂(Σ L)/∂u is ∂L_b/∂u: A's output gradient
 * is ∂L/∂u (input x), B's is ∂L/∂v (input u; v is before the α/r scale, so ∂L/∂v carries it).
 *
 * Adam preconditioning. The reference's feature Γ = m'/√(v' + ε), m' = β1 m + (1−β1) g,
 * v' = β2 v + (1−β2) g², is element-wise and nonlinear in g, so it has no exact factored form. Pool rows
 * use this approximation (`adam` features); target rows use plain gradients (`sgd`), as the reference:
 *   W = β2 v + ε (the per-example (1−β2)g² term dropped) and its rank-1 (Adafactor) fit
 *   W_ab ≈ R_a C_b / S (row sums R, column sums C, total S), so
 *   Γ ≈ β1 m ⊘ √W + (1−β1) diag(ρ) G diag(γ),  ρ_a = S^¼/√R_a,  γ_b = S^¼/√C_b.
 * The first term is the same for every example and is projected once per checkpoint, exactly; the
 * second is the factored projection of δ_t·ρ and x_t·γ. Why this is close: the reference's logged
 * exp_avg_sq is ~1e-13 against ε = 1e-8 (spec §1), so W is nearly the constant ε, for which the rank-1
 * fit is exact, and (1−β2)g² matters only where |g| ≳ √(ε/(1−β2)) ≈ 3e-3. `docs/less.md` reports how the
 * resulting selections compare with the exact Adam features.
 */
import { LmtuneError } from '../util/errors.ts';
import { grad, type Value } from '../engine/index.ts';
import { roundUp } from '../models/batch.ts';
import type { TransformerModel } from '../heads/model.ts';
import { KroneckerProjection, type KroneckerMatrix } from '../projection/kronecker.ts';
import { LESS_ADAM, normalizeRows, perExampleLoss, supervisedBatch, type AdamFeatureOptions, type AdamMoments, type FeatureKind, type GradExample, type GradLayout } from './features.ts';

/** one LoRA matrix of the layout: its module, side, and shape [out, in] */
interface Tap {
  module: string;
  side: 'A' | 'B';
  out: number;
  in: number;
}

/** the LoRA matrices of a gradient layout, as Kronecker matrices (name, out, in) in layout order */
export function kroneckerMatrices(model: TransformerModel, layout: GradLayout): KroneckerMatrix[] {
  return taps(model, layout).map((t, i) => ({ name: layout.names[i]!, out: t.out, in: t.in }));
}

function taps(model: TransformerModel, layout: GradLayout): Tap[] {
  return layout.names.map((name) => {
    const m = /^(.*)\.lora_([AB])\.weight$/.exec(name);
    if (!m) throw new LmtuneError('UNSUPPORTED', `the Kronecker projection handles LoRA matrices only; '${name}' is not one`, 'use --projection dense or srht for other adapters');
    const shape = model.adapters?.has(name) ? model.adapters.get(name).shape : null;
    if (!shape || shape.length !== 2) throw new LmtuneError('SHAPE', `LoRA matrix '${name}' is not a loaded 2-D adapter`);
    return { module: m[1]!, side: m[2] as 'A' | 'B', out: shape[0]!, in: shape[1]! };
  });
}

/** token rows of every LoRA matrix for one batch: inputs and output gradients, real tokens only */
interface TokenRows {
  /** per matrix (layout order): x [rows, in], delta [rows, out] */
  x: Float32Array[];
  delta: Float32Array[];
  /** example e owns rows [seg[e], seg[e+1]) */
  seg: Int32Array;
  losses: Float64Array;
}

/**
 * One batched forward/backward: the inputs and output gradients of every LoRA matrix at every real token
 * of up to `batchSize` examples (rows padded to `batchSize`, sequences to a multiple of 16 and targets to
 * a power of two, like perExampleGradients, so a run reuses few graphs). Token rows are padded with zeros
 * to a multiple of 256 so the projection GEMMs see few shapes.
 */
export async function loraTokenRows(model: TransformerModel, layout: GradLayout, examples: readonly GradExample[], batchSize: number): Promise<TokenRows> {
  const tp = taps(model, layout);
  const modules = [...new Set(tp.map((t) => t.module))];
  const { batch, K, feeds } = supervisedBatch(model, examples, batchSize);
  const n = examples.length;
  const B = batchSize;
  const T = batch.seq;
  const out = await model.runHead(
    `less-kron|K${K}|${modules.join(',')}`,
    batch,
    (h) => {
      const per = perExampleLoss(h, B, K);
      const vals = modules.map((m) => {
        const v = h.ctx.loraValues.get(m);
        if (!v) throw new LmtuneError('GRAPH', `LoRA module '${m}' was not applied in the forward`, 'the adapter does not belong to this model');
        return v;
      });
      const gs = grad(per.sum(), vals.flatMap((v) => [v.u, v.v]));
      const res: Record<string, Value> = { losses: per };
      const flat = (v: Value): Value => v.reshape([B * T, v.shape[v.rank - 1]!]);
      vals.forEach((v, i) => {
        res[`x${i}`] = flat(v.x);
        res[`u${i}`] = flat(v.u);
        res[`gu${i}`] = flat(gs[2 * i]!);
        res[`gv${i}`] = flat(gs[2 * i + 1]!);
      });
      return res;
    },
    feeds,
  );
  const seg = new Int32Array(n + 1);
  examples.forEach((e, b) => (seg[b + 1] = seg[b]! + e.ids.length));
  const rows = roundUp(Math.max(1, seg[n]!), 256);
  // real tokens of example b: flat rows b·T .. b·T + len − 1, packed in example order
  const gather = (name: string, cols: number): Float32Array => {
    const src = out[name]!.data as Float32Array;
    const dst = new Float32Array(rows * cols);
    examples.forEach((e, b) => dst.set(src.subarray(b * T * cols, (b * T + e.ids.length) * cols), seg[b]! * cols));
    return dst;
  };
  const x: Float32Array[] = [];
  const delta: Float32Array[] = [];
  for (const t of tp) {
    const i = modules.indexOf(t.module);
    x.push(gather(t.side === 'A' ? `x${i}` : `u${i}`, t.in));
    delta.push(gather(t.side === 'A' ? `gu${i}` : `gv${i}`, t.out));
  }
  const l = out.losses!.data as Float32Array;
  return { x, delta, seg, losses: Float64Array.from(l.subarray(0, n)) };
}

/** the factored Adam preconditioner of one matrix (see the file comment) */
interface FactoredAdam {
  /** ρ over the output side, γ over the input side */
  outScale: Float64Array;
  inScale: Float64Array;
  /** β1·(m ⊘ √W), projected: the per-checkpoint constant block */
  constant: Float64Array;
}

/** ρ, γ and the projected constant term for every matrix, from the checkpoint's moments by name */
export async function factoredAdam(proj: KroneckerProjection, moments: ReadonlyMap<string, AdamMoments>, o: AdamFeatureOptions = LESS_ADAM): Promise<FactoredAdam[]> {
  const res: FactoredAdam[] = [];
  for (const [m, f] of proj.factors.entries()) {
    const mo = moments.get(f.name);
    if (!mo) throw new LmtuneError('CHECKPOINT', `the checkpoint's optimizer state has no moments for '${f.name}'`, 'Adam features need a warmup checkpoint trained with Adam (exp_avg / exp_avg_sq keyed by parameter name)');
    const size = f.out * f.in;
    if (mo.expAvg.length !== size || mo.expAvgSq.length !== size) throw new LmtuneError('CHECKPOINT', `moments of '${f.name}' have ${mo.expAvg.length} values, the parameter has ${size}`);
    const R = new Float64Array(f.out);
    const C = new Float64Array(f.in);
    let S = 0;
    const c = new Float32Array(size);
    for (let a = 0; a < f.out; a++) {
      for (let b = 0; b < f.in; b++) {
        const w = o.beta2 * mo.expAvgSq[a * f.in + b]! + o.eps;
        R[a] = R[a]! + w;
        C[b] = C[b]! + w;
        S += w;
        c[a * f.in + b] = (o.beta1 * mo.expAvg[a * f.in + b]!) / Math.sqrt(w);
      }
    }
    const s4 = Math.sqrt(Math.sqrt(S));
    res.push({
      outScale: Float64Array.from(R, (r) => s4 / Math.sqrt(r)),
      inScale: Float64Array.from(C, (x) => s4 / Math.sqrt(x)),
      constant: await proj.projectMatrix(m, c),
    });
  }
  return res;
}

/**
 * Kronecker-projected, L2-normalized features of examples: one [n, d] array per projection, from one
 * batched forward/backward per `batchSize` examples. Pool ('adam') features use the factored Adam
 * approximation with the checkpoint's moments, target ('sgd') features the plain gradient.
 */
export async function kroneckerFeatures(
  model: TransformerModel,
  layout: GradLayout,
  examples: readonly GradExample[],
  opts: { batchSize: number; kind: FeatureKind; moments?: ReadonlyMap<string, AdamMoments>; projections: readonly KroneckerProjection[]; adam?: AdamFeatureOptions; rowName?: (k: number) => string },
): Promise<{ features: Float32Array[]; losses: Float64Array }> {
  const n = examples.length;
  const adam = opts.adam ?? LESS_ADAM;
  let pre: FactoredAdam[][] | null = null;
  if (opts.kind === 'adam') {
    if (!opts.moments) throw new LmtuneError('CONFIG', 'Adam features need the checkpoint moments');
    pre = [];
    for (const p of opts.projections) pre.push(await factoredAdam(p, opts.moments, adam));
  }
  const acc = opts.projections.map((p) => new Float64Array(n * p.outDim));
  const losses = new Float64Array(n);
  for (let s = 0; s < n; s += opts.batchSize) {
    const chunk = examples.slice(s, s + opts.batchSize);
    const r = await loraTokenRows(model, layout, chunk, opts.batchSize);
    losses.set(r.losses, s);
    for (const [pi, p] of opts.projections.entries()) {
      if (p.inDim !== layout.dim) throw new LmtuneError('SHAPE', `projection input dimension ${p.inDim} differs from the gradient dimension ${layout.dim}`);
      const y = new Float64Array(chunk.length * p.outDim);
      for (let m = 0; m < p.factors.length; m++) {
        const fa = pre?.[pi]![m];
        await p.accumulate(m, r.x[m]!, r.delta[m]!, r.seg, y, fa ? { inScale: fa.inScale, outScale: fa.outScale, weight: 1 - adam.beta1 } : {});
        if (fa) {
          const f = p.factors[m]!;
          for (let e = 0; e < chunk.length; e++) for (let j = 0; j < f.keep; j++) y[e * p.outDim + f.offset + j] = y[e * p.outDim + f.offset + j]! + fa.constant[j]!;
        }
      }
      acc[pi]!.set(y, s * p.outDim);
    }
  }
  const rowName = opts.rowName ?? ((k: number) => `example ${k}`);
  for (let k = 0; k < n; k++) if (!Number.isFinite(losses[k]!)) throw new LmtuneError('NUMERIC', `LESS features: the loss of ${rowName(k)} is ${losses[k]}`, 'the warmup diverged or the row is degenerate; check the warmup log, or lower --warmup-lr');
  const features = opts.projections.map((p, pi) => {
    const a = acc[pi]!;
    for (let i = 0; i < a.length; i++) {
      if (!Number.isFinite(a[i]!)) throw new LmtuneError('NUMERIC', `LESS features: the Kronecker feature of ${rowName(Math.floor(i / p.outDim))} holds ${a[i]} at column ${i % p.outDim}`, 'the warmup diverged or the row is degenerate; check the warmup log, or lower --warmup-lr');
    }
    return normalizeRows(Float32Array.from(a), n, p.outDim);
  });
  return { features, losses };
}
