/**
 * TinT modules for one simulated linear operation y = W x + b (W is d×d), whose weights sit in the prefix
 * rows: prefix p = [W[pS] | W[pS+1] | … | W[pS+S−1] | b] (b replicated; only prefix 0's copy is used).
 *
 * All three are linear-attention layers with H/P heads of size P. Head index h = r·S + s (r: which of the S
 * rows a prefix holds, s: which P-sized shard of a d-vector) for h < S², plus S "bias heads" S² + i.
 *
 *   LinearForward   token t: y_t = W x_t + b                              (exact)
 *   LinearBackward  token t: ∂x_t = Wᵀ ∂y_t                               (exact)
 *   LinearDescent   prefixes: W ← W − η Σ_{t∈train} ∂y_t x_tᵀ, b ← b − η Σ_{t∈train} ∂y_t   (exact)
 */
import type { TintLayout } from './config.ts';
import { identity, zeros, type Mat } from './matrix.ts';
import {
  addTokenCopyInPlace,
  applyGate,
  applyHeadMap,
  attention,
  identityOnBlocks,
  mixMap,
  prefixAddGate,
  prefixKeepGate,
  prefixRowsFrom,
  type AttentionLayer,
  type HeadMap,
  type PositionGate,
  type PositionTerm,
  type TintContext,
} from './pieces.ts';

/** Position term mapping prefix p's one-hot to e_p (in the heads where `on` is true). */
function prefixOneHots(layout: TintLayout, on: (h: number) => boolean): PositionTerm {
  const { P, seqLength, posDim, linearHeads } = layout;
  const proj = zeros(posDim, P);
  for (let p = 0; p < P; p++) proj.data[(seqLength + p) * P + p] = 1;
  return { proj, heads: Float64Array.from({ length: linearHeads }, (_, h) => (on(h) ? 1 : 0)) };
}

/** Position term mapping every token one-hot to e_0 (in the heads where `on` is true). */
function tokenIndicator(layout: TintLayout, on: (h: number) => boolean): PositionTerm {
  const { P, seqLength, posDim, linearHeads } = layout;
  const proj = zeros(posDim, P);
  for (let t = 0; t < seqLength; t++) proj.data[t * P] = 1;
  return { proj, heads: Float64Array.from({ length: linearHeads }, (_, h) => (on(h) ? 1 : 0)) };
}

/**
 * Reorders a d-vector held in coordinates [0, d) so that head h = r·S + s, coordinate p, holds v[pS + r]
 * (for every shard s): first copy block 0 (size d) into every d-block, then one d×d map per block.
 */
function reorderedSignal(layout: TintLayout): HeadMap[] {
  const { d, S, P, H } = layout;
  const blocks = H / d;
  const spread = mixMap(d, blocks, (link) => {
    for (let a = 0; a < blocks; a++) link(a, 0, 1);
  });
  const maps: Mat[] = [];
  for (let a = 0; a < blocks; a++) {
    const M = zeros(d, d);
    for (let l = 0; l < d; l++) {
      const g = a * d + l;
      const h = Math.floor(g / P);
      const p = g % P;
      if (h < S * S) M.data[l * d + p * S + Math.floor(h / S)] = 1;
    }
    maps.push(M);
  }
  return [spread, { kind: 'perBlock', blockSize: d, maps }];
}

// ---------------------------------------------------------------------------------------------------------

export interface LinearForward {
  readonly attn: AttentionLayer;
  /** y arrives as y[rP + p] = ⟨x, W[pS+r]⟩; this puts it back in order (d-blocks) */
  readonly permute: HeadMap;
  /** adds the bias block [d, 2d) onto [0, d) */
  readonly addBias: HeadMap;
  /** where token rows store the input x for the backward pass (null: not stored) */
  readonly memory: number | null;
  readonly gate: PositionGate;
}

export function buildLinearForward(layout: TintLayout, gateScale: number, memory: number | null): LinearForward {
  const { d, S, P, H, linearHeads: nL } = layout;
  const S2 = S * S;
  const isBias = (h: number): boolean => h >= S2 && h < S2 + S;
  const attn: AttentionLayer = {
    kind: 'linear',
    heads: nL,
    headDim: P,
    scale: 1,
    // head (r, s) queries shard s of x; bias heads query with the token indicator e_0
    q: {
      hidden: [
        mixMap(P, nL, (link) => {
          for (let r = 0; r < S; r++) for (let s = 0; s < S; s++) link(r * S + s, s, 1);
        }),
      ],
      position: tokenIndicator(layout, isBias),
    },
    // keys: the prefix's own coordinates (rows of W, by shard); bias heads key on the prefix one-hot
    k: { hidden: [identityOnBlocks(P, nL, (h) => h < S2)], position: prefixOneHots(layout, isBias) },
    // values: the prefix one-hot e_p (so output coordinate p holds ⟨x, W[pS+r]⟩); bias heads carry b
    v: { hidden: [identityOnBlocks(P, nL, isBias)], position: prefixOneHots(layout, (h) => h < S2) },
    // sum the S shards of each row r; move the bias shards next to them
    out: [
      mixMap(P, nL, (link) => {
        for (let r = 0; r < S; r++) for (let s = 0; s < S; s++) link(r, r * S + s, 1);
        for (let i = 0; i < S; i++) link(S + i, S2 + i, 1);
      }),
    ],
    transposeScores: false,
  };
  const perm = zeros(d, d);
  for (let p = 0; p < P; p++) for (let r = 0; r < S; r++) perm.data[(p * S + r) * d + r * P + p] = 1;
  const blocks = H / d;
  return {
    attn,
    permute: { kind: 'perBlock', blockSize: d, maps: Array.from({ length: blocks }, (_, a) => (a === 0 ? perm : a === 1 ? identity(d) : null)) },
    addBias: mixMap(d, blocks, (link) => {
      link(0, 0, 1);
      link(0, 1, 1);
    }),
    memory,
    gate: prefixKeepGate(layout, gateScale),
  };
}

