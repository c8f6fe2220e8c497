/**
 * The oracle: a plain float64 implementation of the inner model and of the two gradient steps TinT is
 * compared with. It shares nothing with the TinT construction except the matrix helper, the activation
 * functions and the inner-model types.
 *
 *   innerForward   the inner model (pre-LN decoder, tied head, causal attention, optional icl mask)
 *   intendedStep   what TinT computes: SGD on the summed, masked CE with
 *                    - stop-gradient through the attention scores, ∂v_i = Σ_j A_{j,i} ∂o_j over j = i or
 *                      (j > i and trainMask[j] = 1);
 *                    - layer-norm and activation derivatives by finite differences with scale N
 *                      ('finite-difference') or exactly ('analytic', the N → ∞ limit);
 *                    - weight gradients summed over training positions only;
 *                    - fc2 bias moved ffn/d times as far (one b2/chunks copy per chunk) and the last row's
 *                      unmasked loss gradient Eᵀp (both switchable, on by default like the reference);
 *                    - trains V, O, fc1, fc2 (weights and biases), LN β of the top n_sim layers and the final
 *                      LN β; Q, K, LN γ and embeddings stay fixed.
 *   exactStep      SGD with the exact gradient of the summed, masked CE (hand-written backprop) on the same
 *                  parameters; `exactGradient` returns the gradient of every layer and final-LN parameter.
 */
import { LmtuneError } from '../util/errors.ts';
import { activationByName, type ActivationFn } from './activations.ts';
import { cloneInnerModel, embedTokens, checkSequence, type InnerLayer, type InnerModel, type InnerSequence, type LayerNormWeights, type LinearWeights } from './inner.ts';
import { add, matmul, matmulT, softmaxVector, zeros, type Mat } from './matrix.ts';

// ---------------------------------------------------------------------------------------------------------
// Forward

interface LayerNormCache {
  readonly y: Mat;
  readonly xhat: Mat;
  readonly rstd: Float64Array;
}

function layerNorm(x: Mat, ln: LayerNormWeights, eps: number): LayerNormCache {
  const { rows: T, cols: d } = x;
  const y = zeros(T, d);
  const xhat = zeros(T, d);
  const rstd = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let mu = 0;
    for (let c = 0; c < d; c++) mu += x.data[t * d + c]!;
    mu /= d;
    let v = 0;
    for (let c = 0; c < d; c++) v += (x.data[t * d + c]! - mu) ** 2;
    const r = 1 / Math.sqrt(v / d + eps);
    rstd[t] = r;
    for (let c = 0; c < d; c++) {
      const h = (x.data[t * d + c]! - mu) * r;
      xhat.data[t * d + c] = h;
      y.data[t * d + c] = ln.gamma[c]! * h + ln.beta[c]!;
    }
  }
  return { y, xhat, rstd };
}

/** x Wᵀ + b for W [out, in] */
function linear(x: Mat, l: LinearWeights): Mat {
  const y = matmulT(x, l.w);
  for (let t = 0; t < y.rows; t++) for (let c = 0; c < y.cols; c++) y.data[t * y.cols + c]! += l.b[c]!;
  return y;
}

export interface LayerCache {
  readonly x: Mat;
  readonly ln1: LayerNormCache;
  readonly q: Mat;
  readonly k: Mat;
  readonly v: Mat;
  /** per head, [T, T] attention probabilities */
  readonly probs: Mat[];
  /** concatenated head outputs, before out_proj */
  readonly attn: Mat;
  readonly mid: Mat;
  readonly ln2: LayerNormCache;
  readonly z: Mat;
  readonly act: Mat;
  readonly out: Mat;
}

export interface ForwardCache {
  readonly layers: LayerCache[];
  readonly lnF: LayerNormCache;
  /** input of the final layer norm */
  readonly hidden: Mat;
  readonly logits: Mat;
}

function allowed(seq: InnerSequence, i: number, j: number): boolean {
  return j <= i && (!seq.iclMask || seq.iclMask[i]![j] === 1);
}

