/**
 * TinT blocks: the modules for one inner layer, run in order, with the residual connections of the inner
 * model applied to the whole TinT matrix.
 *
 *   ForwardBlock:  LN1 → Attention → out_proj → +residual → LN2 → Σ_c fc2_c(act(fc1_c(·))) → +residual
 *   BackwardBlock: for each FFN chunk (last first): fc2_c → act_c → fc1_c; Σ; LN2; +residual;
 *                  out_proj → attention(V) → LN1; +residual — each backward module also runs its descent.
 *   GradientModule: the final layer norm, forward and backward+descent.
 *
 * Before every module the block swaps that module's prefix block into rows [0, P) and, in the backward
 * pass, the token memory its forward twin left behind. The reference does this bookkeeping in Python
 * (stacks `memory_prefixes`, `memory_activations`); it is the same here, in the arrays these functions
 * return and take.
 */
import type { ActivationFn } from './activations.ts';
import type { TintLayout, TintSettings } from './config.ts';
import { buildLayerNormDescentBackward, buildLayerNormForward, layerNormDescentBackward, layerNormForward, type LayerNormDescentBackward, type LayerNormForward } from './layernorm.ts';
import { buildLinearDescentBackward, buildLinearForward, linearDescentBackward, linearForward, type LinearDescentBackward, type LinearForward } from './linear.ts';
import { add, sliceRows, type Mat } from './matrix.ts';
import { activationBackward, activationForward, buildActivationBackward, buildActivationForward, type ActivationBackward, type ActivationForward } from './mlp-activation.ts';
import { SLOT } from './prefixes.ts';
import { tokenMemory, withPrefix, withTokenMemory, type TintContext } from './pieces.ts';
import { attentionBackwardDescent, attentionForward, buildAttentionBackwardDescent, buildAttentionForward, type AttentionBackwardDescent, type AttentionForward } from './self-attention.ts';

/** Index of each module's token memory in a forward block's record. */
export const MEMORY = { ln1: 0, attention: 1, o: 2, ln2: 3, fc1: (c: number) => 4 + 3 * c, act: (c: number) => 5 + 3 * c, fc2: (c: number) => 6 + 3 * c } as const;

export interface ForwardBlock {
  readonly ln1: LayerNormForward;
  readonly attention: AttentionForward;
  readonly outProj: LinearForward;
  readonly ln2: LayerNormForward;
  /** one set of modules for every FFN chunk */
  readonly fc1: LinearForward;
  readonly act: ActivationForward;
  readonly fc2: LinearForward;
}

export function buildForwardBlock(layout: TintLayout, s: TintSettings, act: ActivationFn): ForwardBlock {
  const g = s.gateScale;
  return {
    ln1: buildLayerNormForward(layout, g, layout.lnMem),
    attention: buildAttentionForward(layout, g, layout.attnMem),
    outProj: buildLinearForward(layout, g, layout.linMem),
    ln2: buildLayerNormForward(layout, g, layout.lnMem),
    fc1: buildLinearForward(layout, g, layout.linMem),
    act: buildActivationForward(layout, g, act, layout.actMem),
    fc2: buildLinearForward(layout, g, layout.linMem),
  };
}

export interface ForwardOutput {
  readonly out: Mat;
  /** token rows' memory after each module (coordinates from that module's memory offset to H) */
  readonly memories: Mat[];
}

export function forwardBlock(block: ForwardBlock, X: Mat, prefixes: readonly Mat[], ctx: TintContext): ForwardOutput {
  const { P, lnMem, attnMem, linMem, actMem, chunks } = ctx.layout;
  const memories: Mat[] = [];
  const keep = (h: Mat, from: number): Mat => {
    memories.push(tokenMemory(h, P, from));
    return h;
  };
  let h = keep(layerNormForward(block.ln1, withPrefix(X, prefixes[SLOT.ln1]!), ctx), lnMem);
  h = keep(attentionForward(block.attention, withPrefix(h, prefixes[SLOT.q]!), prefixes[SLOT.k]!, prefixes[SLOT.v]!, ctx), attnMem);
  h = keep(linearForward(block.outProj, withPrefix(h, prefixes[SLOT.o]!), ctx), linMem);
  const mid = add(h, X);
  const normed = keep(layerNormForward(block.ln2, withPrefix(mid, prefixes[SLOT.ln2]!), ctx), lnMem);
  let ffn: Mat | null = null;
  for (let c = 0; c < chunks; c++) {
    let y = keep(linearForward(block.fc1, withPrefix(normed, prefixes[SLOT.fc1(c)]!), ctx), linMem);
    y = keep(activationForward(block.act, withPrefix(y, prefixes[SLOT.act(c)]!), ctx), actMem);
    y = keep(linearForward(block.fc2, withPrefix(y, prefixes[SLOT.fc2(c)]!), ctx), linMem);
    ffn = ffn ? add(ffn, y) : y;
  }
  return { out: add(ffn!, mid), memories };
}

