/**
 * TinT modules for a simulated layer norm y = γ ⊙ LN(x) + β (LN un-affine, over the inner width d). The
 * prefix rows hold diag(γ) and β in the linear-operation layout (see linear.ts).
 *
 *   LayerNormForward   x̂ = LN(x) on coordinates [0, d), then LinearForward(diag γ, β); stores [x̂ | x].
 *   LayerNormBackward  ∂x̂ = γ ⊙ ∂y (LinearBackward), then the first-order finite difference
 *                      ∂x ≈ N·[LN(x + ∂x̂/N) − LN(x)], which approximates Jᵀ∂x̂ (J is symmetric) with O(1/N) error.
 *   LayerNormDescent   β ← β − η Σ_{t∈train} ∂y_t; γ is never updated (the reference's ln_update_bias_only).
 */
import type { TintLayout } from './config.ts';
import { buildLinearBackward, buildLinearDescent, buildLinearForward, linearBackward, linearDescent, linearForward, type LinearBackward, type LinearDescent, type LinearForward } from './linear.ts';
import type { Mat } from './matrix.ts';
import {
  addTokenCopyInPlace,
  applyGate,
  applyHeadMap,
  blend,
  coordinateWeights,
  gatedLayerNorm,
  mixMap,
  prefixKeepGate,
  prefixRowsFrom,
  type HeadMap,
  type PositionGate,
  type TintContext,
} from './pieces.ts';

export interface LayerNormForward {
  readonly linear: LinearForward;
  /** memory offset: token rows store [x̂ | x] there */
  readonly memory: number;
  readonly gate: PositionGate;
}

export function buildLayerNormForward(layout: TintLayout, gateScale: number, memory: number): LayerNormForward {
  return { linear: buildLinearForward(layout, gateScale, memory), memory, gate: prefixKeepGate(layout, gateScale) };
}

export function layerNormForward(m: LayerNormForward, X: Mat, ctx: TintContext): Mat {
  const { d, P } = ctx.layout;
  const normalized = gatedLayerNorm(X, coordinateWeights(ctx, 0, d), ctx.lnEps);
  const y = linearForward(m.linear, applyGate(X, normalized, ctx, m.gate), ctx);
  addTokenCopyInPlace(y, X, P, 0, m.memory + d, d);
  return y;
}

// ---------------------------------------------------------------------------------------------------------

export interface LayerNormBackward {
  readonly linear: LinearBackward;
  /** x + ∂x̂/N on the signal heads (x read from memory) */
  readonly perturb: HeadMap;
  /** N·(LN(x + ∂x̂/N) − x̂) on the signal heads (x̂ read from memory) */
  readonly difference: HeadMap;
  readonly gate: PositionGate;
}

export function buildLayerNormBackward(layout: TintLayout, gateScale: number, memory: number, fdScale: number): LayerNormBackward {
  const { d, headDim, heads } = layout;
  const parts = d / headDim;
  const memHead = memory / headDim;
  return {
    linear: buildLinearBackward(layout, gateScale, memory),
    perturb: mixMap(headDim, heads, (link) => {
      for (let j = 0; j < parts; j++) {
        link(j, j, 1 / fdScale);
        link(j, memHead + parts + j, 1);
      }
    }),
    difference: mixMap(headDim, heads, (link) => {
      for (let j = 0; j < parts; j++) {
        link(j, j, fdScale);
        link(j, memHead + j, -fdScale);
      }
    }),
    gate: prefixKeepGate(layout, gateScale),
  };
}

export function layerNormBackward(m: LayerNormBackward, X: Mat, ctx: TintContext): Mat {
  const w = coordinateWeights(ctx, 0, ctx.layout.d);
  const grad = linearBackward(m.linear, X, ctx);
  const shifted = blend(applyHeadMap(grad, m.perturb), grad, w);
  const normalized = gatedLayerNorm(shifted, w, ctx.lnEps);
  const difference = blend(applyHeadMap(normalized, m.difference), normalized, w);
  return applyGate(X, difference, ctx, m.gate);
}

// ---------------------------------------------------------------------------------------------------------

export interface LayerNormDescentBackward {
  readonly backward: LayerNormBackward;
  readonly descent: LinearDescent;
}

export function buildLayerNormDescentBackward(layout: TintLayout, gateScale: number, memory: number, fdScale: number, lr: number): LayerNormDescentBackward {
  return {
    backward: buildLayerNormBackward(layout, gateScale, memory, fdScale),
    descent: buildLinearDescent(layout, gateScale, memory, lr, true),
  };
}

export function layerNormDescentBackward(m: LayerNormDescentBackward, X: Mat, ctx: TintContext): Mat {
  return prefixRowsFrom(linearDescent(m.descent, X, ctx), layerNormBackward(m.backward, X, ctx), ctx.layout.P);
}