function layerForward(layer: InnerLayer, x: Mat, seq: InnerSequence, model: InnerModel, act: ActivationFn): LayerCache {
  const { nHeads, dModel: d, lnEps } = model.config;
  const dh = d / nHeads;
  const T = x.rows;
  const ln1 = layerNorm(x, layer.ln1, lnEps);
  const q = linear(ln1.y, layer.q);
  const k = linear(ln1.y, layer.k);
  const v = linear(ln1.y, layer.v);
  const attn = zeros(T, d);
  const probs: Mat[] = [];
  for (let h = 0; h < nHeads; h++) {
    const A = zeros(T, T);
    for (let i = 0; i < T; i++) {
      const s = new Float64Array(T).fill(-Infinity);
      for (let j = 0; j < T; j++) {
        if (!allowed(seq, i, j)) continue;
        let dot = 0;
        for (let c = 0; c < dh; c++) dot += q.data[i * d + h * dh + c]! * k.data[j * d + h * dh + c]!;
        s[j] = dot / Math.sqrt(dh);
      }
      const p = softmaxVector(s);
      A.data.set(p, i * T);
      for (let j = 0; j < T; j++) {
        if (p[j] === 0) continue;
        for (let c = 0; c < dh; c++) attn.data[i * d + h * dh + c]! += p[j]! * v.data[j * d + h * dh + c]!;
      }
    }
    probs.push(A);
  }
  const mid = add(x, linear(attn, layer.o));
  const ln2 = layerNorm(mid, layer.ln2, lnEps);
  const z = linear(ln2.y, layer.fc1);
  const a = zeros(z.rows, z.cols);
  for (let i = 0; i < z.data.length; i++) a.data[i] = act.f(z.data[i]!);
  const out = add(mid, linear(a, layer.fc2));
  return { x, ln1, q, k, v, probs, attn, mid, ln2, z, act: a, out };
}

export function innerForward(model: InnerModel, seq: InnerSequence): ForwardCache {
  checkSequence(model.config, seq);
  const act = activationByName(model.config.activation);
  let h = embedTokens(model, seq);
  const layers: LayerCache[] = [];
  for (const layer of model.layers) {
    const c = layerForward(layer, h, seq, model, act);
    layers.push(c);
    h = c.out;
  }
  const lnF = layerNorm(h, model.lnF, model.config.lnEps);
  return { layers, lnF, hidden: h, logits: matmulT(lnF.y, model.wte) };
}

export function innerLogits(model: InnerModel, seq: InnerSequence): Mat {
  return innerForward(model, seq).logits;
}

/** Cross-entropy of predicting token t+1 at position t, for t < T−1. */
export function nextTokenLosses(logits: Mat, tokens: readonly number[]): Float64Array {
  const V = logits.cols;
  const out = new Float64Array(logits.rows - 1);
  for (let t = 0; t + 1 < logits.rows; t++) {
    const row = logits.data.subarray(t * V, (t + 1) * V);
    let mx = -Infinity;
    for (const z of row) mx = Math.max(mx, z);
    let s = 0;
    for (const z of row) s += Math.exp(z - mx);
    out[t] = mx + Math.log(s) - row[tokens[t + 1]!]!;
  }
  return out;
}

/** Loss weight of position t: trainMask[t+1]·gradMask[t+1] (0 on the last row). */
export function lossWeights(seq: InnerSequence): Float64Array {
  const T = seq.tokens.length;
  const m = new Float64Array(T);
  for (let t = 0; t + 1 < T; t++) m[t] = seq.trainMask[t + 1]! * (seq.gradMask ? seq.gradMask[t + 1]! : 1);
  return m;
}

