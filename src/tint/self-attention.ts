/**
 * TinT modules for the inner model's causal softmax self-attention.
 *
 *   AttentionForward   Q, K, V from one LinearForward applied three times (Q, K, V prefixes), giving token
 *                      rows [Qx | Kx | Vx | …]; then softmax attention with n_T TinT heads, TinT head i
 *                      handling inner head i. Stores [Qx | Kx | x] at the attention memory.
 *   AttentionBackward  stop-gradient through the scores: recomputes A from the stored Qx, Kx and returns
 *                      ∂v_i = Σ_j A_{j,i} ∂o_j over j = i or (j > i and j is a training token).
 *   AttentionBackwardDescent  the above, then Linear descent+backward for V (input x from memory).
 */
import type { TintLayout } from './config.ts';
import { buildLinearDescentBackward, buildLinearForward, linearDescentBackward, linearForward, type LinearDescentBackward, type LinearForward } from './linear.ts';
import { zeros, type Mat } from './matrix.ts';
import {
  addTokenCopyInPlace,
  applyGate,
  attention,
  mixMap,
  prefixKeepGate,
  withPrefix,
  type AttentionLayer,
  type HeadMap,
  type PositionGate,
  type TintContext,
} from './pieces.ts';

/**
 * The softmax layer shared by forward and backward: TinT head i·hpp + j (hpp inner heads per hd-sized
 * partition of the inner width) reads partition i of the region starting at head `from`, and keeps only
 * inner head i·hpp + j's slice of it.
 */
function innerHeadProjection(layout: TintLayout, from: number, moveToFront: boolean): HeadMap[] {
  const { d, headDim: hd, heads, innerHeads, innerHeadDim: bhd } = layout;
  const parts = d / hd;
  const perPart = innerHeads / parts;
  const select = mixMap(hd, heads, (link) => {
    for (let i = 0; i < parts; i++) for (let j = 0; j < perPart; j++) link(i * perPart + j, from + i, 1);
  });
  const maps: (Mat | null)[] = [];
  for (let h = 0; h < heads; h++) {
    if (h >= innerHeads) {
      maps.push(null);
      continue;
    }
    const slot = h % perPart;
    const M = zeros(hd, hd);
    for (let a = 0; a < bhd; a++) M.data[(moveToFront ? a : slot * bhd + a) * hd + slot * bhd + a] = 1;
    maps.push(M);
  }
  return [select, { kind: 'perBlock', blockSize: hd, maps }];
}

function innerHeadMerge(layout: TintLayout): HeadMap {
  const { d, headDim: hd, heads, innerHeads } = layout;
  const parts = d / hd;
  const perPart = innerHeads / parts;
  return mixMap(hd, heads, (link) => {
    for (let i = 0; i < parts; i++) for (let j = 0; j < perPart; j++) link(i, i * perPart + j, 1);
  });
}

function softmaxLayer(layout: TintLayout, qFrom: number, kFrom: number, vFrom: number, transposeScores: boolean): AttentionLayer {
  const { d, H, heads, headDim, innerHeads } = layout;
  // the reference's initial_scale / √(H/n_T); equals 1/√(inner head size)
  const initialScale = Math.sqrt((H / d) * (innerHeads / heads));
  return {
    kind: 'softmax',
    heads,
    headDim,
    scale: initialScale / Math.sqrt(headDim),
    q: { hidden: innerHeadProjection(layout, qFrom, true) },
    k: { hidden: innerHeadProjection(layout, kFrom, true) },
    v: { hidden: innerHeadProjection(layout, vFrom, false) },
    out: [innerHeadMerge(layout)],
    transposeScores,
  };
}

/** Adds X's coordinates [0, H − shift) at [shift, H) of `out` for token rows (stacking [Qx | Kx | Vx]). */
function shiftedCopyInPlace(out: Mat, X: Mat, P: number, shift: number): void {
  addTokenCopyInPlace(out, X, P, 0, shift, X.cols - shift);
}

// ---------------------------------------------------------------------------------------------------------

export interface AttentionForward {
  /** one set of weights for Q, K and V */
  readonly linear: LinearForward;
  readonly attn: AttentionLayer;
  readonly memory: number;
  readonly gate: PositionGate;
}

export function buildAttentionForward(layout: TintLayout, gateScale: number, memory: number): AttentionForward {
  const parts = layout.d / layout.headDim;
  return {
    linear: buildLinearForward(layout, gateScale, null),
    attn: softmaxLayer(layout, 0, parts, 2 * parts, false),
    memory,
    gate: prefixKeepGate(layout, gateScale),
  };
}

/** X carries the Q prefix; `kPrefix`, `vPrefix` are the K and V weights (the reference passes them alongside). */
export function attentionForward(m: AttentionForward, X: Mat, kPrefix: Mat, vPrefix: Mat, ctx: TintContext): Mat {
  const { d, P } = ctx.layout;
  const qkv = linearForward(m.linear, X, ctx);
  shiftedCopyInPlace(qkv, linearForward(m.linear, withPrefix(X, kPrefix), ctx), P, d);
  shiftedCopyInPlace(qkv, linearForward(m.linear, withPrefix(X, vPrefix), ctx), P, 2 * d);
  const y = attention(qkv, ctx, m.attn, { additive: ctx.masks.softmax });
  addTokenCopyInPlace(y, qkv, P, 0, m.memory, 2 * d);
  addTokenCopyInPlace(y, X, P, 0, m.memory + 2 * d, d);
  return applyGate(qkv, y, ctx, m.gate);
}

// ---------------------------------------------------------------------------------------------------------

export interface AttentionBackward {
  readonly attn: AttentionLayer;
  readonly memory: number;
  readonly gate: PositionGate;
}

export function buildAttentionBackward(layout: TintLayout, gateScale: number, memory: number): AttentionBackward {
  const parts = layout.d / layout.headDim;
  const memHead = memory / layout.headDim;
  return { attn: softmaxLayer(layout, memHead, memHead + parts, 0, true), memory, gate: prefixKeepGate(layout, gateScale) };
}

export function attentionBackward(m: AttentionBackward, X: Mat, ctx: TintContext): Mat {
  const { d, P } = ctx.layout;
  const y = attention(X, ctx, m.attn, { additive: ctx.masks.softmax, multiplicative: ctx.masks.attentionBackward });
  addTokenCopyInPlace(y, X, P, m.memory, m.memory, 3 * d);
  return applyGate(X, y, ctx, m.gate);
}

// ---------------------------------------------------------------------------------------------------------

export interface AttentionBackwardDescent {
  readonly attention: AttentionBackward;
  readonly value: LinearDescentBackward;
  readonly throughAttention: boolean;
}

export function buildAttentionBackwardDescent(layout: TintLayout, gateScale: number, memory: number, lr: number, throughAttention: boolean): AttentionBackwardDescent {
  return {
    attention: buildAttentionBackward(layout, gateScale, memory),
    value: buildLinearDescentBackward(layout, gateScale, memory + 2 * layout.d, lr),
    throughAttention,
  };
}

export function attentionBackwardDescent(m: AttentionBackwardDescent, X: Mat, ctx: TintContext): Mat {
  const dv = m.throughAttention ? attentionBackward(m.attention, X, ctx) : X;
  return linearDescentBackward(m.value, dv, ctx);
}
