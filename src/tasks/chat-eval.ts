/**
 * Evaluation of chat rows (`lmtune eval --task chat`). The context is the row's messages up to its last
 * user turn (a final assistant turn, if any, is the reference reply), rendered in the Tulu template with
 * "<|assistant|>\n" appended, BOS first, as in training (chat.ts).
 *
 * - rows with `choices` + `label`: each choice, stripped and followed by EOS, is scored as the assistant
 *   reply with `continuationLogprobs`: mean (default) or sum of its token log-probs; prediction = argmax,
 *   first on ties; metric accuracy. EOS is part of the scored reply so that a choice which is a prefix
 *   of another ("entity" / "entity type") is not scored as if the reply could go on.
 * - other rows: greedy generation, cut at EOS or the next role header, stripped, scored against
 *   `answers` (or, when absent, the final assistant turn) with SQuAD EM and F1 (metrics.ts).
 * Contexts longer than the max length lose their oldest tokens (the BOS stays); those rows are counted
 * in `truncated`. A choice is scored in the window training would see for the row with that choice as
 * its reply under `--truncation left` (encodeChat: room for the reply in steps of 8 tokens, the window
 * ending after the "\n" that follows EOS), so a model trained that way is asked what it was taught.
 * Generation gets room for the longest gold answer plus EOS and 8 tokens, at most 64.
 */
import { LmtuneError } from '../util/errors.ts';
import type { CausalLM, ContinuationRequest, LanguageModel } from '../models/api.ts';
import { ASSISTANT_HEADER, chatPrefix, encodeChat, eosText, pyStrip, renderTulu, type ChatMessage, type ChatRow } from './chat.ts';
import type { EvalOptions, EvalResult, ExamplePrediction } from './evaluate.ts';
import { argmax, exactMatch, mean, squadF1 } from './metrics.ts';
import type { Example } from './task.ts';

const MAX_NEW_TOKENS = 64;
const ROLE_HEADERS = ['<|user|>', '<|assistant|>', '<|system|>'];

/** What one chat row asks of the evaluator. */
export type ChatEvalItem =
  | { kind: 'choice'; row: ChatRow; context: ChatMessage[]; choices: string[]; label: number }
  | { kind: 'generation'; row: ChatRow; context: ChatMessage[]; answers: string[] };

function where(row: ChatRow): string {
  return `${row.file ?? '<chat>'}:${row.line}`;
}

/** Splits a row into its context and what is scored; a DATA error naming file:line when it cannot be evaluated. */
export function chatEvalItem(row: ChatRow): ChatEvalItem {
  const msgs = row.messages;
  const last = msgs[msgs.length - 1]!;
  const context = last.role === 'assistant' ? msgs.slice(0, -1) : msgs;
  const end = context[context.length - 1];
  if (!end || end.role !== 'user') {
    throw new LmtuneError('DATA', `${where(row)}: the messages to evaluate must end with a user turn (optionally followed by the reference assistant reply)`);
  }
  if (row.choices) {
    if (row.label === undefined) throw new LmtuneError('DATA', `${where(row)}: "choices" without "label"`, 'add the correct choice as "label"');
    const label = row.choices.indexOf(row.label);
    if (label < 0) throw new LmtuneError('DATA', `${where(row)}: "label" ${JSON.stringify(row.label)} is not one of the choices ${JSON.stringify(row.choices)}`);
    return { kind: 'choice', row, context, choices: row.choices, label };
  }
  const answers = row.answers ?? (last.role === 'assistant' ? [last.content] : undefined);
  if (!answers) {
    throw new LmtuneError('DATA', `${where(row)}: nothing to score: no "choices" + "label", no "answers" and no final assistant turn`, 'add "choices" and "label" (ranking) or "answers" (generation)');
  }
  return { kind: 'generation', row, context, answers };
}

/** keeps the prefix (BOS) and the last tokens so that prompt + `room` fits in maxLength */
function cutLeft(ids: number[], keep: number, budget: number): { ids: number[]; cut: boolean } {
  if (ids.length <= budget) return { ids, cut: false };
  if (budget <= keep) throw new LmtuneError('CONFIG', `max length leaves no room for the context after ${keep} special tokens`);
  return { ids: [...ids.slice(0, keep), ...ids.slice(ids.length - (budget - keep))], cut: true };
}

