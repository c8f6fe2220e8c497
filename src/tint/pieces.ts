/**
 * The transformer pieces every TinT module is built from, acting on the (P + T) × H matrix X (prefix rows
 * first) and the one-hot position stream:
 *
 *   - head maps: linear maps of a row that act block by block ("per-head" maps, the reference's Conv2D) or
 *     mix whole blocks with one matrix shared by every coordinate ("head-mixing", Conv2D with transpose);
 *   - attention: linear (no softmax) or softmax, with per-head q/k/v from head maps plus a position term;
 *   - gates: out = σ(v_old·pos + b_old)·input + σ(v_new·pos + b_new)·output, σ = tanh or a hard step;
 *   - a layer norm restricted by coordinate weights, and elementwise activations.
 *
 * The parameters of these pieces never contain inner-model weights: those enter only through prefix rows.
 */
import type { GateMode, TintLayout } from './config.ts';
import { identity, zeros, type Mat } from './matrix.ts';

// ---------------------------------------------------------------------------------------------------------
// Context: everything about the current sequence that modules read (positions, masks)

export interface TintContext {
  readonly layout: TintLayout;
  readonly gateMode: GateMode;
  readonly gateScale: number;
  readonly lnEps: number;
  readonly restrictPrefixes: boolean;
  /** tokens T and rows n = P + T */
  readonly T: number;
  readonly n: number;
  /** one-hot position stream [n, posDim]: token t → e_t, prefix p → e_{seqLength+p} */
  readonly pos: Mat;
  readonly masks: ContextMasks;
}

export interface ContextMasks {
  /** linear attention, restrict_prefixes: token queries × prefix keys */
  readonly prefixKeys: Mat;
  /** linear attention without restriction: causal over all rows */
  readonly causal: Mat;
  /** descent attention (multiplicative): prefix queries see training tokens only */
  readonly descent: Mat;
  /** softmax attention (additive 0/−∞): causal, tokens never attend prefixes, optional icl mask */
  readonly softmax: Mat;
  /** attention backward (multiplicative, applied to Aᵀ): token i collects from j = i or j > i with trainMask[j] = 1 */
  readonly attentionBackward: Mat;
}

export interface ContextInput {
  readonly trainMask: readonly number[];
  readonly iclMask?: readonly (readonly number[])[];
}

