/**
 * Evaluation of a language model on a task: the scoring rules of the papers behind one function.
 *
 * - causal LM, classification / multiple choice: each candidate's answer tokens are scored with
 *   `continuationLogprobs`; the score is their mean log-prob (MeZO) or sum; with `calibrate`, the sum minus
 *   the sum under the content-free calibration prompt (MeZO's SFC). Prediction = argmax, first on ties.
 * - masked LM, classification: the label-word logits at the mask; prediction = argmax.
 * - causal LM, generation: greedy decoding up to the task's max new tokens (and the context size), cut at
 *   the stop strings and trimmed; SQuAD F1 (and EM).
 * In-context learning: `shots` demonstrations per test example, freshly drawn from `demoPool` by the
 * example's own seeded stream (sampling.ts); the test example itself is never its own demonstration.
 *
 * The library never prints: progress goes to `onProgress`.
 */
import { LmtuneError } from '../util/errors.ts';
import type { CausalLM, ContinuationRequest, LanguageModel, MaskedLM } from '../models/api.ts';
import { encodeCausal, encodeForMaskedLM, type ChoiceEncoding, type GenerationEncoding } from './encode.ts';
import { labelWordIds } from './masked-template.ts';
import { accuracy, argmax, exactMatch, macroF1, mean, recordScores, squadF1 } from './metrics.ts';
import { demoRng, sampleDemos } from './sampling.ts';
import type { Example, MetricName, Task } from './task.ts';

export type Scoring = 'mean' | 'sum';

export interface EvalProgress {
  readonly done: number;
  readonly total: number;
  readonly examplesPerSecond: number;
}

export interface EvalOptions {
  /** in-context demonstrations per test example (default 0) */
  readonly shots?: number;
  /** where demonstrations come from (default: the evaluated examples, each excluding itself) */
  readonly demoPool?: readonly Example[];
  /** seed of the demonstration streams (default 0) */
  readonly seed?: number;
  /** causal candidate score: mean (default, MeZO) or sum of the answer-token log-probs */
  readonly scoring?: Scoring;
  /** surface-form-competition calibration (causal LMs) */
  readonly calibrate?: boolean;
  /** examples per model call (default 8) */
  readonly batchSize?: number;
  /** token cap for inputs (default: the model's maxPositions; masked LMs: the template's max length) */
  readonly maxLength?: number;
  readonly onProgress?: (p: EvalProgress) => void;
}

export interface ExamplePrediction {
  readonly id: string;
  /** classification / multiple choice: the predicted index; generation: the generated text */
  readonly prediction: number | string;
  /** classification / multiple choice: the correct indices; generation: the gold answers */
  readonly gold: readonly number[] | readonly string[];
  /** classification / multiple choice: right or wrong; generation: token F1 */
  readonly score: number;
  /** per-candidate scores (classification / multiple choice) */
  readonly candidateScores?: readonly number[];
}

export interface EvalResult {
  readonly task: string;
  readonly metric: MetricName;
  readonly value: number;
  readonly n: number;
  /** every metric computed (accuracy and macro-F1 for classification, F1 and EM for generation, ...) */
  readonly metrics: Readonly<Record<string, number>>;
  readonly predictions: readonly ExamplePrediction[];
  /** rows whose input was cut to the max length (chat evaluation reports it) */
  readonly truncated?: number;
}