export async function evaluateChat(model: LanguageModel, examples: readonly Example[], opts: EvalOptions = {}): Promise<EvalResult> {
  if (model.kind !== 'causal') throw new LmtuneError('UNSUPPORTED', 'chat evaluation needs a causal LM');
  if ((opts.shots ?? 0) > 0) throw new LmtuneError('UNSUPPORTED', 'chat rows carry their own context: --shots does not apply to --task chat');
  if (opts.calibrate) throw new LmtuneError('UNSUPPORTED', '--calibrate does not apply to --task chat');
  const items = examples.map((ex) => {
    const row = (ex as { chat?: ChatRow }).chat;
    if (!row) throw new LmtuneError('CONFIG', `${ex.id}: not a chat example`);
    return chatEvalItem(row);
  });
  const tok = model.tokenizer;
  const eos = eosText(tok);
  const prefix = chatPrefix(tok);
  const maxLength = Math.min(opts.maxLength ?? model.maxPositions, model.maxPositions);
  const scoring = opts.scoring ?? 'mean';
  const batchSize = Math.max(1, opts.batchSize ?? 8);
  const start = performance.now();
  const report = (done: number) => {
    const secs = (performance.now() - start) / 1000;
    opts.onProgress?.({ done, total: items.length, examplesPerSecond: secs > 0 ? done / secs : 0 });
  };

  let truncated = 0;
  const predictions: ExamplePrediction[] = new Array(items.length);
  const right: number[] = [];
  const f1s: number[] = [];
  const ems: number[] = [];
  let done = 0;
  for (let b = 0; b < items.length; b += batchSize) {
    const batch = items.slice(b, b + batchSize);
    const reqs: ContinuationRequest[] = [];
    const owners: number[] = [];
    for (let j = 0; j < batch.length; j++) {
      const it = batch[j]!;
      if (it.kind !== 'choice') continue;
      const context = renderTulu(it.context, eos) + ASSISTANT_HEADER;
      const promptLength = prefix.length + tok.encode(context).length;
      let cut = false;
      for (const c of it.choices) {
        const full = [...prefix, ...tok.encode(context + pyStrip(c) + eos)];
        const n = full.length - promptLength;
        if (n < 1) throw new LmtuneError('DATA', `${where(it.row)}: choice ${JSON.stringify(c)} adds no tokens after the context`);
        // scored in the window training sees for this row with c as its reply under --truncation left
        // (encodeChat), up to the reply's EOS: the same tokens at the same positions
        const trained = encodeChat({ ...it.row, promptCompletion: undefined, messages: [...it.context, { role: 'assistant', content: c }] }, tok, maxLength, { truncation: 'left' });
        const window = trained.ids.slice(0, trained.ids.lastIndexOf(tok.eosId!) + 1);
        if (window.length - n <= prefix.length) {
          throw new LmtuneError('DATA', `${where(it.row)}: choice ${JSON.stringify(c)} alone has ${n} tokens (with EOS), which leaves no room for the context in the max length ${maxLength}`);
        }
        const continuation = window.slice(window.length - n);
        if (continuation.some((id, i) => id !== full[full.length - n + i])) throw new LmtuneError('RUNTIME', `${where(it.row)}: choice ${JSON.stringify(c)} tokenizes differently inside the training window`);
        cut ||= trained.truncated;
        reqs.push({ prompt: window.slice(0, window.length - n), continuation });
        owners.push(b + j);
      }
      if (cut) truncated++;
    }
    const lps = reqs.length ? await (model as CausalLM).continuationLogprobs(reqs) : [];
    if (lps.length !== reqs.length) throw new LmtuneError('RUNTIME', `model returned ${lps.length} results for ${reqs.length} requests`);
    let k = 0;
    for (let j = 0; j < batch.length; j++) {
      const it = batch[j]!;
      const i = b + j;
      if (it.kind === 'choice') {
        const scores = it.choices.map(() => {
          const lp = lps[k]!;
          if (owners[k++] !== i) throw new LmtuneError('RUNTIME', 'chat evaluation: request bookkeeping is off');
          let s = 0;
          for (const x of lp) s += x;
          return scoring === 'sum' ? s : s / lp.length;
        });
        if (scores.some((s) => !Number.isFinite(s))) throw new LmtuneError('NUMERIC', `${where(it.row)}: non-finite choice score ${JSON.stringify(scores)}`);
        const p = argmax(scores);
        const ok = p === it.label ? 1 : 0;
        right.push(ok);
        predictions[i] = { id: where(it.row), prediction: p, gold: [it.label], score: ok, candidateScores: scores };
      } else {
        const longest = Math.max(...it.answers.map((a) => tok.encode(pyStrip(a)).length));
        const room = Math.min(MAX_NEW_TOKENS, longest + 1 + 8, maxLength - 1);
        const ctx = [...prefix, ...tok.encode(renderTulu(it.context, eos) + ASSISTANT_HEADER)];
        const p = cutLeft(ctx, prefix.length, maxLength - room);
        if (p.cut) truncated++;
        const raw = await (model as CausalLM).generate(p.ids, { maxNewTokens: room, stop: [eos, ...ROLE_HEADERS] });
        const text = pyStrip(cutAtAny(raw, [eos, ...ROLE_HEADERS]));
        const f1 = squadF1(text, it.answers);
        f1s.push(f1);
        ems.push(exactMatch(text, it.answers) ? 1 : 0);
        predictions[i] = { id: where(it.row), prediction: text, gold: it.answers, score: f1 };
      }
      done++;
    }
    report(done);
  }
  const metrics: Record<string, number> = {};
  if (right.length) metrics['accuracy'] = mean(right);
  if (f1s.length) {
    metrics['f1'] = mean(f1s);
    metrics['em'] = mean(ems);
  }
  const metric = right.length ? 'accuracy' : 'f1';
  return { task: 'chat', metric, value: metrics[metric]!, n: items.length, metrics, predictions, truncated };
}

function cutAtAny(text: string, stops: readonly string[]): string {
  let end = text.length;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}
