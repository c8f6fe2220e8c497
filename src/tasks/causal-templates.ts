/**
 * The OPT prompts of MeZO (Malladi et al. 2023), transcribed from large_models/templates.py
 * (princeton-nlp/MeZO; see ../../shared/specs/mezo.md §4). Each template says what text the model reads
 * (`prompt`) and the full text with a candidate answer (`verbalize`); the answer tokens are what the second
 * adds to the first, so the leading space of " great" comes from the template, as in the reference.
 * The `sfc*` variants are the reference's surface-form-competition calibration texts.
 *
 * Field names are the canonical ones the built-in parsers produce (builtin.ts).
 */
import type { CausalTemplate, Example } from './task.ts';

function f(ex: Example, name: string): string {
  const v = ex.fields[name];
  if (v === undefined) throw new Error(`internal: example ${ex.id} has no field "${name}"`);
  return v;
}

/** A fixed-label template: `prefix(ex)` + verbalizer word; `sep` sits between them in the verbalized text. */
function labelTemplate(words: readonly string[], prompt: (ex: Example) => string, sep: string, sfcPrompt: string): CausalTemplate {
  return {
    prompt,
    verbalize: (ex, c) => `${prompt(ex)}${sep}${words[c]!}`,
    sfcPrompt: () => sfcPrompt,
    sfcVerbalize: (_ex, c) => `${sfcPrompt}${sep}${words[c]!}`,
  };
}

/** SST2Template: "{sentence} It was" + " terrible"/" great"; the sentence is stripped. */
export const SST2_WORDS = ['terrible', 'great'] as const;
export const sst2Causal: CausalTemplate = labelTemplate(SST2_WORDS, (ex) => `${f(ex, 'sentence').trim()} It was`, ' ', ' It was');

/** RTETemplate (PromptSource): premise, question on the next line, answer after "\n" (no space). */
export const RTE_WORDS = ['Yes', 'No'] as const;
export const rteCausal: CausalTemplate = labelTemplate(
  RTE_WORDS,
  (ex) => `${f(ex, 'premise')}\nDoes this mean that "${f(ex, 'hypothesis')}" is true? Yes or No?\n`,
  '',
  '',
);

/** CBTemplate (PromptSource). */
export const CB_WORDS = ['Yes', 'No', 'Maybe'] as const;
export const cbCausal: CausalTemplate = labelTemplate(
  CB_WORDS,
  (ex) => `Suppose ${f(ex, 'premise')} Can we infer that "${f(ex, 'hypothesis')}"? Yes, No, or Maybe?\n`,
  '',
  '',
);

/** BoolQTemplateV3 (the MeZO default): "{passage} {Question?}\n" + Yes/No. */
export const BOOLQ_WORDS = ['Yes', 'No'] as const;
export function boolqQuestion(q: string): string {
  const withMark = q.endsWith('?') ? q : q + '?';
  return withMark.slice(0, 1).toUpperCase() + withMark.slice(1);
}
export const boolqCausal: CausalTemplate = labelTemplate(BOOLQ_WORDS, (ex) => `${f(ex, 'passage')} ${boolqQuestion(f(ex, 'question'))}\n`, '', '');

/** WSCTemplate (PromptSource); the pronoun is lower-cased. */
export const WSC_WORDS = ['No', 'Yes'] as const;
export const wscCausal: CausalTemplate = labelTemplate(
  WSC_WORDS,
  (ex) => `${f(ex, 'text')}\nIn the previous sentence, does the pronoun "${f(ex, 'span2').toLowerCase()}" refer to ${f(ex, 'span1')}? Yes or No?\n`,
  '',
  '',
);

/** WICTemplate (PromptSource). */
export const WIC_WORDS = ['No', 'Yes'] as const;
export const wicCausal: CausalTemplate = labelTemplate(
  WIC_WORDS,
  (ex) => `Does the word "${f(ex, 'word')}" have the same meaning in these two sentences? Yes, No?\n${f(ex, 'sentence1')}\n${f(ex, 'sentence2')}\n`,
  '',
  '',
);

