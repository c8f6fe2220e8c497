/**
 * Training batches of chat rows (`--task chat`, src/tasks/chat.ts): the loss of an example is the mean
 * token cross-entropy over its supervised tokens (the assistant turns, their EOS and the "\n" after),
 * as HF's causal-LM loss computes it for one example, which is what LESS differentiates per example:
 *
 *   ℓ_b = (1/n_b) Σ_{t: supervised_b[t]} −log p(ids_b[t] | ids_b[<t])
 *   reduction 'mean' (training):  L = (1/E) Σ_b ℓ_b     over the E real examples of the batch
 *   reduction 'sum' (features):   L = Σ_b ℓ_b           so the per-example gradient of L is ∇ℓ_b exactly
 *
 * Both are the model's token objective with weight 1/(E·n_b) resp. 1/n_b on example b's targets.
 */
import { LmtuneError } from '../util/errors.ts';
import { packBatch, roundUp } from '../models/batch.ts';
import { padTargets, type LossRequest } from '../heads/objective.ts';
import type { TransformerModel } from '../heads/model.ts';
import { encodeChat, type ChatTruncation, type EncodedChat } from '../tasks/chat.ts';
import { isChatTask, loadChatExamples, type ChatExample } from '../tasks/chat-task.ts';
import type { Example, Task } from '../tasks/index.ts';

export type ChatEncoding = EncodedChat & { readonly kind: 'chat' };

export type ChatReduction = 'mean' | 'sum';

export interface ChatLossRequest extends LossRequest {
  /** for each target row k, the batch row (example) it belongs to; −1 for padding targets */
  exampleOfTarget: Int32Array;
  /** supervised tokens per example (n_b) */
  supervisedCounts: number[];
}

/**
 * One batch of encoded chat rows as a loss request: `rows` batch rows (≥ encs.length; the rest is
 * padding, so every batch of a run shares a shape bucket), the sequence padded to a multiple of 16.
 */
export function chatLossRequest(encs: readonly EncodedChat[], model: TransformerModel, rows: number, opts: { reduction?: ChatReduction } = {}): ChatLossRequest {
  if (encs.length === 0) throw new LmtuneError('DATA', 'empty chat batch');
  if (rows < encs.length) throw new LmtuneError('CONFIG', `${encs.length} examples do not fit in ${rows} batch rows`);
  const reduction = opts.reduction ?? 'mean';
  const seq = roundUp(Math.max(...encs.map((e) => e.ids.length)), 16);
  const batch = packBatch(
    encs.map((e) => e.ids),
    { side: 'right', padId: model.padId(), batch: rows, seq },
  );
  const index: number[] = [];
  const label: number[] = [];
  const owner: number[] = [];
  const weights: number[] = [];
  const supervisedCounts: number[] = [];
  encs.forEach((e, b) => {
    if (e.supervised.length !== e.ids.length) throw new LmtuneError('SHAPE', `chat example ${b}: ${e.supervised.length} mask entries for ${e.ids.length} ids`);
    let n = 0;
    for (let t = 1; t < e.ids.length; t++) if (e.supervised[t]) n++;
    if (n === 0) throw new LmtuneError('DATA', `chat example ${b} has no supervised token`);
    const w = reduction === 'mean' ? 1 / (encs.length * n) : 1 / n;
    for (let t = 1; t < e.ids.length; t++) {
      if (!e.supervised[t]) continue;
      index.push(b * batch.seq + t - 1);
      label.push(e.ids[t]!);
      owner.push(b);
      weights.push(w);
    }
    supervisedCounts.push(n);
  });
  const K = roundUp(index.length, 16);
  const weight = new Float32Array(K);
  weight.set(weights);
  const exampleOfTarget = new Int32Array(K).fill(-1);
  exampleOfTarget.set(owner);
  return { batch, targets: padTargets(index, label, K), objective: { kind: 'token', weight }, exampleOfTarget, supervisedCounts };
}

/** The training encoding of a chat example: the one stored by `loadChatTrainingData`, or a fresh one. */
export function chatEncodingOf(ex: ChatExample, model: TransformerModel, maxLength?: number): ChatEncoding {
  if (ex.encoded && (maxLength === undefined || maxLength === ex.encodedMaxLength)) return { kind: 'chat', ...ex.encoded };
  if (!model.tokenizer) throw new LmtuneError('TOKENIZER', 'this model folder has no tokenizer; chat data needs one');
  return { kind: 'chat', ...encodeChat(ex.chat, model.tokenizer, Math.min(maxLength ?? model.maxPositions, model.maxPositions)) };
}

export interface ChatDataReport {
  /** rows read (all files) */
  rows: number;
  /** rows longer than the max length, cut on the right (their loss covers what is left) */
  truncated: number;
  /** rows left out with --skip-invalid: invalid rows, and rows with every assistant token cut away */
  skipped: { file: string; line: number; reason: string }[];
  maxLength: number;
  truncation: ChatTruncation;
}

/**
 * Loads chat files for training and encodes every row up front (storing the encoding on the example),
 * so truncation is counted before the first step and a bad row fails the run before it starts.
 */
export class ChatTrainingData {
  readonly report: ChatDataReport;
  private readonly skipInvalid: boolean;
  constructor(
    private readonly model: TransformerModel,
    opts: { maxLength?: number | null; skipInvalid?: boolean; truncation?: ChatTruncation } = {},
  ) {
    this.skipInvalid = opts.skipInvalid ?? false;
    this.report = { rows: 0, truncated: 0, skipped: [], maxLength: Math.min(opts.maxLength ?? model.maxPositions, model.maxPositions), truncation: opts.truncation ?? 'right' };
  }

  static forTask(task: Task, model: TransformerModel, opts: { maxLength?: number | null; skipInvalid?: boolean; truncation?: ChatTruncation } = {}): ChatTrainingData | null {
    return isChatTask(task) ? new ChatTrainingData(model, opts) : null;
  }

  load(file: string): Example[] {
    const tok = this.model.tokenizer;
    if (!tok) throw new LmtuneError('TOKENIZER', 'this model folder has no tokenizer; chat data needs one');
    const { examples, skipped } = loadChatExamples(file, { skipInvalid: this.skipInvalid });
    const r = this.report;
    r.rows += examples.length + skipped.length;
    for (const s of skipped) r.skipped.push({ file, ...s });
    const kept: ChatExample[] = [];
    let cut = 0;
    for (const ex of examples) {
      try {
        ex.encoded = encodeChat(ex.chat, tok, r.maxLength, { truncation: r.truncation });
        ex.encodedMaxLength = r.maxLength;
      } catch (e) {
        if (!this.skipInvalid || !(e instanceof LmtuneError) || e.code !== 'DATA') throw e;
        r.skipped.push({ file, line: ex.chat.line, reason: e.message });
        cut++;
        continue;
      }
      if (ex.encoded.truncated) r.truncated++;
      kept.push(ex);
    }
    if (kept.length === 0) throw new LmtuneError('DATA', `${file}: no usable chat rows (${skipped.length} invalid, ${cut} cut away at max length ${r.maxLength})`);
    return kept;
  }

  message(): string {
    const r = this.report;
    return `chat data: ${r.rows} rows, ${r.truncated} truncated to ${r.maxLength} tokens (on the ${r.truncation}), ${r.skipped.length} skipped`;
  }
}
