/**
 * From (task, example, tokenizer) to token ids, for evaluation and for training alike.
 *
 * Causal LMs follow MeZO's `encode_prompt` (large_models/utils.py):
 * - demonstrations: verbalize(demo, gold).strip(), joined by the task's separator ("\n\n");
 * - the prompt is stripped of spaces (`strip(' ')`), each verbalized candidate likewise;
 * - option length = len(tok(verbalized)) − len(tok(prompt)), both tokenized with the tokenizer's special
 *   tokens as HF `encode` does (OPT's BOS on both sides cancels);
 * - the full text (demos + separator + verbalized candidate, `.lstrip().strip(' ')`) is tokenized, cut on the
 *   left to the max length keeping the leading special tokens, and split into prompt = all but the last
 *   option-length tokens, continuation = those tokens.
 * Training uses the same sequences: classification as cross-entropy over the candidates' (mean) log-probs,
 * or token cross-entropy on `target` / the correct candidate.
 *
 * Masked LMs follow LM-BFF (masked-template.ts): the filled template, the mask position and the label-word
 * ids.
 */
import { LmtuneError } from '../util/errors.ts';
import type { TextTokenizer } from '../models/api.ts';
import { encodeMasked, labelWordIds } from './masked-template.ts';
import { candidateCount, type CausalTemplate, type Example, type Task } from './task.ts';

/** A prompt and the answer tokens scored after it; exactly a `ContinuationRequest` of the model API. */
export interface CandidateSequence {
  readonly prompt: number[];
  readonly continuation: number[];
}

/** A classification or multiple-choice example for a causal LM: one sequence per candidate. */
export interface ChoiceEncoding {
  readonly kind: 'choice';
  readonly candidates: CandidateSequence[];
  /** the index of the (first) correct candidate: the cross-entropy target */
  readonly label: number;
  /** every correct candidate (ReCoRD can have several) */
  readonly correct: readonly number[];
  /** with `calibrate`: the surface-form-competition sequences, one per candidate, without demonstrations */
  readonly calibration?: CandidateSequence[];
}

/** A generation example: the prompt to continue, gold answers, and the teacher-forced gold answer. */
export interface GenerationEncoding {
  readonly kind: 'generation';
  readonly prompt: number[];
  readonly answers: readonly string[];
  /** prompt + " {answers[0]}\n" split as a candidate: the training target */
  readonly target: CandidateSequence;
}

export interface MaskedEncoding {
  readonly kind: 'masked';
  readonly input: number[];
  readonly maskPos: number;
  /** one id per class, in class order */
  readonly labelWordIds: number[];
  readonly label: number;
}

export interface CausalEncodeOptions {
  /** in-context demonstrations (gold-labelled examples of the same task) */
  readonly demos?: readonly Example[];
  /** total length cap in tokens (default: none) */
  readonly maxLength?: number;
  /** generation: room kept for the answer (the prompt is cut to maxLength − maxNewTokens) */
  readonly maxNewTokens?: number;
  /** also encode the calibration sequences (classification / multiple choice) */
  readonly calibrate?: boolean;
}

/** Python's str.strip(' '): spaces only, not newlines. */
function stripSpaces(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && s[a] === ' ') a++;
  while (b > a && s[b - 1] === ' ') b--;
  return s.slice(a, b);
}

/** The special tokens `encode(text, {addSpecialTokens: true})` puts before the text (OPT/Llama BOS; none for GPT-2). */
export function specialPrefix(tok: TextTokenizer): number[] {
  const plain = tok.encode('a');
  const full = tok.encode('a', { addSpecialTokens: true });
  for (let s = 0; s + plain.length <= full.length; s++) {
    if (plain.every((id, j) => full[s + j] === id)) return full.slice(0, s);
  }
  return [];
}

/**
 * HF-style `encode` for causal scoring: the special prefix + the text's tokens. Special tokens a template
 * would append (an EOS) are left out: they would sit after the answer.
 */
