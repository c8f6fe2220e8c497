/**
 * Feature extraction for linear probes (Saunshi, Malladi & Arora, ICLR'21, `test_downstream.py`): for
 * each text, with the prompt appended, the model's state at the last real token gives
 *
 *   f       the final hidden state after the final norm (what multiplies Φ in the LM head)
 *   phi-p   the conditional mean Φᵀ softmax(Φ f), over the whole vocabulary
 *   subset  the logits f·φ_w of chosen words, in the order given (log p_w plus a per-example constant)
 *   p       the whole next-word distribution (optionally randomly projected)
 *
 * All of them come out of one graph per shape bucket attached to the model body (`runHead`); the
 * softmax is the engine's max-subtracted one, so a 50k-word vocabulary is stable in float32.
 */
import { LmtuneError } from '../util/errors.ts';
import type { Value } from '../engine/index.ts';
import { toFloat64 } from '../engine/index.ts';
import type { TransformerModel } from '../heads/model.ts';
import { packBatch, roundUp } from '../models/batch.ts';

export type FeatureKind = 'f' | 'phi-p' | 'subset' | 'p';
export const FEATURE_KINDS: readonly FeatureKind[] = ['f', 'phi-p', 'subset', 'p'];

export interface ExtractRequest {
  /** token ids of each text with its prompt appended (`encodeWithPrompt`) */
  sequences: readonly (readonly number[])[];
  /** what to return; subset features come once per named word list */
  kinds: readonly Exclude<FeatureKind, 'subset'>[];
  wordLists?: Readonly<Record<string, readonly number[]>>;
  /** rows per forward pass (default 16) */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ExtractedFeatures {
  n: number;
  /** [n, E] per kind, row-major float32 */
  byKind: Partial<Record<Exclude<FeatureKind, 'subset'>, Float32Array>>;
  /** [n, C] per word list */
  byWords: Record<string, Float32Array>;
  /** E (f, phi-p) and V (p) */
  hiddenDim: number;
  vocabSize: number;
}

/** The features f and the output embedding Φ of a causal model (refused for the others, by name). */
export function featureMaps(model: TransformerModel): { finalNorm: NonNullable<TransformerModel['arch']['finalNorm']>; outputEmbedding: NonNullable<TransformerModel['arch']['outputEmbedding']> } {
  const { finalNorm, outputEmbedding } = model.arch;
  if (!model.arch.causal || !finalNorm || !outputEmbedding) {
    throw new LmtuneError('UNSUPPORTED', `${model.dir ?? 'this model'} is a ${model.cfg.family} model; conditional-mean features need a causal LM whose head is a linear map of the final hidden state`, 'use a GPT-2, OPT, Llama or GPT-NeoX checkpoint');
  }
  return { finalNorm, outputEmbedding };
}

/** token ids of text + prompt, cut from the text's end so the prompt fits the model's positions */
export function encodeWithPrompt(model: TransformerModel, text: string, prompt: string): { ids: number[]; truncated: boolean } {
  const tok = model.tokenizer;
  if (!tok) throw new LmtuneError('TOKENIZER', `${model.dir ?? 'model'}: no tokenizer files in the folder`);
  const max = model.maxPositions;
  const whole = tok.encode(text + prompt, { addSpecialTokens: true });
  if (whole.length <= max) return { ids: whole, truncated: false };
  const head = tok.encode(text, { addSpecialTokens: true });
  const tail = prompt ? tok.encode(prompt) : [];
  if (tail.length >= max) throw new LmtuneError('CONFIG', `--prompt is ${tail.length} tokens, which leaves no room for the text in the model's ${max} positions`);
  return { ids: [...head.slice(0, max - tail.length), ...tail], truncated: true };
}

/** token ids of every text with the prompt appended; empty texts are an error naming them */
export function encodeTexts(model: TransformerModel, texts: readonly string[], prompt: string, ids?: readonly string[]): { sequences: number[][]; truncated: number } {
  const empty = texts.flatMap((t, i) => (t.trim() === '' ? [ids?.[i] ?? `text ${i}`] : []));
  if (empty.length) {
    throw new LmtuneError('DATA', `${empty.length} empty text${empty.length > 1 ? 's' : ''}: ${empty.slice(0, 5).join(', ')}${empty.length > 5 ? ', ...' : ''}`, 'drop them from the file, or pass --skip-empty');
  }
  const enc = texts.map((t) => encodeWithPrompt(model, t, prompt));
  return { sequences: enc.map((e) => e.ids), truncated: enc.filter((e) => e.truncated).length };
}

export async function extractFeatures(model: TransformerModel, req: ExtractRequest): Promise<ExtractedFeatures> {
  const { finalNorm, outputEmbedding } = featureMaps(model);
  const n = req.sequences.length;
  if (n === 0) throw new LmtuneError('DATA', 'no texts to extract features from');
  req.sequences.forEach((q, i) => {
    if (q.length === 0) throw new LmtuneError('DATA', `sequence ${i} has no tokens`);
    if (q.length > model.maxPositions) throw new LmtuneError('SHAPE', `sequence ${i} has ${q.length} tokens; the model has ${model.maxPositions} positions`);
  });
  const lists = Object.entries(req.wordLists ?? {});
  const V = model.cfg.vocabSize;
  for (const [name, ids] of lists) {
    if (ids.length === 0) throw new LmtuneError('CONFIG', `word list '${name}' is empty`);
    for (const w of ids) if (!(Number.isInteger(w) && w >= 0 && w < V)) throw new LmtuneError('CONFIG', `word list '${name}': token id ${w} is outside the vocabulary of ${V}`);
  }
  const bsz = req.batchSize ?? 16;
  const E = model.cfg.family === 'opt' ? model.cfg.wordEmbedProjDim : model.cfg.hiddenSize;
  const out: ExtractedFeatures = { n, byKind: {}, byWords: {}, hiddenDim: E, vocabSize: V };
  for (const k of req.kinds) out.byKind[k] = new Float32Array(n * (k === 'p' ? V : E));
  for (const [name, ids] of lists) out.byWords[name] = new Float32Array(n * ids.length);
  const key = `features|${[...req.kinds].sort().join(',')}|${lists.map(([name, ids]) => `${name}:${ids.length}`).join(',')}`;
  for (let s = 0; s < n; s += bsz) {
    const chunk = req.sequences.slice(s, s + bsz);
    const batch = packBatch(chunk, { side: 'right', padId: model.padId(), batch: bsz, seq: roundUp(Math.max(...chunk.map((q) => q.length)), 16) });
    const last = new BigInt64Array(bsz);
    chunk.forEach((q, b) => (last[b] = BigInt(b * batch.seq + q.length - 1)));
    const feeds: Record<string, BigInt64Array> = { feat_last: last };
    for (const [name, ids] of lists) feeds[`feat_words_${name}`] = BigInt64Array.from(ids, (x) => BigInt(x));
    const res = await model.runHead(
      key,
      batch,
      (h) => {
        const f = finalNorm(h.ctx, h.rows(h.g.input('feat_last', [bsz], 'i64')));
        const phi = outputEmbedding(h.ctx);
        const logits = f.matmul(phi, { transB: true });
        const outputs: Record<string, Value> = {};
        if (req.kinds.includes('f')) outputs.f = f;
        const p = req.kinds.includes('p') || req.kinds.includes('phi-p') ? logits.softmax(-1) : null;
        if (req.kinds.includes('p')) outputs.p = p!;
        if (req.kinds.includes('phi-p')) outputs['phi-p'] = p!.matmul(phi);
        for (const [name, ids] of lists) {
          const cand = h.g.input(`feat_words_${name}`, [ids.length], 'i64');
          outputs[`words_${name}`] = h.g.apply1('gather', [logits.transpose([1, 0]), cand]).transpose([1, 0]);
        }
        return outputs;
      },
      feeds,
    );
    const rows = chunk.length;
    for (const k of req.kinds) {
      const width = k === 'p' ? V : E;
      out.byKind[k]!.set(Float32Array.from(toFloat64(res[k]!).subarray(0, rows * width)), s * width);
    }
    for (const [name, ids] of lists) out.byWords[name]!.set(Float32Array.from(toFloat64(res[`words_${name}`]!).subarray(0, rows * ids.length)), s * ids.length);
    req.onProgress?.(s + rows, n);
  }
  return out;
}
