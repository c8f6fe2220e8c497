/**
 * TinT modules for the inner model's elementwise activation (between fc1 and fc2, one d-wide chunk at a time).
 *
 *   ActivationForward   an MLP with identity weights: act(x) on the whole row; stores the pre-activation z.
 *   ActivationBackward  ∂z ≈ N·[act(z + ∂a/N) − act(z)] (exact for ReLU unless the sign changes inside the
 *                       step; O(1/N) for GELU). No gate: its prefix rows fill with values nothing reads.
 */
import type { ActivationFn } from './activations.ts';
import type { TintLayout } from './config.ts';
import type { Mat } from './matrix.ts';
import { addTokenCopyInPlace, applyGate, applyHeadMap, elementwise, identityOnBlocks, mixMap, prefixKeepGate, type HeadMap, type PositionGate, type TintContext } from './pieces.ts';

export interface ActivationForward {
  readonly act: ActivationFn;
  /** keeps act(·) below the memory area, clears the memory area */
  readonly keep: HeadMap;
  readonly memory: number;
  readonly gate: PositionGate;
}

export function buildActivationForward(layout: TintLayout, gateScale: number, act: ActivationFn, memory: number): ActivationForward {
  const { headDim, heads } = layout;
  return { act, keep: identityOnBlocks(headDim, heads, (h) => h < memory / headDim), memory, gate: prefixKeepGate(layout, gateScale) };
}

export function activationForward(m: ActivationForward, X: Mat, ctx: TintContext): Mat {
  const y = applyHeadMap(elementwise(X, m.act.f), m.keep);
  addTokenCopyInPlace(y, X, ctx.layout.P, 0, m.memory, ctx.layout.d);
  return applyGate(X, y, ctx, m.gate);
}

// ---------------------------------------------------------------------------------------------------------

export interface ActivationBackward {
  readonly act: ActivationFn;
  /** signal heads → z + ∂a/N, memory heads → z */
  readonly perturb: HeadMap;
  /** N·(act(z + ∂a/N) − act(z)) */
  readonly difference: HeadMap;
}

export function buildActivationBackward(layout: TintLayout, act: ActivationFn, memory: number, fdScale: number): ActivationBackward {
  const { d, headDim, heads } = layout;
  const parts = d / headDim;
  const memHead = memory / headDim;
  return {
    act,
    perturb: mixMap(headDim, heads, (link) => {
      for (let j = 0; j < parts; j++) {
        link(j, j, 1 / fdScale);
        link(j, memHead + j, 1);
        link(memHead + j, memHead + j, 1);
      }
    }),
    difference: mixMap(headDim, heads, (link) => {
      for (let j = 0; j < parts; j++) {
        link(j, j, fdScale);
        link(j, memHead + j, -fdScale);
      }
    }),
  };
}

export function activationBackward(m: ActivationBackward, X: Mat): Mat {
  return applyHeadMap(elementwise(applyHeadMap(X, m.perturb), m.act.f), m.difference);
}