export function makeContext(
  layout: TintLayout,
  input: ContextInput,
  opts: { gateMode: GateMode; gateScale: number; lnEps: number; restrictPrefixes: boolean },
): TintContext {
  const { P, seqLength, posDim } = layout;
  const T = input.trainMask.length;
  const n = P + T;
  const pos = zeros(n, posDim);
  for (let p = 0; p < P; p++) pos.data[p * posDim + seqLength + p] = 1;
  for (let t = 0; t < T; t++) pos.data[(P + t) * posDim + t] = 1;

  const bidir = (j: number): boolean => j >= P && input.trainMask[j - P] === 1;
  const build = (f: (i: number, j: number) => number): Mat => {
    const m = zeros(n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m.data[i * n + j] = f(i, j);
    return m;
  };
  const iclBlocked = (i: number, j: number): boolean =>
    input.iclMask !== undefined && i >= P && j >= P && j <= i && input.iclMask[i - P]![j - P] !== 1;
  const masks: ContextMasks = {
    prefixKeys: build((i, j) => (i >= P && j < P ? 1 : 0)),
    causal: build((i, j) => (j <= i ? 1 : 0)),
    // the reference's attention_mask: causal, prefixes see each other, training columns open to everyone;
    // the descent module then closes prefix–prefix attention
    descent: build((i, j) => (i < P && j < P ? 0 : j <= i || bidir(j) ? 1 : 0)),
    softmax: build((i, j) => (j > i || j < P || iclBlocked(i, j) ? -Infinity : 0)),
    attentionBackward: build((i, j) => (j < P ? 0 : j <= i || bidir(j) ? 1 : 0)),
  };
  return { layout, gateMode: opts.gateMode, gateScale: opts.gateScale, lnEps: opts.lnEps, restrictPrefixes: opts.restrictPrefixes, T, n, pos, masks };
}

// ---------------------------------------------------------------------------------------------------------
// Head maps

/**
 * A linear map of each row of X that respects a split of the H coordinates into blocks of `blockSize`:
 *   mix:      out block a = Σ_b m[a][b] · in block b  (one matrix for every coordinate inside the blocks)
 *   perBlock: out block a = maps[a] · in block a      (null: zero)
 */
export type HeadMap =
  | { readonly kind: 'mix'; readonly blockSize: number; readonly m: Mat }
  | { readonly kind: 'perBlock'; readonly blockSize: number; readonly maps: readonly (Mat | null)[] };

export function applyHeadMap(X: Mat, map: HeadMap): Mat {
  const H = X.cols;
  const b = map.blockSize;
  const blocks = H / b;
  const out = zeros(X.rows, H);
  if (map.kind === 'mix') {
    if (map.m.rows !== blocks || map.m.cols !== blocks) throw new RangeError(`head mix: ${map.m.rows}x${map.m.cols} for ${blocks} blocks`);
    for (let a = 0; a < blocks; a++) {
      for (let s = 0; s < blocks; s++) {
        const w = map.m.data[a * blocks + s]!;
        if (w === 0) continue;
        for (let r = 0; r < X.rows; r++) {
          const o = r * H;
          for (let c = 0; c < b; c++) out.data[o + a * b + c]! += w * X.data[o + s * b + c]!;
        }
      }
    }
  } else {
    if (map.maps.length !== blocks) throw new RangeError(`per-block map: ${map.maps.length} maps for ${blocks} blocks`);
    for (let a = 0; a < blocks; a++) {
      const M = map.maps[a];
      if (!M) continue;
      for (let r = 0; r < X.rows; r++) {
        const o = r * H + a * b;
        for (let i = 0; i < b; i++) {
          let s = 0;
          for (let j = 0; j < b; j++) {
            const w = M.data[i * b + j]!;
            if (w !== 0) s += w * X.data[o + j]!;
          }
          out.data[o + i] = s;
        }
      }
    }
  }
  return out;
}

/** A head-mixing map; `fill` calls link(out block, in block, weight) for each nonzero entry. */
export function mixMap(blockSize: number, blocks: number, fill: (link: (out: number, from: number, w: number) => void) => void): HeadMap {
  const m = zeros(blocks, blocks);
  fill((a, s, w) => {
    m.data[a * blocks + s]! += w;
  });
  return { kind: 'mix', blockSize, m };
}

/** A per-block map with the identity on the listed blocks and zero elsewhere. */
export function identityOnBlocks(blockSize: number, blocks: number, which: (block: number) => boolean): HeadMap {
  const I = identity(blockSize);
  return { kind: 'perBlock', blockSize, maps: Array.from({ length: blocks }, (_, a) => (which(a) ? I : null)) };
}

// ---------------------------------------------------------------------------------------------------------
// Attention

/** A position-dependent term added to q, k or v: heads[h] · (pos @ proj) in head h. */
export interface PositionTerm {
  /** [posDim, headDim] */
  readonly proj: Mat;
  /** multiplier per head (the reference's p_expand) */
  readonly heads: Float64Array;
}

export interface Projection {
  /** head maps applied in order to X ([] is the identity); 'none' drops X entirely */
  readonly hidden: readonly HeadMap[] | 'none';
  readonly position?: PositionTerm;
}

export interface AttentionLayer {
  readonly kind: 'linear' | 'softmax';
  readonly heads: number;
  readonly headDim: number;
  /** softmax only: multiplies the scores */
  readonly scale: number;
  readonly q: Projection;
  readonly k: Projection;
  readonly v: Projection;
  /** output projection (c_proj) */
  readonly out: readonly HeadMap[];
  /** use the transposed score matrix (the attention-backward module: Σ_j A_{j,i} v_j) */
  readonly transposeScores: boolean;
}

export interface AttentionMasks {
  /** added to the scores before softmax (0 or −∞) */
  readonly additive?: Mat;
  /** multiplies the attention weights (after softmax and transposition) */
  readonly multiplicative?: Mat;
}

function project(X: Mat, pos: Mat, p: Projection, heads: number, headDim: number): Mat {
  let Y: Mat;
  if (p.hidden === 'none') Y = zeros(X.rows, X.cols);
  else if (p.hidden.length === 0) Y = { rows: X.rows, cols: X.cols, data: X.data.slice() };
  else {
    Y = X;
    for (const m of p.hidden) Y = applyHeadMap(Y, m);
  }
  if (p.position) {
    const { proj, heads: mult } = p.position;
    const H = X.cols;
    for (let r = 0; r < X.rows; r++) {
      // pos rows are one-hot, but the term is written as the matrix product it is
      const term = new Float64Array(headDim);
      for (let u = 0; u < pos.cols; u++) {
        const pu = pos.data[r * pos.cols + u]!;
        if (pu === 0) continue;
        for (let c = 0; c < headDim; c++) term[c]! += pu * proj.data[u * headDim + c]!;
      }
      for (let h = 0; h < heads; h++) {
        const w = mult[h]!;
        if (w === 0) continue;
        for (let c = 0; c < headDim; c++) Y.data[r * H + h * headDim + c]! += w * term[c]!;
      }
    }
  }
  return Y;
}

export function attention(X: Mat, ctx: TintContext, layer: AttentionLayer, masks: AttentionMasks): Mat {
  const { heads, headDim } = layer;
  const n = X.rows;
  const H = X.cols;
  if (heads * headDim !== H) throw new RangeError(`attention: ${heads} heads of ${headDim} for width ${H}`);
  const q = project(X, ctx.pos, layer.q, heads, headDim);
  const k = project(X, ctx.pos, layer.k, heads, headDim);
  const v = project(X, ctx.pos, layer.v, heads, headDim);
  const out = zeros(n, H);
  const scores = new Float64Array(n * n);
  const weights = new Float64Array(n * n);
  for (let h = 0; h < heads; h++) {
    const o = h * headDim;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let c = 0; c < headDim; c++) s += q.data[i * H + o + c]! * k.data[j * H + o + c]!;
        scores[i * n + j] = s;
      }
    }
    if (layer.kind === 'linear') {
      weights.set(scores);
    } else {
      for (let i = 0; i < n; i++) {
        let mx = -Infinity;
        for (let j = 0; j < n; j++) {
          const z = layer.scale * scores[i * n + j]! + (masks.additive ? masks.additive.data[i * n + j]! : 0);
          scores[i * n + j] = z;
          mx = Math.max(mx, z);
        }
        // a fully masked row (prefix queries) attends nowhere; gates discard these rows
        let sum = 0;
        for (let j = 0; j < n; j++) {
          const e = mx === -Infinity ? 0 : Math.exp(scores[i * n + j]! - mx);
          weights[i * n + j] = e;
          sum += e;
        }
        if (sum > 0) for (let j = 0; j < n; j++) weights[i * n + j]! /= sum;
      }
    }
    if (layer.transposeScores) {
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const t = weights[i * n + j]!;
          weights[i * n + j] = weights[j * n + i]!;
          weights[j * n + i] = t;
        }
      }
    }
    if (masks.multiplicative) for (let i = 0; i < n * n; i++) weights[i]! *= masks.multiplicative.data[i]!;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const w = weights[i * n + j]!;
        if (w === 0) continue;
        for (let c = 0; c < headDim; c++) out.data[i * H + o + c]! += w * v.data[j * H + o + c]!;
      }
    }
  }
  let y = out;
  for (const m of layer.out) y = applyHeadMap(y, m);
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Gates

