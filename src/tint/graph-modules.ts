/**
 * The TinT modules and blocks as engine graph builders. Each function takes a module built by the float64
 * code (`build*` in linear.ts, layernorm.ts, mlp-activation.ts, self-attention.ts, blocks.ts: the TinT
 * parameters, fixed at construction) and applies it to a graph value, line for line as its float64 twin.
 * Prefix blocks and token memories are graph values here, so the whole simulated forward → backward →
 * descent → re-evaluation is one graph.
 */
import type { Value } from '../engine/index.ts';
import { MEMORY, type BackwardBlock, type ForwardBlock, type GradientModule } from './blocks.ts';
import type { LayerNormBackward, LayerNormDescentBackward, LayerNormForward } from './layernorm.ts';
import type { LinearBackward, LinearDescent, LinearDescentBackward, LinearForward } from './linear.ts';
import type { ActivationBackward, ActivationForward } from './mlp-activation.ts';
import { SLOT } from './prefixes.ts';
import type { AttentionBackward, AttentionBackwardDescent, AttentionForward } from './self-attention.ts';
import {
  activation,
  addTokenCopy,
  applyGate,
  attention,
  blend,
  coordinateWeights,
  gatedLayerNorm,
  headMap,
  prefixRows,
  prefixRowsFrom,
  tokenMemory,
  withPrefix,
  withTokenMemory,
  type EngineContext,
} from './graph-pieces.ts';

// ---------------------------------------------------------------------------------------------------------
// Linear (linear.ts)

const linearMask = (ctx: EngineContext): Value => (ctx.restrictPrefixes ? ctx.masks.prefixKeys : ctx.masks.causal);

export function linearForward(ctx: EngineContext, m: LinearForward, X: Value): Value {
  let y = attention(ctx, X, m.attn, { multiplicative: linearMask(ctx) });
  y = headMap(ctx, headMap(ctx, y, m.permute), m.addBias);
  if (m.memory !== null) y = addTokenCopy(ctx, y, X, 0, m.memory, ctx.layout.d);
  return applyGate(ctx, X, y, m.gate);
}

export function linearBackward(ctx: EngineContext, m: LinearBackward, X: Value): Value {
  let y = attention(ctx, X, m.attn, { multiplicative: linearMask(ctx) });
  if (m.memory !== null) y = addTokenCopy(ctx, y, X, m.memory, m.memory, ctx.layout.H - m.memory);
  return applyGate(ctx, X, y, m.gate);
}

export function linearDescent(ctx: EngineContext, m: LinearDescent, X: Value): Value {
  return applyGate(ctx, X, attention(ctx, X, m.attn, { multiplicative: ctx.masks.descent }), m.gate);
}

export function linearDescentBackward(ctx: EngineContext, m: LinearDescentBackward, X: Value): Value {
  return prefixRowsFrom(ctx, linearDescent(ctx, m.descent, X), linearBackward(ctx, m.backward, X));
}

// ---------------------------------------------------------------------------------------------------------
// Layer norm (layernorm.ts)

export function layerNormForward(ctx: EngineContext, m: LayerNormForward, X: Value): Value {
  const d = ctx.layout.d;
  const normalized = gatedLayerNorm(ctx, X, coordinateWeights(ctx, 0, d), ctx.lnEps);
  const y = linearForward(ctx, m.linear, applyGate(ctx, X, normalized, m.gate));
  return addTokenCopy(ctx, y, X, 0, m.memory + d, d);
}

export function layerNormBackward(ctx: EngineContext, m: LayerNormBackward, X: Value): Value {
  const w = coordinateWeights(ctx, 0, ctx.layout.d);
  const grad = linearBackward(ctx, m.linear, X);
  const shifted = blend(ctx, headMap(ctx, grad, m.perturb), grad, w);
  const normalized = gatedLayerNorm(ctx, shifted, w, ctx.lnEps);
  const difference = blend(ctx, headMap(ctx, normalized, m.difference), normalized, w);
  return applyGate(ctx, X, difference, m.gate);
}

export function layerNormDescentBackward(ctx: EngineContext, m: LayerNormDescentBackward, X: Value): Value {
  return prefixRowsFrom(ctx, linearDescent(ctx, m.descent, X), layerNormBackward(ctx, m.backward, X));
}

// ---------------------------------------------------------------------------------------------------------
// Activation (mlp-activation.ts)

export function activationForward(ctx: EngineContext, m: ActivationForward, X: Value): Value {
  const y = addTokenCopy(ctx, headMap(ctx, activation(X, m.act), m.keep), X, 0, m.memory, ctx.layout.d);
  return applyGate(ctx, X, y, m.gate);
}

export function activationBackward(ctx: EngineContext, m: ActivationBackward, X: Value): Value {
  return headMap(ctx, activation(headMap(ctx, X, m.perturb), m.act), m.difference);
}

// ---------------------------------------------------------------------------------------------------------
// Self-attention (self-attention.ts)

export function attentionForward(ctx: EngineContext, m: AttentionForward, X: Value, kPrefix: Value, vPrefix: Value): Value {
  const { d, H } = ctx.layout;
  let qkv = linearForward(ctx, m.linear, X);
  qkv = addTokenCopy(ctx, qkv, linearForward(ctx, m.linear, withPrefix(ctx, X, kPrefix)), 0, d, H - d);
  qkv = addTokenCopy(ctx, qkv, linearForward(ctx, m.linear, withPrefix(ctx, X, vPrefix)), 0, 2 * d, H - 2 * d);
  let y = attention(ctx, qkv, m.attn, { additive: ctx.masks.softmax });
  y = addTokenCopy(ctx, y, qkv, 0, m.memory, 2 * d);
  y = addTokenCopy(ctx, y, X, 0, m.memory + 2 * d, d);
  return applyGate(ctx, qkv, y, m.gate);
}