export async function evaluate(model: LanguageModel, task: Task, examples: readonly Example[], opts: EvalOptions = {}): Promise<EvalResult> {
  if (examples.length === 0) throw new LmtuneError('DATA', `no examples to evaluate for task ${task.name}`);
  if (task.evaluate) return task.evaluate(model, examples, opts);
  const shots = opts.shots ?? 0;
  if (!Number.isInteger(shots) || shots < 0) throw new LmtuneError('CONFIG', `shots must be a non-negative integer, got ${shots}`);
  const batchSize = Math.max(1, opts.batchSize ?? 8);
  const start = performance.now();
  const report = (done: number) => {
    const secs = (performance.now() - start) / 1000;
    opts.onProgress?.({ done, total: examples.length, examplesPerSecond: secs > 0 ? done / secs : 0 });
  };

  if (model.kind === 'masked') {
    if (shots > 0) throw new LmtuneError('UNSUPPORTED', 'in-context demonstrations are implemented for causal LMs only', 'drop --shots for a masked LM');
    if (opts.calibrate) throw new LmtuneError('UNSUPPORTED', 'calibration is implemented for causal LMs only');
    if (task.kind !== 'classification') throw new LmtuneError('UNSUPPORTED', `task ${task.name} (${task.kind}) needs a causal LM`);
    const preds = await scoreMasked(model, task, examples, batchSize, opts.maxLength, report);
    return classificationResult(task, examples, preds);
  }

  const demosFor = demoSampler(examples, opts.demoPool, shots, opts.seed ?? 0);
  const maxLength = Math.min(opts.maxLength ?? model.maxPositions, model.maxPositions);
  if (task.kind === 'generation') {
    return generate(model, task, examples, demosFor, maxLength, report);
  }
  const preds = await scoreChoices(model, task, examples, demosFor, { maxLength, batchSize, scoring: opts.scoring ?? 'mean', calibrate: opts.calibrate ?? false }, report);
  return classificationResult(task, examples, preds);
}

type DemoSampler = (ex: Example, index: number) => Example[];

function demoSampler(examples: readonly Example[], pool: readonly Example[] | undefined, shots: number, seed: number): DemoSampler {
  if (shots === 0) return () => [];
  const p = pool ?? examples;
  const members = new Set(p);
  return (ex, i) => {
    const available = p.length - (members.has(ex) ? 1 : 0);
    if (available < shots) {
      throw new LmtuneError('DATA', `${shots} demonstrations requested but the demonstration pool has only ${available} other examples`, 'lower --shots or pass a larger --train file');
    }
    return sampleDemos(p, shots, demoRng(seed, i), ex);
  };
}

export interface ChoicePrediction {
  readonly prediction: number;
  readonly scores: number[];
}

async function scoreChoices(
  model: CausalLM,
  task: Task,
  examples: readonly Example[],
  demosFor: DemoSampler,
  o: { maxLength: number; batchSize: number; scoring: Scoring; calibrate: boolean },
  report: (done: number) => void,
): Promise<ChoicePrediction[]> {
  const out: ChoicePrediction[] = [];
  for (let b = 0; b < examples.length; b += o.batchSize) {
    const batch = examples.slice(b, b + o.batchSize);
    const encs = batch.map(
      (ex, j) => encodeCausal(task, ex, model.tokenizer, { demos: demosFor(ex, b + j), maxLength: o.maxLength, calibrate: o.calibrate }) as ChoiceEncoding,
    );
    const reqs: ContinuationRequest[] = [];
    for (const e of encs) {
      reqs.push(...e.candidates);
      if (e.calibration) reqs.push(...e.calibration);
    }
    const lps = await model.continuationLogprobs(reqs);
    if (lps.length !== reqs.length) throw new LmtuneError('RUNTIME', `model returned ${lps.length} results for ${reqs.length} requests`);
    let k = 0;
    for (const e of encs) {
      const n = e.candidates.length;
      const main = lps.slice(k, k + n);
      k += n;
      let scores: number[];
      if (e.calibration) {
        const cal = lps.slice(k, k + n);
        k += n;
        scores = main.map((lp, c) => sum(lp) - sum(cal[c]!));
      } else scores = main.map((lp) => (o.scoring === 'sum' ? sum(lp) : sum(lp) / lp.length));
      if (scores.some((s) => !Number.isFinite(s))) throw new LmtuneError('NUMERIC', `non-finite candidate score ${JSON.stringify(scores)}`, 'the model produced NaN/Inf log-probs');
      out.push({ prediction: argmax(scores), scores });
    }
    report(out.length);
  }
  return out;
}

function sum(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s;
}