export interface GateLine {
  /** [posDim] */
  readonly v: Float64Array;
  readonly b: number;
}

export interface PositionGate {
  readonly old: GateLine;
  readonly new: GateLine;
}

/** The gate nonlinearity: tanh (reference) or a hard step at gateScale/2 (pre-activations are 0 or gateScale). */
export function gateValue(z: number, ctx: Pick<TintContext, 'gateMode' | 'gateScale'>): number {
  return ctx.gateMode === 'tanh' ? Math.tanh(z) : z > ctx.gateScale / 2 ? 1 : 0;
}

export function applyGate(input: Mat, output: Mat, ctx: TintContext, gate: PositionGate): Mat {
  const { pos } = ctx;
  const out = zeros(input.rows, input.cols);
  for (let r = 0; r < input.rows; r++) {
    let zo = gate.old.b;
    let zn = gate.new.b;
    for (let u = 0; u < pos.cols; u++) {
      const pu = pos.data[r * pos.cols + u]!;
      if (pu === 0) continue;
      zo += pu * gate.old.v[u]!;
      zn += pu * gate.new.v[u]!;
    }
    const go = gateValue(zo, ctx);
    const gn = gateValue(zn, ctx);
    const o = r * input.cols;
    for (let c = 0; c < input.cols; c++) out.data[o + c] = go * input.data[o + c]! + gn * output.data[o + c]!;
  }
  return out;
}

/** Prefix rows keep their input, token rows take the module output (forward and backward modules). */
export function prefixKeepGate(layout: TintLayout, gateScale: number): PositionGate {
  const vOld = new Float64Array(layout.posDim);
  const vNew = new Float64Array(layout.posDim);
  for (let p = 0; p < layout.P; p++) {
    vOld[layout.seqLength + p] = gateScale;
    vNew[layout.seqLength + p] = -gateScale;
  }
  return { old: { v: vOld, b: 0 }, new: { v: vNew, b: gateScale } };
}

