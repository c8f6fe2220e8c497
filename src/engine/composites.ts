/**
 * Composite neural-network functions built from primitives (their derivatives follow from the
 * primitives' rules). Models call these; they read like the equations in the papers.
 */
import { LmtuneError } from '../util/errors.ts';
import type { Value } from './graph.ts';

export function layerNorm(x: Value, weight: Value, bias: Value, eps: number): Value {
  return x.graph.apply('layer_norm', [x, weight, bias], { eps })[0]!;
}

/** x / sqrt(mean(x²) + eps) · weight, over the last axis (Llama's RMSNorm) */
export function rmsNorm(x: Value, weight: Value, eps: number): Value {
  return x.mul(x.square().mean(-1, true).add(eps).rsqrt()).mul(weight);
}

/** x W + b for x [..., in] and an HF-style weight. `layout` says how W is stored. */
export function linear(x: Value, w: Value, b: Value | null, layout: 'out_in' | 'in_out'): Value {
  const y = x.matmul(w, { transB: layout === 'out_in' });
  return b ? y.add(b) : y;
}

/**
 * Cross-entropy of logits [N, V] against labels [N] (i64), rows with label == ignoreIndex skipped.
 * Returns the per-row NLL [N] (0 on ignored rows).
 */
export function crossEntropyPerRow(logits: Value, labels: Value, ignoreIndex = -100): Value {
  return logits.graph.apply('cross_entropy', [logits, labels], { ignoreIndex })[0]!;
}

/** mean NLL over the rows whose label is not ignoreIndex; `count` is that number (fed or constant) */
export function crossEntropy(logits: Value, labels: Value, count: Value | number, ignoreIndex = -100): Value {
  const nll = crossEntropyPerRow(logits, labels, ignoreIndex);
  return nll.sum().div(count);
}

/** rotate_half in the HF/GPT-NeoX convention: [x1, x2] → [−x2, x1] over the last axis */
export function rotateHalf(x: Value): Value {
  const d = x.shape[x.rank - 1]!;
  if (d % 2 !== 0) throw new LmtuneError('SHAPE', `rotary: head dim ${d} must be even`);
  const x1 = x.slice(-1, 0, d / 2);
  const x2 = x.slice(-1, d / 2, d);
  return x.graph.concat([x2.neg(), x1], -1);
}

/**
 * Rotary position embedding applied to the first `rotDim` channels of x [B, H, T, D]; cos/sin are
 * [B or 1, 1, T, rotDim] (computed on the host from position ids). Channels past rotDim pass through
 * (GPT-NeoX partial rotary).
 */
export function applyRotary(x: Value, cos: Value, sin: Value, rotDim: number): Value {
  const d = x.shape[x.rank - 1]!;
  const xr = rotDim === d ? x : x.slice(-1, 0, rotDim);
  const y = xr.mul(cos).add(rotateHalf(xr).mul(sin));
  return rotDim === d ? y : x.graph.concat([y, x.slice(-1, rotDim, d)], -1);
}

/**
 * Scaled dot-product attention. q [B, H, T, D], k/v [B, H, S, D]; bias [B or 1, 1, T, S] is added to the
 * scores (0 where allowed, a large negative number where masked: causal and padding masks are built on
 * the host). Returns [B, H, T, D].
 */
export function attention(q: Value, k: Value, v: Value, bias: Value | null, scale: number): Value {
  let s = q.matmul(k, { transB: true }).mul(scale);
  if (bias) s = s.add(bias);
  return s.softmax(-1).matmul(v);
}

/** [B, T, H·D] → [B, H, T, D] */
export function splitHeads(x: Value, heads: number): Value {
  const [b, t, hd] = x.shape as [number, number, number];
  return x.reshape([b, t, heads, hd / heads]).transpose([0, 2, 1, 3]);
}

/** [B, H, T, D] → [B, T, H·D] */
export function mergeHeads(x: Value): Value {
  const [b, h, t, d] = x.shape as [number, number, number, number];
  return x.transpose([0, 2, 1, 3]).reshape([b, t, h * d]);
}

/** repeat each of the kv heads `groups` times: [B, Hkv, S, D] → [B, Hkv·groups, S, D] (grouped-query attention) */
export function repeatKv(x: Value, groups: number): Value {
  if (groups === 1) return x;
  const [b, h, s, d] = x.shape as [number, number, number, number];
  return x.reshape([b, h, 1, s, d]).expand([b, h, groups, s, d]).reshape([b, h * groups, s, d]);
}