export function linearForward(m: LinearForward, X: Mat, ctx: TintContext): Mat {
  const mask = ctx.restrictPrefixes ? ctx.masks.prefixKeys : ctx.masks.causal;
  let y = attention(X, ctx, m.attn, { multiplicative: mask });
  y = applyHeadMap(applyHeadMap(y, m.permute), m.addBias);
  if (m.memory !== null) addTokenCopyInPlace(y, X, ctx.layout.P, 0, m.memory, ctx.layout.d);
  return applyGate(X, y, ctx, m.gate);
}

// ---------------------------------------------------------------------------------------------------------

export interface LinearBackward {
  readonly attn: AttentionLayer;
  /** token rows keep coordinates [memory, H) (the stored activations) */
  readonly memory: number | null;
  readonly gate: PositionGate;
}

export function buildLinearBackward(layout: TintLayout, gateScale: number, memory: number | null): LinearBackward {
  const { S, P, linearHeads: nL } = layout;
  const attn: AttentionLayer = {
    kind: 'linear',
    heads: nL,
    headDim: P,
    scale: 1,
    // head (r, j), coordinate p: ∂y[pS + r]
    q: { hidden: reorderedSignal(layout) },
    // prefix p keys on e_p in every head
    k: { hidden: 'none', position: prefixOneHots(layout, () => true) },
    // values: the prefix rows themselves, i.e. head (r, j) of prefix p is shard j of W[pS + r]
    v: { hidden: [] },
    // Σ_r over heads (r, j) gives shard j of Σ_p,r ∂y[pS+r] W[pS+r] = Wᵀ∂y
    out: [
      mixMap(P, nL, (link) => {
        for (let r = 0; r < S; r++) for (let j = 0; j < S; j++) link(j, r * S + j, 1);
      }),
    ],
    transposeScores: false,
  };
  return { attn, memory, gate: prefixKeepGate(layout, gateScale) };
}

export function linearBackward(m: LinearBackward, X: Mat, ctx: TintContext): Mat {
  const mask = ctx.restrictPrefixes ? ctx.masks.prefixKeys : ctx.masks.causal;
  const y = attention(X, ctx, m.attn, { multiplicative: mask });
  if (m.memory !== null) addTokenCopyInPlace(y, X, ctx.layout.P, m.memory, m.memory, ctx.layout.H - m.memory);
  return applyGate(X, y, ctx, m.gate);
}

// ---------------------------------------------------------------------------------------------------------

export interface LinearDescent {
  readonly attn: AttentionLayer;
  readonly gate: PositionGate;
}

/**
 * `memory`: where token rows hold the forward input x; `lr`: η; `biasOnly`: update b only (the layer-norm
 * descent, which never touches γ).
 */
export function buildLinearDescent(layout: TintLayout, gateScale: number, memory: number, lr: number, biasOnly: boolean): LinearDescent {
  const { S, P, linearHeads: nL } = layout;
  const S2 = S * S;
  const memHead = memory / P;
  const attn: AttentionLayer = {
    kind: 'linear',
    heads: nL,
    headDim: P,
    scale: 1,
    // prefix p queries with e_p
    q: { hidden: 'none', position: prefixOneHots(layout, (h) => h < S2 + S) },
    // token keys: head (r, j), coordinate p holds ∂y[pS + r]; bias heads key on e_0
    k: { hidden: reorderedSignal(layout), position: tokenIndicator(layout, (h) => h >= S2 && h < S2 + S) },
    // token values: −η x (shard j in head (r, j)); bias heads: −η ∂y
    v: {
      hidden: [
        mixMap(P, nL, (link) => {
          if (!biasOnly) for (let r = 0; r < S; r++) for (let j = 0; j < S; j++) link(r * S + j, memHead + j, -lr);
          for (let i = 0; i < S; i++) link(S2 + i, i, -lr);
        }),
      ],
    },
    out: [],
    transposeScores: false,
  };
  return { attn, gate: prefixAddGate(layout, gateScale) };
}

export function linearDescent(m: LinearDescent, X: Mat, ctx: TintContext): Mat {
  const y = attention(X, ctx, m.attn, { multiplicative: ctx.masks.descent });
  return applyGate(X, y, ctx, m.gate);
}

// ---------------------------------------------------------------------------------------------------------

/** Backward and descent run side by side on the same input (pre-update weights in both). */
export interface LinearDescentBackward {
  readonly backward: LinearBackward;
  readonly descent: LinearDescent;
}

export function buildLinearDescentBackward(layout: TintLayout, gateScale: number, memory: number, lr: number): LinearDescentBackward {
  return { backward: buildLinearBackward(layout, gateScale, memory), descent: buildLinearDescent(layout, gateScale, memory, lr, false) };
}

export function linearDescentBackward(m: LinearDescentBackward, X: Mat, ctx: TintContext): Mat {
  return prefixRowsFrom(linearDescent(m.descent, X, ctx), linearBackward(m.backward, X, ctx), ctx.layout.P);
}