async function scoreMasked(
  model: MaskedLM,
  task: Task,
  examples: readonly Example[],
  batchSize: number,
  maxLength: number | undefined,
  report: (done: number) => void,
): Promise<ChoicePrediction[]> {
  const ids = labelWordIds(task.masked?.labelWords ?? [], model.tokenizer);
  const cap = Math.min(maxLength ?? task.masked?.maxLength ?? model.maxPositions, model.maxPositions);
  const out: ChoicePrediction[] = [];
  for (let b = 0; b < examples.length; b += batchSize) {
    const batch = examples.slice(b, b + batchSize);
    const inputs = batch.map((ex) => encodeForMaskedLM(task, ex, model.tokenizer, { maxLength: cap }).input);
    const logits = await model.maskLogits(inputs, ids);
    for (const l of logits) {
      const scores = Array.from(l);
      if (scores.some((s) => !Number.isFinite(s))) throw new LmtuneError('NUMERIC', `non-finite label-word logits ${JSON.stringify(scores)}`);
      out.push({ prediction: argmax(scores), scores });
    }
    report(out.length);
  }
  return out;
}

/** Metrics of a classification / multiple-choice run from its per-example predictions (merging eval slices reuses it). */
export function classificationResult(task: Task, examples: readonly Example[], preds: readonly ChoicePrediction[]): EvalResult {
  const predictions: ExamplePrediction[] = examples.map((ex, i) => ({
    id: ex.id,
    prediction: preds[i]!.prediction,
    gold: ex.correct,
    score: ex.correct.includes(preds[i]!.prediction) ? 1 : 0,
    candidateScores: preds[i]!.scores,
  }));
  const p = preds.map((x) => x.prediction);
  const metrics: Record<string, number> = { accuracy: accuracy(p, examples.map((e) => e.correct)) };
  if (task.kind === 'classification') metrics['macro-f1'] = macroF1(p, examples.map((e) => e.label));
  if (task.kind === 'multiple-choice' && examples.some((e) => e.correct.length > 1 || e.answers.length > 0)) {
    // ReCoRD: the official EM/F1 of the chosen entity against the answer strings
    const s = examples.map((e, i) => recordScores(e.candidates[p[i]!]!, e.answers.length ? e.answers : e.correct.map((c) => e.candidates[c]!)));
    metrics['em'] = mean(s.map((x) => x.em));
    metrics['f1'] = mean(s.map((x) => x.f1));
  }
  const value = metrics[task.metric];
  if (value === undefined) throw new LmtuneError('CONFIG', `metric ${task.metric} does not apply to task ${task.name}`);
  return { task: task.name, metric: task.metric, value, n: examples.length, metrics, predictions };
}

async function generate(
  model: CausalLM,
  task: Task,
  examples: readonly Example[],
  demosFor: DemoSampler,
  maxLength: number,
  report: (done: number) => void,
): Promise<EvalResult> {
  const predictions: ExamplePrediction[] = [];
  const f1s: number[] = [];
  const ems: number[] = [];
  for (let i = 0; i < examples.length; i++) {
    const ex = examples[i]!;
    const enc = encodeCausal(task, ex, model.tokenizer, { demos: demosFor(ex, i), maxLength, maxNewTokens: task.maxNewTokens }) as GenerationEncoding;
    const room = Math.min(task.maxNewTokens, maxLength - enc.prompt.length);
    const raw = room > 0 ? await model.generate(enc.prompt, { maxNewTokens: room, stop: task.stop }) : '';
    const text = cutAtStop(raw, task.stop).trim();
    const f1 = squadF1(text, ex.answers);
    f1s.push(f1);
    ems.push(exactMatch(text, ex.answers) ? 1 : 0);
    predictions.push({ id: ex.id, prediction: text, gold: ex.answers, score: f1 });
    report(i + 1);
  }
  const metrics = { f1: mean(f1s), em: mean(ems) };
  return { task: task.name, metric: task.metric, value: metrics[task.metric as 'f1' | 'em'], n: examples.length, metrics, predictions };
}

/** The text before the first stop string (models cut there already; this guards the contract). */
export function cutAtStop(text: string, stop: readonly string[]): string {
  let end = text.length;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}
