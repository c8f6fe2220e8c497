/**
 * Training batches from task encodings, in the two forms the MeZO paper trains with:
 *   classification  one sequence per candidate; the candidates' mean option log-probs are the logits of
 *                   a cross-entropy (SST-2, RTE, CB, BoolQ, WSC, WIC, MultiRC)
 *   lm              teacher-forced token cross-entropy on the correct answer's tokens only (COPA, ReCoRD,
 *                   SQuAD, DROP; and any task with --objective lm)
 * and, for masked LMs, cross-entropy over the label words' logits at the mask (LM-BFF prompt tuning).
 * Shapes are bucketed (sequence length and target count rounded up to 16) so graphs are reused.
 */
import { LmtuneError } from '../util/errors.ts';
import type { TextTokenizer } from '../models/api.ts';
import { packBatch, roundUp } from '../models/batch.ts';
import { padTargets, type LossRequest } from '../heads/objective.ts';
import type { TransformerModel } from '../heads/model.ts';
import { encodeCausal, encodeForMaskedLM, type CandidateSequence, type ChoiceEncoding, type Example, type GenerationEncoding, type MaskedEncoding, type Task } from '../tasks/index.ts';
import { isChatExample } from '../tasks/chat-task.ts';
import { chatEncodingOf, chatLossRequest, type ChatEncoding } from './chat-batches.ts';

export type ObjectiveMode = 'classification' | 'lm' | 'mask';

/** the paper's default per task: classification for fixed label sets, lm for multiple choice / generation */
export function defaultObjective(task: Task, model: TransformerModel): ObjectiveMode {
  if (model.kind === 'masked') return 'mask';
  return task.kind === 'classification' ? 'classification' : 'lm';
}

export type Encoded = ChoiceEncoding | GenerationEncoding | MaskedEncoding | ChatEncoding;

export function encodeExample(task: Task, ex: Example, model: TransformerModel, maxLength?: number): Encoded {
  const tok = tokenizerOf(model);
  if (model.kind === 'masked') return encodeForMaskedLM(task, ex, tok, maxLength !== undefined ? { maxLength } : {});
  if (isChatExample(ex)) return chatEncodingOf(ex, model, maxLength);
  return encodeCausal(task, ex, tok, { maxLength: maxLength ?? model.maxPositions });
}

export function tokenizerOf(model: TransformerModel): TextTokenizer {
  if (!model.tokenizer) throw new LmtuneError('TOKENIZER', 'this model folder has no tokenizer; tasks need one');
  return model.tokenizer;
}

function sequencesToRequest(seqs: readonly CandidateSequence[], model: TransformerModel, rows: number): { req: Omit<LossRequest, 'objective'>; perSeqTargets: number[][] } {
  const full = seqs.map((s) => [...s.prompt, ...s.continuation]);
  const batch = packBatch(full, { side: 'right', padId: model.padId(), batch: rows, seq: roundUp(Math.max(...full.map((f) => f.length)), 16) });
  const index: number[] = [];
  const label: number[] = [];
  const perSeqTargets: number[][] = [];
  seqs.forEach((s, b) => {
    const n = s.continuation.length;
    const L = s.prompt.length + n;
    const mine: number[] = [];
    for (let j = 0; j < n; j++) {
      const t = L - n + j;
      mine.push(index.length);
      index.push(b * batch.seq + t - 1);
      label.push(full[b]![t]!);
    }
    perSeqTargets.push(mine);
  });
  const K = roundUp(index.length, 16);
  return { req: { batch, targets: padTargets(index, label, K) }, perSeqTargets };
}

/**
 * One optimization batch. `rowsPerExample` fixes the row count for classification (examples × candidates)
 * so every batch of a run has the same row bucket.
 */
/** the candidate token ids when every example's candidates are single tokens after one shared prompt */
function sharedSingleTokenCandidates(encs: readonly ChoiceEncoding[]): number[] | null {
  const ids = encs[0]!.candidates.map((q) => (q.continuation.length === 1 ? q.continuation[0]! : -1));
  if (ids.some((i) => i < 0) || new Set(ids).size !== ids.length) return null;
  for (const e of encs) {
    const p = e.candidates[0]!.prompt;
    for (let c = 0; c < e.candidates.length; c++) {
      const q = e.candidates[c]!;
      if (q.continuation.length !== 1 || q.continuation[0] !== ids[c] || q.prompt.length !== p.length || q.prompt.some((t, i) => t !== p[i])) return null;
    }
  }
  return ids;
}

/**
 * How many terms a request's loss is the mean of: real examples (classification, mask) or real answer
 * tokens (lm). Losses of several requests combine as Σ loss·units / Σ units, which is the mean over the
 * whole set whatever the batch size (a partial last batch included).
 */
