/**
 * The adapters' forward math, called by every architecture through `ForwardContext.linear/attend`
 * (models/forward.ts). It sits below the models so that they use it without reaching up into the code
 * that attaches adapters to a loaded model (peft/index.ts).
 */
import type { Graph, Value } from '../engine/index.ts';
import type { LoraSpec } from './spec.ts';

/** LoRA (Hu et al. 2021): the low-rank update (x Aᵀ Bᵀ)·α/r added to a linear layer's output */
export function loraDelta(x: Value, a: Value, b: Value, spec: LoraSpec): Value {
  return loraParts(x, a, b, spec).delta;
}

/**
 * The same update with its intermediate values: u = x Aᵀ (A's output, B's input) and v = u Bᵀ (B's
 * output, before the α/r scale). Differentiating a loss with respect to u and v gives the output
 * gradients of A and B per token, from which structured gradient features are built without forming
 * a per-example gradient (select/kronecker.ts).
 */
export function loraParts(x: Value, a: Value, b: Value, spec: LoraSpec): { u: Value; v: Value; delta: Value } {
  const u = x.matmul(a, { transB: true });
  const v = u.matmul(b, { transB: true });
  return { u, v, delta: v.mul(spec.alpha / spec.rank) };
}

/**
 * Prefix tuning (Li & Liang 2021): a layer's m learned key (or value) slots [m, Hkv·D], laid out as
 * heads and broadcast over the batch, prepended to the keys (values) [B, Hkv, T, D] along time.
 */
export function prependPrefix(g: Graph, slots: Value, kv: Value, m: number): Value {
  const [B, Hkv, , D] = kv.shape as [number, number, number, number];
  const heads = slots.reshape([1, m, Hkv, D]).transpose([0, 2, 1, 3]).expand([B, Hkv, m, D]);
  return g.concat([heads, kv], 2);
}
