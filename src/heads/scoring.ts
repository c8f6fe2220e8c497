/**
 * Scoring for the task layer's LanguageModel (models/api.ts): per-token log-probs of continuations
 * (causal LMs) and label-word logits at a mask (masked LMs; causal LMs: at the last token). Both run the
 * objective head (heads/objective.ts) without gradients, `evalBatch` rows at a time, on shape buckets of
 * 16 positions and 16 targets so that a dev set compiles a few graphs.
 */
import { LmtuneError } from '../util/errors.ts';
import { packBatch, roundUp } from '../models/batch.ts';
import type { ContinuationRequest } from '../models/api.ts';
import type { ModelGraphs } from '../models/graphs.ts';
import { objectiveLoss, padTargets } from './objective.ts';

/** per-token log-probs of each continuation given its prompt (causal LMs) */
export async function continuationLogprobs(graphs: ModelGraphs, reqs: readonly ContinuationRequest[], evalBatch: number): Promise<Float64Array[]> {
  const m = graphs.model;
  if (!m.arch.causal) throw new LmtuneError('UNSUPPORTED', `${m.cfg.family} is a masked LM: score with maskLogits`);
  const out: Float64Array[] = [];
  const bsz = evalBatch;
  for (let s = 0; s < reqs.length; s += bsz) {
    const chunk = reqs.slice(s, s + bsz);
    const seqs = chunk.map((r) => clip(m.cfg.maxPositions, [...r.prompt, ...r.continuation], r.continuation.length));
    const batch = packBatch(seqs, { side: 'right', padId: m.padId(), batch: bsz, seq: roundUp(Math.max(...seqs.map((q) => q.length)), 16) });
    const index: number[] = [];
    const label: number[] = [];
    seqs.forEach((q, b) => {
      const n = chunk[b]!.continuation.length;
      for (let j = 0; j < n; j++) {
        const t = q.length - n + j; // position of continuation token j
        index.push(b * batch.seq + t - 1);
        label.push(q[t]!);
      }
    });
    const K = roundUp(index.length, 16);
    const targets = padTargets(index, label, K);
    const { outputs } = await objectiveLoss(graphs, { batch, targets, objective: { kind: 'token', weight: new Float32Array(K) } });
    let k = 0;
    for (const r of chunk) {
      const lp = new Float64Array(r.continuation.length);
      for (let j = 0; j < lp.length; j++) lp[j] = -outputs.nll![k++]!;
      out.push(lp);
    }
  }
  return out;
}

/** keep the last `max` tokens (the continuation must fit) */
function clip(max: number, seq: number[], contLen: number): number[] {
  if (seq.length <= max) return seq;
  if (contLen >= max) throw new LmtuneError('DATA', `a continuation of ${contLen} tokens does not fit the model's ${max} positions`);
  return seq.slice(seq.length - max);
}

/** logits of candidate ids at the mask position of each input (masked LMs; causal LMs: the last position) */
export async function maskLogits(graphs: ModelGraphs, inputs: readonly (readonly number[])[], candidateIds: readonly number[], evalBatch: number): Promise<Float64Array[]> {
  const m = graphs.model;
  const maskId = m.tokenizer?.maskId ?? null;
  const out: Float64Array[] = [];
  const bsz = evalBatch;
  for (let s = 0; s < inputs.length; s += bsz) {
    const chunk = inputs.slice(s, s + bsz).map((x) => [...x]);
    const batch = packBatch(chunk, { side: 'right', padId: m.padId(), batch: bsz, seq: roundUp(Math.max(...chunk.map((q) => q.length)), 16) });
    const index = new Int32Array(bsz);
    chunk.forEach((q, b) => {
      const at = m.arch.causal ? q.length - 1 : q.indexOf(maskId ?? -1);
      if (at < 0) throw new LmtuneError('DATA', `input ${s + b} has no mask token (id ${maskId})`);
      index[b] = b * batch.seq + at;
    });
    const gold = new Int32Array(bsz).fill(-100);
    const res = await objectiveLoss(graphs, { batch, targets: { index, label: new Int32Array(bsz).fill(-100) }, objective: { kind: 'mask', examples: bsz, candIds: Int32Array.from(candidateIds), gold } });
    const C = candidateIds.length;
    for (let b = 0; b < chunk.length; b++) out.push(res.outputs.scores!.slice(b * C, (b + 1) * C));
  }
  return out;
}
