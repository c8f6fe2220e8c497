/**
 * Where the inner model lives inside TinT: each simulated d×d linear operation (W, b) becomes a [P, H] block
 * of prefix rows, prefix p = [W[pS] | … | W[pS+S−1] | b]. A layer has 6 + 3·chunks of them, in the order the
 * forward block swaps them in:
 *
 *   ln1 (diag γ1, β1), Q, K, V, out_proj, ln2 (diag γ2, β2), then per FFN chunk c: fc1_c, act_c (zeros), fc2_c
 *
 * fc1_c holds rows [cd, (c+1)d) of fc1; fc2_c holds columns [cd, (c+1)d) of fc2 with bias b2/chunks (so the
 * simulated step moves b2 chunks times as far as η: the reference's quirk, kept on purpose).
 */
import type { TintLayout } from './config.ts';
import type { InnerLayer, InnerModel, LayerNormWeights, LinearWeights } from './inner.ts';
import { zeros, type Mat } from './matrix.ts';

export const SLOT = {
  ln1: 0,
  q: 1,
  k: 2,
  v: 3,
  o: 4,
  ln2: 5,
  fc1: (c: number): number => 6 + 3 * c,
  act: (c: number): number => 7 + 3 * c,
  fc2: (c: number): number => 8 + 3 * c,
} as const;

export function slotsPerLayer(chunks: number): number {
  return 6 + 3 * chunks;
}

/** The [P, H] prefix block of a d×d linear operation. */
export function linearPrefix(layout: TintLayout, w: Mat, b: Float64Array): Mat {
  const { d, S, P, H } = layout;
  if (w.rows !== d || w.cols !== d || b.length !== d) throw new RangeError(`linearPrefix: TinT simulates ${d}x${d} operations, got ${w.rows}x${w.cols}`);
  const out = zeros(P, H);
  for (let p = 0; p < P; p++) {
    for (let r = 0; r < S; r++) out.data.set(w.data.subarray((p * S + r) * d, (p * S + r + 1) * d), p * H + r * d);
    out.data.set(b, p * H + S * d);
  }
  return out;
}

export function layerNormPrefix(layout: TintLayout, ln: LayerNormWeights): Mat {
  const d = layout.d;
  const diag = zeros(d, d);
  for (let i = 0; i < d; i++) diag.data[i * d + i] = ln.gamma[i]!;
  return linearPrefix(layout, diag, ln.beta);
}

/** Reads (W, b) back from a prefix block; b from prefix 0, the only copy TinT reads and updates. */
export function readLinearPrefix(layout: TintLayout, prefix: Mat): LinearWeights {
  const { d, S, P, H } = layout;
  const w = zeros(d, d);
  for (let p = 0; p < P; p++) for (let r = 0; r < S; r++) w.data.set(prefix.data.subarray(p * H + r * d, p * H + (r + 1) * d), (p * S + r) * d);
  return { w, b: prefix.data.slice(S * d, S * d + d) };
}

function chunkRows(l: LinearWeights, c: number, d: number): LinearWeights {
  const w = zeros(d, d);
  w.data.set(l.w.data.subarray(c * d * d, (c + 1) * d * d));
  return { w, b: l.b.slice(c * d, (c + 1) * d) };
}

function chunkColumns(l: LinearWeights, c: number, d: number, chunks: number): LinearWeights {
  const w = zeros(d, d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) w.data[i * d + j] = l.w.data[i * l.w.cols + c * d + j]!;
  return { w, b: l.b.map((x) => x / chunks) };
}

export function layerPrefixes(layout: TintLayout, layer: InnerLayer): Mat[] {
  const { d, chunks } = layout;
  const lin = (l: LinearWeights): Mat => linearPrefix(layout, l.w, l.b);
  const out: Mat[] = [layerNormPrefix(layout, layer.ln1), lin(layer.q), lin(layer.k), lin(layer.v), lin(layer.o), layerNormPrefix(layout, layer.ln2)];
  for (let c = 0; c < chunks; c++) {
    out.push(lin(chunkRows(layer.fc1, c, d)));
    out.push(zeros(layout.P, layout.H));
    out.push(lin(chunkColumns(layer.fc2, c, d, chunks)));
  }
  return out;
}

function readLayerNorm(layout: TintLayout, prefix: Mat): LayerNormWeights {
  const { w, b } = readLinearPrefix(layout, prefix);
  const d = layout.d;
  return { gamma: Float64Array.from({ length: d }, (_, i) => w.data[i * d + i]!), beta: b };
}

/** Reassembles an inner layer from its prefix blocks (the inverse of layerPrefixes). */
export function readLayerPrefixes(layout: TintLayout, prefixes: readonly Mat[]): InnerLayer {
  const { d, chunks } = layout;
  const F = chunks * d;
  const read = (slot: number): LinearWeights => readLinearPrefix(layout, prefixes[slot]!);
  const fc1 = { w: zeros(F, d), b: new Float64Array(F) };
  const fc2 = { w: zeros(d, F), b: new Float64Array(d) };
  for (let c = 0; c < chunks; c++) {
    const a = read(SLOT.fc1(c));
    fc1.w.data.set(a.w.data, c * d * d);
    fc1.b.set(a.b, c * d);
    const o = read(SLOT.fc2(c));
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) fc2.w.data[i * F + c * d + j] = o.w.data[i * d + j]!;
    for (let i = 0; i < d; i++) fc2.b[i]! += o.b[i]!;
  }
  return {
    ln1: readLayerNorm(layout, prefixes[SLOT.ln1]!),
    q: read(SLOT.q),
    k: read(SLOT.k),
    v: read(SLOT.v),
    o: read(SLOT.o),
    ln2: readLayerNorm(layout, prefixes[SLOT.ln2]!),
    fc1,
    fc2,
  };
}

/** The inner model whose weights are the given prefix blocks (embeddings from `base`, never trained). */
export function innerModelFromPrefixes(layout: TintLayout, base: InnerModel, layers: readonly (readonly Mat[])[], finalLn: Mat): InnerModel {
  return {
    config: base.config,
    wte: base.wte,
    wpe: base.wpe,
    layers: layers.map((p) => readLayerPrefixes(layout, p)),
    lnF: readLayerNorm(layout, finalLn),
  };
}