/** MultiRCTemplate (PromptSource). */
export const MULTIRC_WORDS = ['No', 'Yes'] as const;
export const multircCausal: CausalTemplate = labelTemplate(
  MULTIRC_WORDS,
  (ex) => `${f(ex, 'paragraph')}\nQuestion: ${f(ex, 'question')}\nI found this answer "${f(ex, 'answer')}". Is that correct? Yes or No?\n`,
  '',
  '',
);

/**
 * CopaTemplate: premise without its final '.', then " so " (effect) or " because " (cause), then the
 * choice with its first word lower-cased unless it is "I".
 */
function copaConjunction(ex: Example): string {
  const q = f(ex, 'question');
  if (q === 'effect') return ' so ';
  if (q === 'cause') return ' because ';
  throw new Error(`internal: COPA question "${q}"`);
}
function copaPrompt(ex: Example): string {
  let premise = f(ex, 'premise').trimEnd();
  if (premise.endsWith('.')) premise = premise.slice(0, -1);
  return premise + copaConjunction(ex);
}
export function copaChoice(c: string): string {
  const words = c.split(' ');
  if (words[0] !== 'I') words[0] = words[0]!.toLowerCase();
  return words.join(' ');
}
export const copaCausal: CausalTemplate = {
  prompt: copaPrompt,
  verbalize: (ex, c) => copaPrompt(ex) + copaChoice(ex.candidates[c]!),
  sfcPrompt: (ex) => copaConjunction(ex).trim(),
  sfcVerbalize: (ex, c) => `${copaConjunction(ex).trim()} ${copaChoice(ex.candidates[c]!)}`,
};

/** ReCoRDTemplateGPT3: highlights become "- " bullets, then "\n- " + the query with the candidate entity. */
function recordPassage(ex: Example): string {
  return f(ex, 'passage').split('@highlight\n').join('- ');
}
function recordQuery(ex: Example, c: number): string {
  return f(ex, 'query').split('@placeholder').join(ex.candidates[c]!);
}
export const recordCausal: CausalTemplate = {
  prompt: (ex) => `${recordPassage(ex)}\n-`,
  verbalize: (ex, c) => `${recordPassage(ex)}\n- ${recordQuery(ex, c)}`,
  sfcPrompt: () => '-',
  sfcVerbalize: (ex, c) => `- ${recordQuery(ex, c)}`,
};

/** SQuADv2Template (used for SQuAD v1.1 too): the training target is " {answers[0]}\n". */
function squadPrompt(ex: Example): string {
  return `Title: ${f(ex, 'title')}\nContext: ${f(ex, 'context')}\nQuestion: ${f(ex, 'question').trim()}\nAnswer:`;
}
export const squadCausal: CausalTemplate = {
  prompt: squadPrompt,
  verbalize: (ex) => `${squadPrompt(ex)} ${ex.answers[0]!}\n`,
};

/** DROPTemplate: like SQuAD without the title. */
function dropPrompt(ex: Example): string {
  return `Passage: ${f(ex, 'passage')}\nQuestion: ${f(ex, 'question').trim()}\nAnswer:`;
}
export const dropCausal: CausalTemplate = {
  prompt: dropPrompt,
  verbalize: (ex) => `${dropPrompt(ex)} ${ex.answers[0]!}\n`,
};

/**
 * A causal prompt derived from an LM-BFF template whose mask comes after all the content (SST-5, MR, CR,
 * MPQA, Subj, AG News): the text before the mask is the prompt and " word" the answer; whatever follows the
 * mask (".", "</s>", " news.") is dropped. Not from a paper: MeZO released no OPT templates for these.
 */
export function causalFromMaskedPrefix(words: readonly string[], prefix: (ex: Example) => string): CausalTemplate {
  return labelTemplate(words, prefix, ' ', '');
}