// ---------------------------------------------------------------------------------------------------------

export interface BackwardBlock {
  readonly fc2: LinearDescentBackward;
  readonly act: ActivationBackward;
  readonly fc1: LinearDescentBackward;
  readonly ln2: LayerNormDescentBackward;
  readonly outProj: LinearDescentBackward;
  readonly attention: AttentionBackwardDescent;
  readonly ln1: LayerNormDescentBackward;
}

export function buildBackwardBlock(layout: TintLayout, s: TintSettings, act: ActivationFn): BackwardBlock {
  const g = s.gateScale;
  return {
    fc2: buildLinearDescentBackward(layout, g, layout.linMem, s.lr),
    act: buildActivationBackward(layout, act, layout.actMem, s.fdScale),
    fc1: buildLinearDescentBackward(layout, g, layout.linMem, s.lr),
    ln2: buildLayerNormDescentBackward(layout, g, layout.lnMem, s.fdScale, s.lr),
    outProj: buildLinearDescentBackward(layout, g, layout.linMem, s.lr),
    attention: buildAttentionBackwardDescent(layout, g, layout.attnMem, s.lr, s.backpropThroughAttention),
    ln1: buildLayerNormDescentBackward(layout, g, layout.lnMem, s.fdScale, s.lr),
  };
}

export interface BackwardOutput {
  /** ∂ at the block input (token rows [0, d)) */
  readonly out: Mat;
  /** the layer's prefix blocks after the descent (Q and K unchanged) */
  readonly prefixes: Mat[];
}

/** `grad`: token rows hold ∂L/∂(block output) in [0, d); `prefixes`, `memories`: from the forward pass. */
export function backwardBlock(block: BackwardBlock, grad: Mat, prefixes: readonly Mat[], memories: readonly Mat[], ctx: TintContext): BackwardOutput {
  const { P, lnMem, attnMem, linMem, actMem, chunks } = ctx.layout;
  const updated = prefixes.slice();
  const prepare = (X: Mat, slot: number, memory: number, from: number): Mat => withTokenMemory(withPrefix(X, prefixes[slot]!), P, from, memories[memory]!);
  const update = (Y: Mat, slot: number): Mat => {
    updated[slot] = sliceRows(Y, 0, P);
    return Y;
  };

  let ffn: Mat | null = null;
  for (let c = chunks - 1; c >= 0; c--) {
    let x = update(linearDescentBackward(block.fc2, prepare(grad, SLOT.fc2(c), MEMORY.fc2(c), linMem), ctx), SLOT.fc2(c));
    // its prefix rows are garbage (no gate), stored like the reference does; nothing reads them
    x = update(activationBackward(block.act, prepare(x, SLOT.act(c), MEMORY.act(c), actMem)), SLOT.act(c));
    x = update(linearDescentBackward(block.fc1, prepare(x, SLOT.fc1(c), MEMORY.fc1(c), linMem), ctx), SLOT.fc1(c));
    ffn = ffn ? add(ffn, x) : x;
  }
  let x = update(layerNormDescentBackward(block.ln2, prepare(ffn!, SLOT.ln2, MEMORY.ln2, lnMem), ctx), SLOT.ln2);
  const mid = add(x, grad);
  x = update(linearDescentBackward(block.outProj, prepare(mid, SLOT.o, MEMORY.o, linMem), ctx), SLOT.o);
  x = update(attentionBackwardDescent(block.attention, prepare(x, SLOT.v, MEMORY.attention, attnMem), ctx), SLOT.v);
  x = update(layerNormDescentBackward(block.ln1, prepare(x, SLOT.ln1, MEMORY.ln1, lnMem), ctx), SLOT.ln1);
  return { out: add(x, mid), prefixes: updated };
}

// ---------------------------------------------------------------------------------------------------------

export interface GradientModule {
  readonly forward: LayerNormForward;
  readonly backward: LayerNormDescentBackward;
}

export function buildGradientModule(layout: TintLayout, s: TintSettings): GradientModule {
  return {
    forward: buildLayerNormForward(layout, s.gateScale, layout.lnMem),
    backward: buildLayerNormDescentBackward(layout, s.gateScale, layout.lnMem, s.fdScale, s.lr),
  };
}

export function finalLayerNormForward(m: GradientModule, X: Mat, prefix: Mat, ctx: TintContext): { out: Mat; memory: Mat } {
  const out = layerNormForward(m.forward, withPrefix(X, prefix), ctx);
  return { out, memory: tokenMemory(out, ctx.layout.P, ctx.layout.lnMem) };
}

export function finalLayerNormBackward(m: GradientModule, grad: Mat, prefix: Mat, memory: Mat, ctx: TintContext): { out: Mat; prefix: Mat } {
  const { P, lnMem } = ctx.layout;
  const out = layerNormDescentBackward(m.backward, withTokenMemory(withPrefix(grad, prefix), P, lnMem, memory), ctx);
  return { out, prefix: sliceRows(out, 0, P) };
}
