/**
 * The pieces of `pieces.ts` as engine graph builders: head maps, attention (linear or softmax) with
 * position terms, gates, the restricted layer norm, elementwise activations and the row bookkeeping around
 * modules (prefix swaps, token memories). Each function takes the (P + T) × H matrix as a graph value and
 * returns a new one; the fixed matrices of a built module (head maps, position projections, gate lines)
 * become graph constants, so inner weights still enter only through the prefix rows.
 *
 * Every function mirrors its float64 twin operation for operation, with the same summation order, so on the
 * `ref` executor the two agree to float64 rounding (mostly bit for bit). Two deliberate differences:
 *   - masked softmax scores get MASKED_SCORE (finite) instead of −∞: the engine's softmax of a fully masked
 *     row (prefix queries) is NaN, and a gate multiplying NaN by 0 stays NaN. With a finite value those rows
 *     are a finite uniform distribution, which every gate then multiplies by exactly 0; in every row with an
 *     unmasked entry exp(MASKED_SCORE − max) underflows to exactly 0, as exp(−∞) does.
 *   - the per-module copies the float64 code makes in place (`addTokenCopyInPlace`) are additions of a
 *     zero-padded block.
 */
import { createHash } from 'node:crypto';
import { type Graph, type Shape, type Value } from '../engine/index.ts';
import type { ActivationFn } from './activations.ts';
import type { GateMode, TintLayout } from './config.ts';
import type { Mat } from './matrix.ts';
import { gateValue, type AttentionLayer, type GateLine, type HeadMap, type PositionGate, type Projection } from './pieces.ts';

/** Finite stand-in for −∞ in additive softmax masks (the reference uses finfo.min; see the file comment). */
export const MASKED_SCORE = -1e30;

/** The engine twin of `TintContext`: the sequence-dependent context enters as graph inputs. */
export interface EngineContext {
  readonly g: Graph;
  readonly layout: TintLayout;
  readonly gateMode: GateMode;
  readonly gateScale: number;
  readonly lnEps: number;
  readonly restrictPrefixes: boolean;
  readonly T: number;
  readonly n: number;
  /** input [n, posDim]: the one-hot position stream */
  readonly pos: Value;
  readonly masks: EngineMasks;
  /** a graph constant; identical contents share one value (the reuse flags share modules, many modules share maps) */
  constant(data: ArrayLike<number>, shape: Shape): Value;
  /** cache of gate values per gate line (one [n, 1] column each) */
  readonly gateCache: Map<string, Value>;
}

/** Inputs [n, n], filled from `makeContext` (softmax: 0 / MASKED_SCORE). */
export interface EngineMasks {
  readonly prefixKeys: Value;
  readonly causal: Value;
  readonly descent: Value;
  readonly softmax: Value;
  readonly attentionBackward: Value;
}

export const MASK_NAMES = ['prefixKeys', 'causal', 'descent', 'softmax', 'attentionBackward'] as const;

export interface EngineContextOptions {
  readonly gateMode: GateMode;
  readonly gateScale: number;
  readonly lnEps: number;
  readonly restrictPrefixes: boolean;
}

/** Declares the context inputs (`pos`, `mask_<name>`) on `g` for T tokens. */
export function makeEngineContext(g: Graph, layout: TintLayout, T: number, opts: EngineContextOptions): EngineContext {
  const n = layout.P + T;
  const pos = g.input('pos', [n, layout.posDim]);
  const mask = (name: string): Value => g.input(`mask_${name}`, [n, n]);
  const masks: EngineMasks = {
    prefixKeys: mask('prefixKeys'),
    causal: mask('causal'),
    descent: mask('descent'),
    softmax: mask('softmax'),
    attentionBackward: mask('attentionBackward'),
  };
  const constants = new Map<string, Value>();
  const constant = (data: ArrayLike<number>, shape: Shape): Value => {
    const f = Float64Array.from(data);
    const key = `${shape.join('x')}:${createHash('sha1').update(new Uint8Array(f.buffer)).digest('hex')}`;
    let v = constants.get(key);
    if (!v) {
      v = g.constant(f, shape);
      constants.set(key, v);
    }
    return v;
  };
  return { g, layout, ...opts, T, n, pos, masks, constant, gateCache: new Map() };
}

const matConst = (ctx: EngineContext, m: Mat): Value => ctx.constant(m.data, [m.rows, m.cols]);

// ---------------------------------------------------------------------------------------------------------
// Head maps

