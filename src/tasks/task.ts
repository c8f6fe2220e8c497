/**
 * What a task is: how raw rows become examples, how an example becomes text for a causal LM (prompt +
 * candidate answers) and for a masked LM (a template with one mask and label words), and which metric
 * scores it. Built-in tasks live in `builtin.ts`; user tasks come from `custom-task.ts`. Everything above
 * this layer (evaluation, trainers, kernels) works with these types only.
 */
import type { LanguageModel } from '../models/api.ts';
import type { EvalOptions, EvalResult } from './evaluate.ts';
import type { MaskedPart } from './masked-template.ts';
import type { RawRecord } from './readers.ts';

/**
 * classification: a fixed label set shared by all examples (scored through label words);
 * multiple-choice: each example brings its own candidate texts (COPA, ReCoRD);
 * generation: free text scored against gold answers (SQuAD, DROP).
 */
export type TaskKind = 'classification' | 'multiple-choice' | 'generation';

export type MetricName = 'accuracy' | 'macro-f1' | 'f1' | 'em';

/** One evaluation or training example, already validated against its task's schema. */
export interface Example {
  /** where it came from: "file:line", plus "#n" for the n-th example expanded from one line (MultiRC, ReCoRD) */
  readonly id: string;
  /** the template inputs, by the task's canonical field names */
  readonly fields: Readonly<Record<string, string>>;
  /** classification: the class index; multiple choice: the first correct candidate; generation: -1 */
  readonly label: number;
  /** multiple choice: the candidate texts, in file order; otherwise empty */
  readonly candidates: readonly string[];
  /** every correct candidate (classification: [label]; ReCoRD may have several); generation: empty */
  readonly correct: readonly number[];
  /** generation: the gold answers (the first one is the training target); otherwise empty */
  readonly answers: readonly string[];
}

/**
 * The text side of a causal-LM task, mirroring MeZO's `Template` (large_models/templates.py):
 * `prompt` is its `encode`, `verbalize` its `verbalize`. The scored answer is whatever `verbalize`
 * adds after `prompt` (measured in tokens, see encode.ts), so leading spaces belong to the template.
 */
export interface CausalTemplate {
  prompt(ex: Example): string;
  /** prompt followed by candidate `c` (class index or candidate index); generation tasks use answers[0] */
  verbalize(ex: Example, c: number): string;
  /** surface-form-competition calibration: the same texts without the example's content */
  sfcPrompt?(ex: Example): string;
  sfcVerbalize?(ex: Example, c: number): string;
}

/** The masked-LM side: an LM-BFF template (one `<mask>`), the sentences it refers to, and label words. */
export interface MaskedTemplate {
  /** the template in LM-BFF's notation (`*cls**sent_0*_It_was*mask*.*sep+*`) or compiled from a task file */
  readonly source: string;
  readonly parts: readonly MaskedPart[];
  /** sentence i of the template (`*sent_i*`) for this example */
  texts(ex: Example): string[];
  /** one word per class; the scored token is the single token of ' ' + word */
  readonly labelWords: readonly string[];
  readonly maxLength: number;
  readonly firstSentLimit?: number;
  readonly otherSentLimit?: number;
}

export interface Task {
  readonly name: string;
  readonly kind: TaskKind;
  /** the headline metric */
  readonly metric: MetricName;
  /** classification: the raw label values in class order (e.g. ['entailment', 'not_entailment']) */
  readonly labelNames: readonly string[];
  /** classification: the causal verbalizer, one word per class (for display and result files) */
  readonly labelWords: readonly string[];
  /** validates one raw row and turns it into examples (usually one; MultiRC/ReCoRD expand a passage) */
  parse(rec: RawRecord): Example[];
  readonly causal?: CausalTemplate;
  readonly masked?: MaskedTemplate;
  /** joins in-context demonstrations (MeZO `train_sep`) */
  readonly demoSeparator: string;
  /** generation: at most this many new tokens, cut at any stop string */
  readonly maxNewTokens: number;
  readonly stop: readonly string[];
  /** where the template comes from (paper / reference file), for result files and docs */
  readonly provenance: string;
  /** a task that scores its examples itself (chat rows, chat-eval.ts): `evaluate()` hands them over */
  readonly evaluate?: (model: LanguageModel, examples: readonly Example[], opts: EvalOptions) => Promise<EvalResult>;
}

/** How many candidates `ex` has under `task` (classes for classification). */
export function candidateCount(task: Task, ex: Example): number {
  if (task.kind === 'classification') return task.labelNames.length;
  if (task.kind === 'multiple-choice') return ex.candidates.length;
  return 0;
}
