/**
 * What the body computes, for small inputs: full logits and hidden states of every position (tests,
 * diagnostics, probes), and the base model's per-layer attention keys and values (prefix-tuning's
 * initialization from real activations, peft/prefix.ts).
 */
import { toFloat64, type Value } from '../engine/index.ts';
import { packBatch } from '../models/batch.ts';
import type { BodyOptions, HeadContext, ModelGraphs } from '../models/graphs.ts';

const ALL: BodyOptions = { name: 'all' };
const KV: BodyOptions = { name: 'kv', captureKv: true, adapters: false };

/**
 * Full logits [B, T, V] and final hidden states [B, T, H] (after the final norm for causal LMs' last
 * layer, as HF's hidden_states[-1] is before it; we return the body output) for small inputs: tests,
 * probes and `lmtune` diagnostics. Sequences are right-padded; rows past each length are padding.
 */
export async function forwardAll(graphs: ModelGraphs, seqs: readonly (readonly number[])[]): Promise<{ logits: Float64Array; hidden: Float64Array; batch: number; seq: number }> {
  const batch = packBatch(seqs.map((s) => [...s]), { side: 'right', padId: graphs.model.padId() });
  const B = batch.batch;
  const T = batch.seq;
  const built = await graphs.graph(`all|${B}|${T}`, B, T, allRows, ALL);
  const out = await built.exe.run(graphs.feeds(built, batch));
  return { logits: toFloat64(out.logits!), hidden: toFloat64(out.hidden!), batch: B, seq: T };
}

function allRows(h: HeadContext): Record<string, Value> {
  const H = h.hidden.shape[2]!;
  return { logits: h.logits(h.hidden.reshape([h.ctx.batch * h.ctx.seq, H])), hidden: h.hidden };
}

/**
 * Per-layer attention keys and values [Hkv, T, D] of the base model (no adapters: prefix slots are
 * initialized from the frozen model) on one sequence. Built for the one call a run makes, not cached.
 */
export async function keyValues(graphs: ModelGraphs, ids: readonly number[]): Promise<{ k: Float64Array; v: Float64Array }[]> {
  const T = ids.length;
  const built = await graphs.build(1, T, capturedKv, KV);
  const batch = packBatch([[...ids]], { side: 'right', padId: graphs.model.padId(), seq: T });
  const out = await built.exe.run(graphs.feeds(built, batch));
  const kv: { k: Float64Array; v: Float64Array }[] = [];
  for (let l = 0; out[`k${l}`]; l++) kv.push({ k: toFloat64(out[`k${l}`]!), v: toFloat64(out[`v${l}`]!) });
  return kv;
}

/** every layer's keys and values as outputs k<l>, v<l> (the body recorded them: captureKv) */
export function capturedKv(h: HeadContext): Record<string, Value> {
  const outputs: Record<string, Value> = {};
  h.ctx.capturedKv.forEach((kv, l) => {
    outputs[`k${l}`] = kv.k;
    outputs[`v${l}`] = kv.v;
  });
  return outputs;
}