/**
 * `applyHeadMap` on the graph. Mix: X viewed as [n, blocks, b], out = m @ X per row (Σ_s m[a][s] · block s,
 * s ascending as in the float64 loop). Per block: [n, blocks, 1, b] @ M_aᵀ, a zero matrix for null maps.
 */
export function headMap(ctx: EngineContext, X: Value, map: HeadMap): Value {
  const [n, H] = X.shape as [number, number];
  const b = map.blockSize;
  const blocks = H / b;
  if (map.kind === 'mix') {
    if (map.m.rows !== blocks || map.m.cols !== blocks) throw new RangeError(`head mix: ${map.m.rows}x${map.m.cols} for ${blocks} blocks`);
    return matConst(ctx, map.m).matmul(X.reshape([n, blocks, b])).reshape([n, H]);
  }
  if (map.maps.length !== blocks) throw new RangeError(`per-block map: ${map.maps.length} maps for ${blocks} blocks`);
  const stacked = new Float64Array(blocks * b * b);
  map.maps.forEach((M, a) => {
    if (M) stacked.set(M.data, a * b * b);
  });
  return X.reshape([n, blocks, 1, b])
    .matmul(ctx.constant(stacked, [blocks, b, b]), { transB: true })
    .reshape([n, H]);
}

function headMaps(ctx: EngineContext, X: Value, maps: readonly HeadMap[]): Value {
  let y = X;
  for (const m of maps) y = headMap(ctx, y, m);
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// Attention

function project(ctx: EngineContext, X: Value, p: Projection, heads: number, headDim: number): Value {
  const { n } = ctx;
  const Y = p.hidden === 'none' ? null : headMaps(ctx, X, p.hidden);
  if (!p.position) return Y ?? ctx.g.zeros([n, heads * headDim]);
  const { proj, heads: mult } = p.position;
  // heads[h] · (pos @ proj) in head h
  const term = ctx.pos.matmul(matConst(ctx, proj)).reshape([n, 1, headDim]).mul(ctx.constant(mult, [heads, 1]));
  if (!Y) return term.reshape([n, heads * headDim]);
  return Y.reshape([n, heads, headDim]).add(term).reshape([n, heads * headDim]);
}

/** [n, heads·hd] → [heads, n, hd] */
const splitHeads = (x: Value, heads: number, hd: number): Value => x.reshape([x.shape[0]!, heads, hd]).transpose([1, 0, 2]);

export interface EngineAttentionMasks {
  readonly additive?: Value;
  readonly multiplicative?: Value;
}

export function attention(ctx: EngineContext, X: Value, layer: AttentionLayer, masks: EngineAttentionMasks): Value {
  const { heads, headDim } = layer;
  const { n } = ctx;
  const H = X.shape[1]!;
  if (heads * headDim !== H) throw new RangeError(`attention: ${heads} heads of ${headDim} for width ${H}`);
  const q = splitHeads(project(ctx, X, layer.q, heads, headDim), heads, headDim);
  const k = splitHeads(project(ctx, X, layer.k, heads, headDim), heads, headDim);
  const v = splitHeads(project(ctx, X, layer.v, heads, headDim), heads, headDim);
  let w = q.matmul(k, { transB: true });
  if (layer.kind === 'softmax') {
    w = w.mul(layer.scale);
    if (masks.additive) w = w.add(masks.additive);
    w = w.softmax(-1);
  }
  if (layer.transposeScores) w = w.transpose([0, 2, 1]);
  if (masks.multiplicative) w = w.mul(masks.multiplicative);
  const out = w.matmul(v).transpose([1, 0, 2]).reshape([n, H]);
  return headMaps(ctx, out, layer.out);
}

// ---------------------------------------------------------------------------------------------------------
// Gates

function gateColumn(ctx: EngineContext, line: GateLine): Value {
  const v = ctx.constant(line.v, [line.v.length, 1]);
  const key = `${v.id}:${line.b}`;
  let out = ctx.gateCache.get(key);
  if (!out) {
    const z = ctx.pos.matmul(v).add(line.b);
    out = ctx.gateMode === 'tanh' ? z.tanh() : z.gt(ctx.gateScale / 2).cast('f32');
    ctx.gateCache.set(key, out);
  }
  return out;
}

export function applyGate(ctx: EngineContext, input: Value, output: Value, gate: PositionGate): Value {
  return input.mul(gateColumn(ctx, gate.old)).add(output.mul(gateColumn(ctx, gate.new)));
}

// ---------------------------------------------------------------------------------------------------------
// Layer norm and elementwise maps

/** σ(gateScale) on coordinates [from, to), 0 elsewhere (host-side, as `coordinateWeights`). */
export function coordinateWeights(ctx: EngineContext, from: number, to: number): Float64Array {
  const w = new Float64Array(ctx.layout.H);
  const on = gateValue(ctx.gateScale, ctx);
  for (let c = from; c < to; c++) w[c] = on;
  return w;
}

/**
 * `gatedLayerNorm`: μ = Σ w x / Σ w, σ² = ε + Σ (w(x−μ))² / Σ w, out = w (x−μ)/σ + (1−w) x. Σ w and 1 − w are
 * computed in the graph, in the executor's precision: in float32, w = tanh(10) rounds to 1 and 1 − w is 0, as
 * in the reference; a host-side float64 1 − w would leave a 4e-9 leak that float32 does not have.
 */
export function gatedLayerNorm(ctx: EngineContext, X: Value, w: Float64Array, eps: number): Value {
  const wc = ctx.constant(w, [w.length]);
  const sw = wc.sum();
  const mu = X.mul(wc).sum(-1, true).div(sw);
  const c = X.sub(mu);
  const z = c.mul(wc);
  const sd = z.mul(z).sum(-1, true).div(sw).add(eps).sqrt();
  return c.div(sd).mul(wc).add(X.mul(complement(ctx, wc)));
}

/** 1 − w, in the graph (see gatedLayerNorm) */
function complement(ctx: EngineContext, w: Value): Value {
  return ctx.g.scalar(1).sub(w);
}

/** w ⊙ a + (1 − w) ⊙ b */
export function blend(ctx: EngineContext, a: Value, b: Value, w: Float64Array): Value {
  const wc = ctx.constant(w, [w.length]);
  return a.mul(wc).add(b.mul(complement(ctx, wc)));
}

/** The inner activation, elementwise; GELU variants map to the engine's erf and tanh forms. */
export function activation(X: Value, act: ActivationFn): Value {
  switch (act.name) {
    case 'relu':
      return X.relu();
    case 'gelu':
      return X.gelu('none');
    case 'gelu_new':
      return X.gelu('tanh');
  }
}

// ---------------------------------------------------------------------------------------------------------
// Row bookkeeping

/** out + (src[token rows, from .. from+len) placed at token rows, to .. to+len): a module's memory write. */
export function addTokenCopy(ctx: EngineContext, out: Value, src: Value, from: number, to: number, len: number): Value {
  const { P, H } = ctx.layout;
  const block = src.slice(0, P, ctx.n).slice(1, from, from + len);
  const g = ctx.g;
  const wide = to === 0 && len === H ? block : g.apply1('pad', [block], { axis: 1, before: to, after: H - to - len });
  return out.add(g.apply1('pad', [wide], { axis: 0, before: P, after: 0 }));
}

/** X with its prefix rows replaced by `prefix` [P, H]. */
export function withPrefix(ctx: EngineContext, X: Value, prefix: Value): Value {
  return ctx.g.concat([prefix, X.slice(0, ctx.layout.P, ctx.n)], 0);
}

export function prefixRows(ctx: EngineContext, X: Value): Value {
  return X.slice(0, 0, ctx.layout.P);
}

/** Token rows, coordinates [from, H). */
export function tokenMemory(ctx: EngineContext, X: Value, from: number): Value {
  return X.slice(0, ctx.layout.P, ctx.n).slice(1, from, ctx.layout.H);
}

/** X with token rows' coordinates [from, H) replaced by a stored memory [T, H − from]. */
export function withTokenMemory(ctx: EngineContext, X: Value, from: number, memory: Value): Value {
  const { P } = ctx.layout;
  const tokens = from === 0 ? memory : ctx.g.concat([X.slice(0, P, ctx.n).slice(1, 0, from), memory], 1);
  return ctx.g.concat([prefixRows(ctx, X), tokens], 0);
}

/** Token rows' coordinates [0, width) replaced by `signal` [T, width]. */
export function withTokenSignal(ctx: EngineContext, X: Value, signal: Value): Value {
  const { P, H } = ctx.layout;
  const w = signal.shape[1]!;
  const tokens = w === H ? signal : ctx.g.concat([signal, X.slice(0, P, ctx.n).slice(1, w, H)], 1);
  return ctx.g.concat([prefixRows(ctx, X), tokens], 0);
}

/** Prefix rows from `a`, token rows from `b`. */
export function prefixRowsFrom(ctx: EngineContext, a: Value, b: Value): Value {
  return ctx.g.concat([prefixRows(ctx, a), b.slice(0, ctx.layout.P, ctx.n)], 0);
}