function encodeWithPrefix(tok: TextTokenizer, prefix: readonly number[], text: string): number[] {
  return [...prefix, ...tok.encode(text)];
}

function truncateLeft(ids: number[], keep: number, maxLength: number | undefined, ex: Example): number[] {
  if (maxLength === undefined || ids.length <= maxLength) return ids;
  if (maxLength <= keep) throw new LmtuneError('CONFIG', `${ex.id}: a max length of ${maxLength} tokens (--max-length, or the model's context less the tokens to generate) leaves no room after ${keep} special tokens`, 'raise --max-length');
  return [...ids.slice(0, keep), ...ids.slice(ids.length - (maxLength - keep))];
}

/** The gold candidate a demonstration is verbalized with. */
function demoCandidate(task: Task, demo: Example): number {
  return task.kind === 'generation' ? 0 : demo.label;
}

/** The demonstrations as one text block (empty when there are none). */
export function demoBlock(task: Task, template: CausalTemplate, demos: readonly Example[]): string {
  return demos
    .map((d) => template.verbalize(d, demoCandidate(task, d)).trim())
    .join(task.demoSeparator)
    .trim();
}

/** The option length of `verbalized` after `prompt`: len(tok(verbalized)) − len(tok(prompt)). */
export function optionLength(tok: TextTokenizer, prefix: readonly number[], prompt: string, verbalized: string): number {
  return encodeWithPrefix(tok, prefix, verbalized).length - encodeWithPrefix(tok, prefix, prompt).length;
}

function splitCandidate(
  tok: TextTokenizer,
  prefix: readonly number[],
  finalText: string,
  optLen: number,
  maxLength: number | undefined,
  ex: Example,
): CandidateSequence {
  const full = encodeWithPrefix(tok, prefix, finalText);
  const ids = truncateLeft(full, prefix.length, maxLength, ex);
  if (optLen < 1) {
    throw new LmtuneError('DATA', `${ex.id}: the answer adds ${optLen} tokens after the prompt`, 'the candidate must add at least one token; check the template and data');
  }
  if (ids.length < full.length && ids.length - optLen <= prefix.length) {
    // truncation kept the answer but none of the input: the model would be scored on nothing
    throw new LmtuneError('CONFIG', `${ex.id}: a max length of ${maxLength} tokens cuts the whole input away (the answer alone takes ${optLen})`, 'raise --max-length');
  }
  let prompt = ids.slice(0, ids.length - optLen);
  if (prompt.length === 0) {
    // the first answer token needs a context: use the tokenizer's BOS (or EOS, GPT-2's <|endoftext|>)
    const ctx = tok.bosId ?? tok.eosId;
    if (ctx === null) throw new LmtuneError('DATA', `${ex.id}: empty prompt and the tokenizer has no BOS/EOS token to condition on`);
    prompt = [ctx];
  }
  return { prompt, continuation: ids.slice(ids.length - optLen) };
}