/** Prefix rows add the module output to their input, token rows take the output (descent modules). */
export function prefixAddGate(layout: TintLayout, gateScale: number): PositionGate {
  const vOld = new Float64Array(layout.posDim);
  for (let p = 0; p < layout.P; p++) vOld[layout.seqLength + p] = gateScale;
  return { old: { v: vOld, b: 0 }, new: { v: new Float64Array(layout.posDim), b: gateScale } };
}

// ---------------------------------------------------------------------------------------------------------
// Layer norm and elementwise maps

/** Coordinate weights σ(gateScale) on [from, to), 0 elsewhere: which coordinates a layer norm acts on. */
export function coordinateWeights(ctx: TintContext, from: number, to: number): Float64Array {
  const w = new Float64Array(ctx.layout.H);
  const on = gateValue(ctx.gateScale, ctx);
  for (let c = from; c < to; c++) w[c] = on;
  return w;
}

/**
 * The reference's restricted layer norm, row by row: μ = Σ w x / Σ w, σ² = ε + Σ (w(x−μ))² / Σ w,
 * out = w (x−μ)/σ + (1−w) x. With 0/1 weights this is an exact layer norm on the weighted coordinates and
 * the identity elsewhere.
 */
export function gatedLayerNorm(X: Mat, w: Float64Array, eps: number): Mat {
  const out = zeros(X.rows, X.cols);
  let sw = 0;
  for (const x of w) sw += x;
  for (let r = 0; r < X.rows; r++) {
    const o = r * X.cols;
    let mu = 0;
    for (let c = 0; c < X.cols; c++) mu += X.data[o + c]! * w[c]!;
    mu /= sw;
    let v = 0;
    for (let c = 0; c < X.cols; c++) {
      const z = w[c]! * (X.data[o + c]! - mu);
      v += z * z;
    }
    const sd = Math.sqrt(eps + v / sw);
    for (let c = 0; c < X.cols; c++) {
      const x = X.data[o + c]!;
      out.data[o + c] = w[c]! * ((x - mu) / sd) + (1 - w[c]!) * x;
    }
  }
  return out;
}

/** w ⊙ a + (1 − w) ⊙ b, coordinate by coordinate. */
export function blend(a: Mat, b: Mat, w: Float64Array): Mat {
  const out = zeros(a.rows, a.cols);
  for (let r = 0; r < a.rows; r++) {
    const o = r * a.cols;
    for (let c = 0; c < a.cols; c++) out.data[o + c] = w[c]! * a.data[o + c]! + (1 - w[c]!) * b.data[o + c]!;
  }
  return out;
}

export function elementwise(X: Mat, f: (x: number) => number): Mat {
  const out = zeros(X.rows, X.cols);
  for (let i = 0; i < X.data.length; i++) out.data[i] = f(X.data[i]!);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Row bookkeeping (the reference does these in Python around its modules; see tint/README.md)

/** out[token rows, to .. to+len) += src[token rows, from .. from+len): a module's memory write. */
export function addTokenCopyInPlace(out: Mat, src: Mat, P: number, from: number, to: number, len: number): void {
  for (let r = P; r < out.rows; r++) {
    for (let c = 0; c < len; c++) out.data[r * out.cols + to + c]! += src.data[r * src.cols + from + c]!;
  }
}

/** X with its prefix rows replaced by `prefix` [P, H]. */
export function withPrefix(X: Mat, prefix: Mat): Mat {
  const out = { rows: X.rows, cols: X.cols, data: X.data.slice() };
  out.data.set(prefix.data, 0);
  return out;
}

/** Token rows, coordinates [from, H): what a forward module leaves for the backward pass. */
export function tokenMemory(X: Mat, P: number, from: number): Mat {
  const w = X.cols - from;
  const out = zeros(X.rows - P, w);
  for (let r = P; r < X.rows; r++) out.data.set(X.data.subarray(r * X.cols + from, (r + 1) * X.cols), (r - P) * w);
  return out;
}

/** X with token rows' coordinates [from, H) replaced by a stored memory. */
export function withTokenMemory(X: Mat, P: number, from: number, memory: Mat): Mat {
  const out = { rows: X.rows, cols: X.cols, data: X.data.slice() };
  for (let r = P; r < X.rows; r++) out.data.set(memory.data.subarray((r - P) * memory.cols, (r - P + 1) * memory.cols), r * X.cols + from);
  return out;
}

/** Prefix rows from `a`, token rows from `b` (how a descent+backward module combines its two branches). */
export function prefixRowsFrom(a: Mat, b: Mat, P: number): Mat {
  const out = { rows: b.rows, cols: b.cols, data: b.data.slice() };
  out.data.set(a.data.subarray(0, P * a.cols), 0);
  return out;
}