export function attentionBackward(ctx: EngineContext, m: AttentionBackward, X: Value): Value {
  const y = attention(ctx, X, m.attn, { additive: ctx.masks.softmax, multiplicative: ctx.masks.attentionBackward });
  return applyGate(ctx, X, addTokenCopy(ctx, y, X, m.memory, m.memory, 3 * ctx.layout.d), m.gate);
}

export function attentionBackwardDescent(ctx: EngineContext, m: AttentionBackwardDescent, X: Value): Value {
  const dv = m.throughAttention ? attentionBackward(ctx, m.attention, X) : X;
  return linearDescentBackward(ctx, m.value, dv);
}

// ---------------------------------------------------------------------------------------------------------
// Blocks (blocks.ts)

export interface EngineForwardOutput {
  readonly out: Value;
  readonly memories: Value[];
}

export function forwardBlock(ctx: EngineContext, block: ForwardBlock, X: Value, prefixes: readonly Value[]): EngineForwardOutput {
  const { lnMem, attnMem, linMem, actMem, chunks } = ctx.layout;
  const memories: Value[] = [];
  const keep = (h: Value, from: number): Value => {
    memories.push(tokenMemory(ctx, h, from));
    return h;
  };
  const swap = (h: Value, slot: number): Value => withPrefix(ctx, h, prefixes[slot]!);
  let h = keep(layerNormForward(ctx, block.ln1, swap(X, SLOT.ln1)), lnMem);
  h = keep(attentionForward(ctx, block.attention, swap(h, SLOT.q), prefixes[SLOT.k]!, prefixes[SLOT.v]!), attnMem);
  h = keep(linearForward(ctx, block.outProj, swap(h, SLOT.o)), linMem);
  const mid = h.add(X);
  const normed = keep(layerNormForward(ctx, block.ln2, swap(mid, SLOT.ln2)), lnMem);
  let ffn: Value | null = null;
  for (let c = 0; c < chunks; c++) {
    let y = keep(linearForward(ctx, block.fc1, swap(normed, SLOT.fc1(c))), linMem);
    y = keep(activationForward(ctx, block.act, swap(y, SLOT.act(c))), actMem);
    y = keep(linearForward(ctx, block.fc2, swap(y, SLOT.fc2(c))), linMem);
    ffn = ffn ? ffn.add(y) : y;
  }
  return { out: ffn!.add(mid), memories };
}

export interface EngineBackwardOutput {
  readonly out: Value;
  /** the layer's prefix blocks after the descent */
  readonly prefixes: Value[];
}

export function backwardBlock(ctx: EngineContext, block: BackwardBlock, grad: Value, prefixes: readonly Value[], memories: readonly Value[]): EngineBackwardOutput {
  const { lnMem, attnMem, linMem, actMem, chunks } = ctx.layout;
  const updated = prefixes.slice();
  const prepare = (X: Value, slot: number, memory: number, from: number): Value => withTokenMemory(ctx, withPrefix(ctx, X, prefixes[slot]!), from, memories[memory]!);
  const update = (Y: Value, slot: number): Value => {
    updated[slot] = prefixRows(ctx, Y);
    return Y;
  };
  let ffn: Value | null = null;
  for (let c = chunks - 1; c >= 0; c--) {
    let x = update(linearDescentBackward(ctx, block.fc2, prepare(grad, SLOT.fc2(c), MEMORY.fc2(c), linMem)), SLOT.fc2(c));
    x = update(activationBackward(ctx, block.act, prepare(x, SLOT.act(c), MEMORY.act(c), actMem)), SLOT.act(c));
    x = update(linearDescentBackward(ctx, block.fc1, prepare(x, SLOT.fc1(c), MEMORY.fc1(c), linMem)), SLOT.fc1(c));
    ffn = ffn ? ffn.add(x) : x;
  }
  let x = update(layerNormDescentBackward(ctx, block.ln2, prepare(ffn!, SLOT.ln2, MEMORY.ln2, lnMem)), SLOT.ln2);
  const mid = x.add(grad);
  x = update(linearDescentBackward(ctx, block.outProj, prepare(mid, SLOT.o, MEMORY.o, linMem)), SLOT.o);
  x = update(attentionBackwardDescent(ctx, block.attention, prepare(x, SLOT.v, MEMORY.attention, attnMem)), SLOT.v);
  x = update(layerNormDescentBackward(ctx, block.ln1, prepare(x, SLOT.ln1, MEMORY.ln1, lnMem)), SLOT.ln1);
  return { out: x.add(mid), prefixes: updated };
}

export function finalLayerNormForward(ctx: EngineContext, m: GradientModule, X: Value, prefix: Value): { out: Value; memory: Value } {
  const out = layerNormForward(ctx, m.forward, withPrefix(ctx, X, prefix));
  return { out, memory: tokenMemory(ctx, out, ctx.layout.lnMem) };
}

export function finalLayerNormBackward(ctx: EngineContext, m: GradientModule, grad: Value, prefix: Value, memory: Value): { out: Value; prefix: Value } {
  const out = layerNormDescentBackward(ctx, m.backward, withTokenMemory(ctx, withPrefix(ctx, grad, prefix), ctx.layout.lnMem, memory));
  return { out, prefix: prefixRows(ctx, out) };
}