/** Encodes one example for a causal LM. */
export function encodeCausal(task: Task, ex: Example, tok: TextTokenizer, opts: CausalEncodeOptions = {}): ChoiceEncoding | GenerationEncoding {
  const template = task.causal;
  if (!template) {
    throw new LmtuneError('UNSUPPORTED', `task ${task.name} has no causal-LM template`, task.masked ? 'use a masked LM (RoBERTa) or define the task in a task file' : undefined);
  }
  const prefix = specialPrefix(tok);
  const demos = demoBlock(task, template, opts.demos ?? []);
  const withDemos = (text: string) => stripSpaces((demos + task.demoSeparator + text).trimStart());
  const unverbalized = stripSpaces(template.prompt(ex));

  if (task.kind === 'generation') {
    const room = opts.maxLength === undefined ? undefined : opts.maxLength - (opts.maxNewTokens ?? task.maxNewTokens);
    const prompt = truncateLeft(encodeWithPrefix(tok, prefix, withDemos(unverbalized)), prefix.length, room, ex);
    const gold = template.verbalize(ex, 0);
    const target = splitCandidate(tok, prefix, withDemos(gold), optionLength(tok, prefix, unverbalized, gold), opts.maxLength, ex);
    return { kind: 'generation', prompt, answers: ex.answers, target };
  }

  const n = candidateCount(task, ex);
  const promptLength = encodeWithPrefix(tok, prefix, unverbalized).length;
  const candidates: CandidateSequence[] = [];
  for (let c = 0; c < n; c++) {
    const verbalized = stripSpaces(template.verbalize(ex, c));
    const optLen = encodeWithPrefix(tok, prefix, verbalized).length - promptLength;
    candidates.push(splitCandidate(tok, prefix, withDemos(verbalized), optLen, opts.maxLength, ex));
  }
  let calibration: CandidateSequence[] | undefined;
  if (opts.calibrate) {
    if (!template.sfcPrompt || !template.sfcVerbalize) throw new LmtuneError('UNSUPPORTED', `task ${task.name} has no calibration template`);
    const sfcPrompt = stripSpaces(template.sfcPrompt(ex));
    calibration = [];
    for (let c = 0; c < n; c++) {
      const v = stripSpaces(template.sfcVerbalize(ex, c));
      calibration.push(splitCandidate(tok, prefix, v, optionLength(tok, prefix, sfcPrompt, v), opts.maxLength, ex));
    }
  }
  return { kind: 'choice', candidates, label: ex.label, correct: ex.correct, ...(calibration ? { calibration } : {}) };
}

/** Encodes one classification example for a masked LM. */
export function encodeForMaskedLM(task: Task, ex: Example, tok: TextTokenizer, opts: { maxLength?: number } = {}): MaskedEncoding {
  const t = task.masked;
  if (!t) {
    throw new LmtuneError('UNSUPPORTED', `task ${task.name} has no masked-LM template`, task.causal ? 'use a causal LM, or define the task in a task file with masked_prompt' : undefined);
  }
  const { input, maskPos } = encodeMasked(t.parts, t.texts(ex), tok, {
    maxLength: opts.maxLength ?? t.maxLength,
    ...(t.firstSentLimit !== undefined ? { firstSentLimit: t.firstSentLimit } : {}),
    ...(t.otherSentLimit !== undefined ? { otherSentLimit: t.otherSentLimit } : {}),
  });
  return { kind: 'masked', input, maskPos, labelWordIds: labelWordIds(t.labelWords, tok), label: ex.label };
}

/**
 * What a trainer optimizes for one example (MeZO's `--train_as_classification` / `--only_train_option`):
 * - classification on a causal LM: cross-entropy over the candidates, each scored by the mean log-prob of its
 *   answer tokens (`candidates`, target `label`);
 * - multiple choice (COPA, ReCoRD) and generation (SQuAD, DROP): token cross-entropy on the correct
 *   candidate's / gold answer's tokens only (`answer`);
 * - masked LM: cross-entropy over the label-word logits at the mask (`masked`).
 * Trained models are evaluated without demonstrations, so none are added here.
 */
export type TrainingEncoding =
  | { readonly kind: 'candidates'; readonly candidates: CandidateSequence[]; readonly label: number }
  | { readonly kind: 'answer'; readonly sequence: CandidateSequence }
  | MaskedEncoding;

export function encodeForTraining(
  task: Task,
  ex: Example,
  model: { readonly kind: 'causal' | 'masked'; readonly tokenizer: TextTokenizer },
  opts: { maxLength?: number } = {},
): TrainingEncoding {
  if (model.kind === 'masked') return encodeForMaskedLM(task, ex, model.tokenizer, opts);
  const enc = encodeCausal(task, ex, model.tokenizer, opts.maxLength !== undefined ? { maxLength: opts.maxLength } : {});
  if (enc.kind === 'generation') return { kind: 'answer', sequence: enc.target };
  if (task.kind === 'classification') return { kind: 'candidates', candidates: enc.candidates, label: enc.label };
  return { kind: 'answer', sequence: enc.candidates[enc.label]! };
}