export function lossUnits(req: LossRequest & { encodings?: readonly Encoded[] }): number {
  // chat rows: the loss is a mean over examples of per-example token means (chat-batches.ts)
  if (req.encodings?.length && req.encodings.every((e) => e.kind === 'chat')) return req.encodings.length;
  const o = req.objective;
  let n = 0;
  if (o.kind === 'token') {
    for (let k = 0; k < req.targets.label.length; k++) if (req.targets.label[k] !== -100 && o.weight[k] !== 0) n++;
  } else for (const y of o.gold) if (y !== -100) n++;
  return n;
}

export function buildLossRequest(encs: readonly Encoded[], mode: ObjectiveMode, model: TransformerModel, batchSize: number): LossRequest & { encodings: readonly Encoded[] } {
  return { ...buildRequest(encs, mode, model, batchSize), encodings: encs };
}

function buildRequest(encs: readonly Encoded[], mode: ObjectiveMode, model: TransformerModel, batchSize: number): LossRequest {
  if (encs.length === 0) throw new LmtuneError('DATA', 'empty training batch');
  if (mode === 'mask') {
    const m = encs as MaskedEncoding[];
    if (m.some((e) => e.kind !== 'masked')) throw new LmtuneError('CONFIG', 'the mask objective needs a masked LM and a task with a masked template');
    const batch = packBatch(m.map((e) => e.input), { side: 'right', padId: model.padId(), batch: batchSize, seq: roundUp(Math.max(...m.map((e) => e.input.length)), 16) });
    const index = new Int32Array(batchSize);
    const gold = new Int32Array(batchSize).fill(-100);
    m.forEach((e, b) => {
      index[b] = b * batch.seq + e.maskPos;
      gold[b] = e.label;
    });
    return { batch, targets: { index, label: new Int32Array(batchSize).fill(-100) }, objective: { kind: 'mask', examples: batchSize, candIds: Int32Array.from(m[0]!.labelWordIds), gold } };
  }
  if (mode === 'classification') {
    const c = encs as ChoiceEncoding[];
    if (c.some((e) => e.kind !== 'choice')) throw new LmtuneError('CONFIG', 'the classification objective needs a classification or multiple-choice task');
    const C = c[0]!.candidates.length;
    if (c.some((e) => e.candidates.length !== C)) throw new LmtuneError('CONFIG', 'examples have different numbers of candidates; use --objective lm');
    const shared = sharedSingleTokenCandidates(c);
    if (shared) {
      // every candidate is one token after the same prompt (SST-2's " great"/" terrible"): one row per
      // example and the head restricted to the candidate ids. The cross-entropy over the candidates'
      // log-probs equals the cross-entropy over their logits (the log-normalizer cancels), at 1/C the cost.
      const prompts = c.map((e) => e.candidates[0]!.prompt);
      const batch = packBatch(prompts, { side: 'right', padId: model.padId(), batch: batchSize, seq: roundUp(Math.max(...prompts.map((p) => p.length)), 16) });
      const index = new Int32Array(batchSize);
      const gold = new Int32Array(batchSize).fill(-100);
      c.forEach((e, b) => {
        index[b] = b * batch.seq + prompts[b]!.length - 1;
        gold[b] = e.label;
      });
      return { batch, targets: { index, label: new Int32Array(batchSize).fill(-100) }, objective: { kind: 'mask', examples: batchSize, candIds: Int32Array.from(shared), gold } };
    }
    const seqs = c.flatMap((e) => e.candidates);
    const { req, perSeqTargets } = sequencesToRequest(seqs, model, batchSize * C);
    const K = req.targets.index.length;
    const E = batchSize;
    const segment = new Float32Array(E * C * K);
    perSeqTargets.forEach((ks, s) => {
      for (const k of ks) segment[s * K + k] = 1 / ks.length;
    });
    const gold = new Int32Array(E).fill(-100);
    c.forEach((e, i) => (gold[i] = e.label));
    return { ...req, objective: { kind: 'candidates', examples: E, candidates: C, segment, gold } };
  }
  if (encs.some((e) => e.kind === 'chat')) {
    if (!encs.every((e) => e.kind === 'chat')) throw new LmtuneError('CONFIG', 'a batch mixes chat rows with other examples');
    return chatLossRequest(encs as ChatEncoding[], model, batchSize);
  }
  // lm: the correct candidate (or the generation target) only, mean over all answer tokens of the batch
  const seqs = encs.map((e) => {
    if (e.kind === 'choice') return e.candidates[e.label]!;
    if (e.kind === 'generation') return e.target;
    throw new LmtuneError('CONFIG', 'the lm objective needs a causal LM');
  });
  const { req, perSeqTargets } = sequencesToRequest(seqs, model, batchSize);
  const total = perSeqTargets.reduce((s, t) => s + t.length, 0);
  const weight = new Float32Array(req.targets.index.length);
  for (const ks of perSeqTargets) for (const k of ks) weight[k] = 1 / total;
  return { ...req, objective: { kind: 'token', weight } };
}