/** The summed, masked CE that TinT descends: Σ_t lossWeight_t · CE_t. */
export function summedLoss(model: InnerModel, seq: InnerSequence): number {
  const losses = nextTokenLosses(innerLogits(model, seq), seq.tokens);
  const m = lossWeights(seq);
  let s = 0;
  for (let t = 0; t < losses.length; t++) s += m[t]! * losses[t]!;
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// Gradients

/** A gradient with the inner model's shapes (fields not trained are zero). */
export interface InnerGradient {
  readonly layers: InnerLayer[];
  readonly lnF: LayerNormWeights;
}

function zeroLinear(l: LinearWeights): LinearWeights {
  return { w: zeros(l.w.rows, l.w.cols), b: new Float64Array(l.b.length) };
}

function zeroLn(l: LayerNormWeights): LayerNormWeights {
  return { gamma: new Float64Array(l.gamma.length), beta: new Float64Array(l.beta.length) };
}

function zeroGradient(model: InnerModel): InnerGradient {
  return {
    layers: model.layers.map((L) => ({ ln1: zeroLn(L.ln1), q: zeroLinear(L.q), k: zeroLinear(L.k), v: zeroLinear(L.v), o: zeroLinear(L.o), ln2: zeroLn(L.ln2), fc1: zeroLinear(L.fc1), fc2: zeroLinear(L.fc2) })),
    lnF: zeroLn(model.lnF),
  };
}

/** g.w += Σ_{t: rowWeight_t ≠ 0} rowWeight_t dy_tᵀ x_t, g.b += Σ rowWeight_t dy_t */
function accumulateLinear(g: LinearWeights, dy: Mat, x: Mat, rowWeight: (t: number) => number, biasScale = 1): void {
  const { rows: T } = dy;
  const out = dy.cols;
  const inp = x.cols;
  for (let t = 0; t < T; t++) {
    const m = rowWeight(t);
    if (m === 0) continue;
    for (let i = 0; i < out; i++) {
      const gi = m * dy.data[t * out + i]!;
      if (gi === 0) continue;
      g.b[i]! += biasScale * gi;
      for (let j = 0; j < inp; j++) g.w.data[i * inp + j]! += gi * x.data[t * inp + j]!;
    }
  }
}

function accumulateBeta(g: Float64Array, dy: Mat, rowWeight: (t: number) => number): void {
  for (let t = 0; t < dy.rows; t++) {
    const m = rowWeight(t);
    if (m !== 0) for (let c = 0; c < dy.cols; c++) g[c]! += m * dy.data[t * dy.cols + c]!;
  }
}

/** Exact vector-Jacobian product of the un-affine layer norm: rstd·(u − mean(u) − x̂·mean(u ⊙ x̂)). */
function layerNormVjp(c: LayerNormCache, u: Mat): Mat {
  const { rows: T, cols: d } = u;
  const out = zeros(T, d);
  for (let t = 0; t < T; t++) {
    let mu = 0;
    let mux = 0;
    for (let i = 0; i < d; i++) {
      mu += u.data[t * d + i]!;
      mux += u.data[t * d + i]! * c.xhat.data[t * d + i]!;
    }
    mu /= d;
    mux /= d;
    for (let i = 0; i < d; i++) out.data[t * d + i] = c.rstd[t]! * (u.data[t * d + i]! - mu - c.xhat.data[t * d + i]! * mux);
  }
  return out;
}

function scaleColumns(u: Mat, s: Float64Array): Mat {
  const out = zeros(u.rows, u.cols);
  for (let t = 0; t < u.rows; t++) for (let c = 0; c < u.cols; c++) out.data[t * u.cols + c] = u.data[t * u.cols + c]! * s[c]!;
  return out;
}

/** ∂(summed masked CE)/∂logits: lossWeight_t·(softmax − onehot); optionally the last row's unmasked softmax. */
function logitGradient(logits: Mat, seq: InnerSequence, lastRowQuirk: boolean): Mat {
  const T = logits.rows;
  const V = logits.cols;
  const m = lossWeights(seq);
  const g = zeros(T, V);
  for (let t = 0; t < T; t++) {
    const last = t === T - 1;
    if (last && !lastRowQuirk) continue;
    const w = last ? 1 : m[t]!;
    if (w === 0) continue;
    const p = softmaxVector(logits.data.subarray(t * V, (t + 1) * V));
    if (!last) p[seq.tokens[t + 1]!]! -= 1;
    for (let v = 0; v < V; v++) g.data[t * V + v] = w * p[v]!;
  }
  return g;
}

/** Rows of x restricted to the positions whose trainMask is 1 (weights for the descent sums). */
function trainRows(seq: InnerSequence): (t: number) => number {
  return (t) => seq.trainMask[t]!;
}

/** The exact gradient of `summedLoss` w.r.t. every layer and final-LN parameter (not the embeddings). */
export function exactGradient(model: InnerModel, seq: InnerSequence): InnerGradient {
  const fc = innerForward(model, seq);
  const act = activationByName(model.config.activation);
  const { nHeads, dModel: d } = model.config;
  const dh = d / nHeads;
  const grad = zeroGradient(model);
  const all = (): number => 1;

  const dLogits = logitGradient(fc.logits, seq, false);
  const dyF = matmul(dLogits, model.wte);
  accumulateBeta(grad.lnF.beta, dyF, all);
  accumulateBeta(grad.lnF.gamma, elementProduct(dyF, fc.lnF.xhat), all);
  let dh_ = layerNormVjp(fc.lnF, scaleColumns(dyF, model.lnF.gamma));

  for (let l = model.layers.length - 1; l >= 0; l--) {
    const W = model.layers[l]!;
    const c = fc.layers[l]!;
    const g = grad.layers[l]!;
    const T = c.x.rows;
    // MLP
    accumulateLinear(g.fc2, dh_, c.act, all);
    const dAct = matmul(dh_, W.fc2.w);
    const dz = zeros(dAct.rows, dAct.cols);
    for (let i = 0; i < dz.data.length; i++) dz.data[i] = dAct.data[i]! * act.df(c.z.data[i]!);
    accumulateLinear(g.fc1, dz, c.ln2.y, all);
    const dm = matmul(dz, W.fc1.w);
    accumulateBeta(g.ln2.beta, dm, all);
    accumulateBeta(g.ln2.gamma, elementProduct(dm, c.ln2.xhat), all);
    const dMid = add(dh_, layerNormVjp(c.ln2, scaleColumns(dm, W.ln2.gamma)));
    // attention
    accumulateLinear(g.o, dMid, c.attn, all);
    const dAttn = matmul(dMid, W.o.w);
    const dq = zeros(T, d);
    const dk = zeros(T, d);
    const dv = zeros(T, d);
    for (let h = 0; h < nHeads; h++) {
      const A = c.probs[h]!;
      for (let i = 0; i < T; i++) {
        // dA_ij = ⟨do_i, v_j⟩; dscore_ij = A_ij (dA_ij − Σ_k A_ik dA_ik)
        const dA = new Float64Array(T);
        let dot = 0;
        for (let j = 0; j < T; j++) {
          const a = A.data[i * T + j]!;
          if (a === 0) continue;
          let s = 0;
          for (let e = 0; e < dh; e++) {
            s += dAttn.data[i * d + h * dh + e]! * c.v.data[j * d + h * dh + e]!;
            dv.data[j * d + h * dh + e]! += a * dAttn.data[i * d + h * dh + e]!;
          }
          dA[j] = s;
          dot += a * s;
        }
        for (let j = 0; j < T; j++) {
          const a = A.data[i * T + j]!;
          if (a === 0) continue;
          const ds = (a * (dA[j]! - dot)) / Math.sqrt(dh);
          for (let e = 0; e < dh; e++) {
            dq.data[i * d + h * dh + e]! += ds * c.k.data[j * d + h * dh + e]!;
            dk.data[j * d + h * dh + e]! += ds * c.q.data[i * d + h * dh + e]!;
          }
        }
      }
    }
    accumulateLinear(g.q, dq, c.ln1.y, all);
    accumulateLinear(g.k, dk, c.ln1.y, all);
    accumulateLinear(g.v, dv, c.ln1.y, all);
    const da = add(add(matmul(dq, W.q.w), matmul(dk, W.k.w)), matmul(dv, W.v.w));
    accumulateBeta(g.ln1.beta, da, all);
    accumulateBeta(g.ln1.gamma, elementProduct(da, c.ln1.xhat), all);
    dh_ = add(dMid, layerNormVjp(c.ln1, scaleColumns(da, W.ln1.gamma)));
  }
  return grad;
}

function elementProduct(a: Mat, b: Mat): Mat {
  const out = zeros(a.rows, a.cols);
  for (let i = 0; i < a.data.length; i++) out.data[i] = a.data[i]! * b.data[i]!;
  return out;
}

export type DerivativeMode = { readonly kind: 'finite-difference'; readonly scale: number } | { readonly kind: 'analytic' };

export interface IntendedStepOptions {
  readonly lr: number;
  /** n_sim top layers (default all) */
  readonly simulatedLayers?: number;
  /** k repeated full-batch steps (default 1) */
  readonly steps?: number;
  readonly derivatives: DerivativeMode;
  /** the last row's loss gradient Eᵀp, never masked (default true, as TinT) */
  readonly lastRowQuirk?: boolean;
  /** fc2 bias gradient multiplier (default ffn/d, as TinT; 1 removes the quirk) */
  readonly fc2BiasScale?: number;
  /** false: ∂v = ∂o (default true) */
  readonly backpropThroughAttention?: boolean;
}

/** The approximate gradient TinT follows (see the file comment), at the current weights. */
export function intendedGradient(model: InnerModel, seq: InnerSequence, opts: IntendedStepOptions): InnerGradient {
  const fc = innerForward(model, seq);
  const act = activationByName(model.config.activation);
  const { nHeads, dModel: d, nLayers, lnEps, ffnDim } = model.config;
  const dh = d / nHeads;
  const nSim = opts.simulatedLayers ?? nLayers;
  const fc2BiasScale = opts.fc2BiasScale ?? ffnDim / d;
  const grad = zeroGradient(model);
  const train = trainRows(seq);
  const lnDerivative = (cache: LayerNormCache, x: Mat, u: Mat): Mat => {
    if (opts.derivatives.kind === 'analytic') return layerNormVjp(cache, u);
    // N·[LN(x + u/N) − LN(x)] with the un-affine LN
    const N = opts.derivatives.scale;
    const shifted = zeros(x.rows, x.cols);
    for (let i = 0; i < x.data.length; i++) shifted.data[i] = x.data[i]! + u.data[i]! / N;
    const ones = { gamma: new Float64Array(d).fill(1), beta: new Float64Array(d) };
    const y = layerNorm(shifted, ones, lnEps).y;
    for (let i = 0; i < y.data.length; i++) y.data[i] = N * (y.data[i]! - cache.xhat.data[i]!);
    return y;
  };
  const actDerivative = (z: Mat, u: Mat): Mat => {
    const out = zeros(z.rows, z.cols);
    const fd = opts.derivatives;
    for (let i = 0; i < z.data.length; i++) {
      out.data[i] = fd.kind === 'analytic' ? act.df(z.data[i]!) * u.data[i]! : fd.scale * (act.f(z.data[i]! + u.data[i]! / fd.scale) - act.f(z.data[i]!));
    }
    return out;
  };

  const dyF = matmul(logitGradient(fc.logits, seq, opts.lastRowQuirk ?? true), model.wte);
  accumulateBeta(grad.lnF.beta, dyF, train);
  let G = lnDerivative(fc.lnF, fc.hidden, scaleColumns(dyF, model.lnF.gamma));

  for (let l = nLayers - 1; l >= nLayers - nSim; l--) {
    const W = model.layers[l]!;
    const c = fc.layers[l]!;
    const g = grad.layers[l]!;
    const T = c.x.rows;
    accumulateLinear(g.fc2, G, c.act, train, fc2BiasScale);
    const dz = actDerivative(c.z, matmul(G, W.fc2.w));
    accumulateLinear(g.fc1, dz, c.ln2.y, train);
    const dm = matmul(dz, W.fc1.w);
    accumulateBeta(g.ln2.beta, dm, train);
    const dMid = add(G, lnDerivative(c.ln2, c.mid, scaleColumns(dm, W.ln2.gamma)));
    accumulateLinear(g.o, dMid, c.attn, train);
    const dAttn = matmul(dMid, W.o.w);
    let dv: Mat;
    if (opts.backpropThroughAttention ?? true) {
      dv = zeros(T, d);
      for (let h = 0; h < nHeads; h++) {
        const A = c.probs[h]!;
        for (let i = 0; i < T; i++) {
          for (let j = i; j < T; j++) {
            if (j > i && seq.trainMask[j] !== 1) continue;
            const a = A.data[j * T + i]!;
            if (a === 0) continue;
            for (let e = 0; e < dh; e++) dv.data[i * d + h * dh + e]! += a * dAttn.data[j * d + h * dh + e]!;
          }
        }
      }
    } else {
      dv = dAttn;
    }
    accumulateLinear(g.v, dv, c.ln1.y, train);
    const da = matmul(dv, W.v.w);
    accumulateBeta(g.ln1.beta, da, train);
    G = add(dMid, lnDerivative(c.ln1, c.x, scaleColumns(da, W.ln1.gamma)));
  }
  return grad;
}

/** θ − η·g on the parameters TinT trains: V, O, fc1, fc2, LN β of the top n_sim layers, final-LN β. */
export function applyStep(model: InnerModel, grad: InnerGradient, lr: number, simulatedLayers: number): InnerModel {
  const out = cloneInnerModel(model);
  const L = model.layers.length;
  const step = (w: Float64Array, g: Float64Array): void => {
    for (let i = 0; i < w.length; i++) w[i]! -= lr * g[i]!;
  };
  const stepLinear = (w: LinearWeights, g: LinearWeights): void => {
    step(w.w.data, g.w.data);
    step(w.b, g.b);
  };
  for (let l = L - simulatedLayers; l < L; l++) {
    const W = out.layers[l]!;
    const g = grad.layers[l]!;
    for (const k of ['v', 'o', 'fc1', 'fc2'] as const) stepLinear(W[k], g[k]);
    step(W.ln1.beta, g.ln1.beta);
    step(W.ln2.beta, g.ln2.beta);
  }
  step(out.lnF.beta, grad.lnF.beta);
  return out;
}

export function intendedStep(model: InnerModel, seq: InnerSequence, opts: IntendedStepOptions): InnerModel {
  const nSim = checkSimulated(model, opts.simulatedLayers);
  let m = model;
  for (let s = 0; s < (opts.steps ?? 1); s++) m = applyStep(m, intendedGradient(m, seq, opts), opts.lr, nSim);
  return m;
}

export interface ExactStepOptions {
  readonly lr: number;
  readonly simulatedLayers?: number;
  readonly steps?: number;
}

export function exactStep(model: InnerModel, seq: InnerSequence, opts: ExactStepOptions): InnerModel {
  const nSim = checkSimulated(model, opts.simulatedLayers);
  let m = model;
  for (let s = 0; s < (opts.steps ?? 1); s++) m = applyStep(m, exactGradient(m, seq), opts.lr, nSim);
  return m;
}

function checkSimulated(model: InnerModel, n: number | undefined): number {
  const L = model.layers.length;
  const nSim = n ?? L;
  if (!Number.isInteger(nSim) || nSim < 0 || nSim > L) throw new LmtuneError('CONFIG', `simulatedLayers must be in [0, ${L}], got ${nSim}`);
  return nSim;
}
