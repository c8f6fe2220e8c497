/**
 * The built-in tasks: MeZO's OPT tasks (SST-2, RTE, CB, BoolQ, WSC, WIC, MultiRC, COPA, ReCoRD, SQuAD,
 * DROP; mezo.md §4) and LM-BFF's masked-LM tasks (SST-2, SST-5, MR, CR, MPQA, Subj, TREC, AG News, MNLI,
 * SNLI, QNLI, RTE; kernel-and-features.md A3). A task name gives the causal template to causal LMs and
 * the masked template to masked LMs; SST-2 and RTE have both.
 *
 * Each parser accepts the field names of the shared copies (../../shared/data) and of the HF/GLUE files
 * they were taken from, and turns one row into validated examples.
 */
import { LmtuneError } from '../util/errors.ts';
import {
  BOOLQ_WORDS,
  boolqCausal,
  CB_WORDS,
  cbCausal,
  causalFromMaskedPrefix,
  copaCausal,
  dropCausal,
  MULTIRC_WORDS,
  multircCausal,
  recordCausal,
  RTE_WORDS,
  rteCausal,
  squadCausal,
  SST2_WORDS,
  sst2Causal,
  WIC_WORDS,
  wicCausal,
  WSC_WORDS,
  wscCausal,
} from './causal-templates.ts';
import { getLabel, getString, getStringList, labelIndex } from './fields.ts';
import { parseLmBffTemplate } from './masked-template.ts';
import { dataError, type RawRecord } from './readers.ts';
import type { CausalTemplate, Example, MaskedTemplate, MetricName, Task, TaskKind } from './task.ts';

const LABEL = ['label'];
const SENTENCE = ['sentence', 'text'];
const PREMISE = ['premise', 'sentence1'];
const HYPOTHESIS = ['hypothesis', 'sentence2'];
const BOOL_ALIASES = { '1': 'true', '0': 'false', True: 'true', False: 'false' };

function idOf(rec: RawRecord, sub?: string): string {
  return `${rec.file}:${rec.line}${sub === undefined ? '' : `#${sub}`}`;
}

function classExample(rec: RawRecord, fields: Record<string, string>, label: number): Example {
  return { id: idOf(rec), fields, label, candidates: [], correct: [label], answers: [] };
}

interface TaskParts {
  name: string;
  kind: TaskKind;
  metric?: MetricName;
  labelNames?: readonly string[];
  labelWords?: readonly string[];
  parse: (rec: RawRecord) => Example[];
  causal?: CausalTemplate;
  masked?: MaskedTemplate;
  provenance: string;
}

function task(p: TaskParts): Task {
  return {
    name: p.name,
    kind: p.kind,
    metric: p.metric ?? (p.kind === 'generation' ? 'f1' : 'accuracy'),
    labelNames: p.labelNames ?? [],
    labelWords: p.labelWords ?? [],
    parse: p.parse,
    ...(p.causal ? { causal: p.causal } : {}),
    ...(p.masked ? { masked: p.masked } : {}),
    demoSeparator: '\n\n',
    maxNewTokens: 50,
    stop: ['\n'],
    provenance: p.provenance,
  };
}

function masked(
  template: string,
  labelWords: readonly string[],
  fieldNames: readonly string[],
  opts: { maxLength?: number; firstSentLimit?: number; otherSentLimit?: number } = {},
): MaskedTemplate {
  return {
    source: template,
    parts: parseLmBffTemplate(template),
    texts: (ex) => fieldNames.map((n) => ex.fields[n]!),
    labelWords,
    maxLength: opts.maxLength ?? 128,
    ...(opts.firstSentLimit !== undefined ? { firstSentLimit: opts.firstSentLimit } : {}),
    ...(opts.otherSentLimit !== undefined ? { otherSentLimit: opts.otherSentLimit } : {}),
  };
}

// ---- single-sentence classification -------------------------------------------------------------

function singleSentence(
  name: string,
  labelNames: readonly string[],
  maskedT: MaskedTemplate,
  causal: CausalTemplate | undefined,
  provenance: string,
  opts: { textAliases?: readonly string[]; labelAliases?: readonly string[]; metric?: MetricName } = {},
): Task {
  const textAliases = opts.textAliases ?? SENTENCE;
  const labelAliases = opts.labelAliases ?? LABEL;
  return task({
    name,
    kind: 'classification',
    ...(opts.metric ? { metric: opts.metric } : {}),
    labelNames,
    labelWords: maskedT.labelWords,
    // empty text is allowed: CR has 4 and MPQA 3 such rows, which LM-BFF encodes as an empty sentence
    parse: (rec) => [classExample(rec, { sentence: getString(rec, 'sentence', textAliases, { allowEmpty: true }) }, getLabel(rec, labelAliases, labelNames))],
    ...(causal ? { causal } : {}),
    masked: maskedT,
    provenance,
  });
}

const IT_WAS = '*cls**sent_0*_It_was*mask*.*sep+*';
const THIS_IS = '*cls**sent_0*_This_is*mask*.*sep+*';
const SENT_WORDS_5 = ['terrible', 'bad', 'okay', 'good', 'great'] as const;
const BINARY = ['0', '1'] as const;

const prefixOf = (suffix: string) => (ex: Example) => `${ex.fields['sentence']!}${suffix}`;

const sst2 = singleSentence(
  'sst2',
  BINARY,
  masked(IT_WAS, SST2_WORDS, ['sentence']),
  sst2Causal,
  'causal: MeZO large_models/templates.py SST2Template; masked: LM-BFF run_fewshot.sh SST-2',
);
const sst5 = singleSentence(
  'sst5',
  ['0', '1', '2', '3', '4'],
  masked(IT_WAS, SENT_WORDS_5, ['sentence'], { firstSentLimit: 110, otherSentLimit: 20 }),
  causalFromMaskedPrefix(SENT_WORDS_5, prefixOf(' It was')),
  'masked: LM-BFF run_fewshot.sh sst-5; causal: derived (text before the mask)',
);
const mr = singleSentence(
  'mr',
  BINARY,
  masked(IT_WAS, SST2_WORDS, ['sentence'], { firstSentLimit: 110, otherSentLimit: 50 }),
  causalFromMaskedPrefix(SST2_WORDS, prefixOf(' It was')),
  'masked: LM-BFF run_fewshot.sh mr; causal: derived',
);
const cr = singleSentence(
  'cr',
  BINARY,
  masked(IT_WAS, SST2_WORDS, ['sentence'], { firstSentLimit: 110, otherSentLimit: 50 }),
  causalFromMaskedPrefix(SST2_WORDS, prefixOf(' It was')),
  'masked: LM-BFF run_fewshot.sh cr; causal: derived',
);
const mpqa = singleSentence(
  'mpqa',
  BINARY,
  masked(IT_WAS, SST2_WORDS, ['sentence'], { firstSentLimit: 110 }),
  causalFromMaskedPrefix(SST2_WORDS, prefixOf(' It was')),
  'masked: LM-BFF run_fewshot.sh mpqa; causal: derived',
);
const SUBJ_WORDS = ['subjective', 'objective'] as const;
const subj = singleSentence(
  'subj',
  BINARY,
  masked(THIS_IS, SUBJ_WORDS, ['sentence'], { firstSentLimit: 110, otherSentLimit: 50 }),
  causalFromMaskedPrefix(SUBJ_WORDS, prefixOf(' This is')),
  'masked: LM-BFF run_fewshot.sh subj; causal: derived',
);
const TREC_WORDS = ['Description', 'Entity', 'Expression', 'Human', 'Location', 'Number'] as const;
const trec = singleSentence(
  'trec',
  ['0', '1', '2', '3', '4', '5'],
  masked('*cls**mask*:*+sent_0**sep+*', TREC_WORDS, ['sentence'], { firstSentLimit: 110 }),
  undefined,
  'masked: LM-BFF run_fewshot.sh trec (label ids 0..5 = DESC ENTY ABBR HUM LOC NUM as in Kim\'s TREC files)',
);
const AG_WORDS = ['world', 'sports', 'business', 'tech'] as const;
const agnews = singleSentence(
  'agnews',
  ['1', '2', '3', '4'],
  masked('*cls**sent_0*_This_article_is_about*mask*_news.*sep+*', AG_WORDS, ['sentence'], { maxLength: 256, firstSentLimit: 240 }),
  causalFromMaskedPrefix(AG_WORDS, prefixOf(' This article is about')),
  'masked: kernel-and-features.md A3 (text = the Description column); causal: derived',
  { textAliases: ['description', 'text', 'sentence'], labelAliases: ['label', 'Class Index'] },
);

// ---- sentence-pair classification -----------------------------------------------------------------

const NLI_TEMPLATE = '*cls**sent-_0*?*mask*,*+sentl_1**sep+*';

function pairTask(
  name: string,
  labelNames: readonly string[],
  valueAliases: Readonly<Record<string, string>>,
  a: { name: string; aliases: readonly string[] },
  b: { name: string; aliases: readonly string[] },
  maskedT: MaskedTemplate | undefined,
  causal: CausalTemplate | undefined,
  labelWords: readonly string[],
  provenance: string,
  labelAliases: readonly string[] = LABEL,
): Task {
  return task({
    name,
    kind: 'classification',
    labelNames,
    labelWords,
    parse: (rec) => [
      classExample(
        rec,
        { [a.name]: getString(rec, a.name, a.aliases), [b.name]: getString(rec, b.name, b.aliases) },
        getLabel(rec, labelAliases, labelNames, valueAliases),
      ),
    ],
    ...(causal ? { causal } : {}),
    ...(maskedT ? { masked: maskedT } : {}),
    provenance,
  });
}

const P = { name: 'premise', aliases: PREMISE };
const H = { name: 'hypothesis', aliases: HYPOTHESIS };
const NLI3 = ['contradiction', 'entailment', 'neutral'] as const;
const NLI3_WORDS = ['No', 'Yes', 'Maybe'] as const;

const mnli = pairTask('mnli', NLI3, {}, P, H, masked(NLI_TEMPLATE, NLI3_WORDS, ['premise', 'hypothesis'], { maxLength: 256, firstSentLimit: 240 }), undefined, NLI3_WORDS, 'masked: LM-BFF run_fewshot.sh MNLI', ['gold_label', 'label']);
const snli = pairTask('snli', NLI3, {}, P, H, masked(NLI_TEMPLATE, NLI3_WORDS, ['premise', 'hypothesis'], { maxLength: 256 }), undefined, NLI3_WORDS, 'masked: LM-BFF run_fewshot.sh SNLI', ['gold_label', 'label']);
const qnli = pairTask(
  'qnli',
  ['entailment', 'not_entailment'],
  { '0': 'entailment', '1': 'not_entailment' },
  { name: 'question', aliases: ['question'] },
  { name: 'sentence', aliases: ['sentence'] },
  masked(NLI_TEMPLATE, ['Yes', 'No'], ['question', 'sentence']),
  undefined,
  ['Yes', 'No'],
  'masked: LM-BFF run_fewshot.sh QNLI',
);
/** RTE classes: 0 entailment / 1 not_entailment (HF ids); causal words Yes/No (MeZO), masked the same (LM-BFF). */
const rte = pairTask(
  'rte',
  ['entailment', 'not_entailment'],
  { '0': 'entailment', '1': 'not_entailment' },
  P,
  H,
  masked(NLI_TEMPLATE, RTE_WORDS, ['premise', 'hypothesis'], { maxLength: 256, firstSentLimit: 240 }),
  rteCausal,
  RTE_WORDS,
  'causal: MeZO templates.py RTETemplate; masked: LM-BFF run_fewshot.sh RTE',
);
const cb = pairTask(
  'cb',
  ['entailment', 'contradiction', 'neutral'],
  { '0': 'entailment', '1': 'contradiction', '2': 'neutral' },
  P,
  H,
  undefined,
  cbCausal,
  CB_WORDS,
  'causal: MeZO templates.py CBTemplate',
);

// ---- SuperGLUE tasks with their own shapes ----------------------------------------------------------

/** BoolQ: class 0 = true ("Yes"), class 1 = false ("No"), as MeZO's candidates ["Yes", "No"]. */
const boolq = task({
  name: 'boolq',
  kind: 'classification',
  labelNames: ['true', 'false'],
  labelWords: BOOLQ_WORDS,
  parse: (rec) => [
    classExample(
      rec,
      { passage: getString(rec, 'passage', ['passage']), question: getString(rec, 'question', ['question']) },
      getLabel(rec, ['label', 'answer'], ['true', 'false'], BOOL_ALIASES),
    ),
  ],
  causal: boolqCausal,
  provenance: 'causal: MeZO templates.py BoolQTemplateV3 (the default)',
});

const wsc = task({
  name: 'wsc',
  kind: 'classification',
  labelNames: ['false', 'true'],
  labelWords: WSC_WORDS,
  parse: (rec) => [
    classExample(
      rec,
      {
        text: getString(rec, 'text', ['text']),
        span1: getString(rec, 'span1', ['target.span1_text', 'span1_text']),
        span2: getString(rec, 'span2', ['target.span2_text', 'span2_text']),
      },
      getLabel(rec, LABEL, ['false', 'true'], BOOL_ALIASES),
    ),
  ],
  causal: wscCausal,
  provenance: 'causal: MeZO templates.py WSCTemplate',
});

const wic = task({
  name: 'wic',
  kind: 'classification',
  labelNames: ['false', 'true'],
  labelWords: WIC_WORDS,
  parse: (rec) => [
    classExample(
      rec,
      { word: getString(rec, 'word', ['word']), sentence1: getString(rec, 'sentence1', ['sentence1']), sentence2: getString(rec, 'sentence2', ['sentence2']) },
      getLabel(rec, LABEL, ['false', 'true'], BOOL_ALIASES),
    ),
  ],
  causal: wicCausal,
  provenance: 'causal: MeZO templates.py WICTemplate',
});

/**
 * MultiRC: one example per (question, answer). Accepts the flat HF rows {paragraph, question, answer,
 * label} and the SuperGLUE task files, one passage per line with nested questions and answers.
 */
function parseMultirc(rec: RawRecord): Example[] {
  const labels = ['0', '1'];
  const passage = rec.value['passage'];
  if (passage !== null && typeof passage === 'object' && !Array.isArray(passage)) {
    const p = passage as Record<string, unknown>;
    if (typeof p['text'] !== 'string') throw dataError(rec.file, rec.line, 'passage.text must be a string');
    if (!Array.isArray(p['questions']) || p['questions'].length === 0) throw dataError(rec.file, rec.line, 'passage.questions must be a non-empty list');
    const out: Example[] = [];
    p['questions'].forEach((q: unknown, qi: number) => {
      const qo = (q ?? {}) as Record<string, unknown>;
      if (typeof qo['question'] !== 'string') throw dataError(rec.file, rec.line, `passage.questions[${qi}].question must be a string`);
      if (!Array.isArray(qo['answers'])) throw dataError(rec.file, rec.line, `passage.questions[${qi}].answers must be a list`);
      qo['answers'].forEach((a: unknown, ai: number) => {
        const ao = (a ?? {}) as Record<string, unknown>;
        if (typeof ao['text'] !== 'string') throw dataError(rec.file, rec.line, `passage.questions[${qi}].answers[${ai}].text must be a string`);
        const label = labelIndex(rec, `passage.questions[${qi}].answers[${ai}].label`, ao['label'], labels, { true: '1', false: '0' });
        out.push({
          id: idOf(rec, `${qi}.${ai}`),
          fields: { paragraph: p['text'] as string, question: qo['question'] as string, answer: ao['text'] },
          label,
          candidates: [],
          correct: [label],
          answers: [],
        });
      });
    });
    return out;
  }
  return [
    classExample(
      rec,
      { paragraph: getString(rec, 'paragraph', ['paragraph', 'passage']), question: getString(rec, 'question', ['question']), answer: getString(rec, 'answer', ['answer']) },
      getLabel(rec, LABEL, labels, { true: '1', false: '0' }),
    ),
  ];
}
const multirc = task({
  name: 'multirc',
  kind: 'classification',
  labelNames: ['0', '1'],
  labelWords: MULTIRC_WORDS,
  parse: parseMultirc,
  causal: multircCausal,
  provenance: 'causal: MeZO templates.py MultiRCTemplate (accuracy over answers, as MeZO reports)',
});

const copa = task({
  name: 'copa',
  kind: 'multiple-choice',
  parse: (rec) => {
    const question = getString(rec, 'question', ['question']);
    if (question !== 'cause' && question !== 'effect') throw dataError(rec.file, rec.line, `field "question" must be "cause" or "effect", got ${JSON.stringify(question)}`);
    const candidates = [getString(rec, 'choice1', ['choice1']), getString(rec, 'choice2', ['choice2'])];
    const label = getLabel(rec, LABEL, ['0', '1']);
    return [{ id: idOf(rec), fields: { premise: getString(rec, 'premise', ['premise']), question }, label, candidates, correct: [label], answers: [] }];
  },
  causal: copaCausal,
  provenance: 'causal: MeZO templates.py CopaTemplate',
});

/**
 * ReCoRD: candidates are the passage's entities, gold the answers (several may be right). Accepts the
 * flat HF rows {passage, query, entities, answers} and SuperGLUE task files ({passage: {text, entities:
 * [{start, end}]}, qas: [{query, answers: [{text}]}]}, `end` inclusive), one example per query.
 */
function parseRecord(rec: RawRecord): Example[] {
  const passage = rec.value['passage'];
  if (passage !== null && typeof passage === 'object' && !Array.isArray(passage)) {
    const p = passage as Record<string, unknown>;
    const text = p['text'];
    if (typeof text !== 'string') throw dataError(rec.file, rec.line, 'passage.text must be a string');
    if (!Array.isArray(p['entities'])) throw dataError(rec.file, rec.line, 'passage.entities must be a list of {start, end}');
    const entities = (p['entities'] as unknown[]).map((e, i) => {
      const eo = (e ?? {}) as Record<string, unknown>;
      const s = eo['start'];
      const t = eo['end'];
      if (typeof s !== 'number' || typeof t !== 'number' || s < 0 || t < s || t >= text.length) {
        throw dataError(rec.file, rec.line, `passage.entities[${i}] must have 0 <= start <= end < ${text.length}`);
      }
      return text.slice(s, t + 1);
    });
    const qas = rec.value['qas'];
    if (!Array.isArray(qas) || qas.length === 0) throw dataError(rec.file, rec.line, 'qas must be a non-empty list');
    return qas.map((qa: unknown, qi: number) => {
      const qo = (qa ?? {}) as Record<string, unknown>;
      if (typeof qo['query'] !== 'string') throw dataError(rec.file, rec.line, `qas[${qi}].query must be a string`);
      if (!Array.isArray(qo['answers'])) throw dataError(rec.file, rec.line, `qas[${qi}].answers must be a list`);
      const answers = (qo['answers'] as unknown[]).map((a, ai) => {
        const t = ((a ?? {}) as Record<string, unknown>)['text'];
        if (typeof t !== 'string') throw dataError(rec.file, rec.line, `qas[${qi}].answers[${ai}].text must be a string`);
        return t;
      });
      return recordExample(rec, text, qo['query'] as string, entities, answers, String(qi));
    });
  }
  return [
    recordExample(
      rec,
      getString(rec, 'passage', ['passage']),
      getString(rec, 'query', ['query']),
      getStringList(rec, 'entities', ['entities']),
      getStringList(rec, 'answers', ['answers']),
    ),
  ];
}
function recordExample(rec: RawRecord, passage: string, query: string, entityList: readonly string[], answers: readonly string[], sub?: string): Example {
  if (!query.includes('@placeholder')) throw dataError(rec.file, rec.line, 'query has no @placeholder');
  const candidates = [...new Set(entityList)];
  const correct = [...new Set(answers)].map((a) => {
    const i = candidates.indexOf(a);
    if (i < 0) throw dataError(rec.file, rec.line, `answer ${JSON.stringify(a)} is not among the entities`);
    return i;
  });
  if (correct.length === 0) throw dataError(rec.file, rec.line, 'no answers');
  return { id: idOf(rec, sub), fields: { passage, query }, label: correct[0]!, candidates, correct, answers: [...answers] };
}
const record = task({
  name: 'record',
  kind: 'multiple-choice',
  parse: parseRecord,
  causal: recordCausal,
  provenance: 'causal: MeZO templates.py ReCoRDTemplateGPT3; correct when the chosen entity is any gold answer',
});

const squad = task({
  name: 'squad',
  kind: 'generation',
  parse: (rec) => {
    const answers = getStringList(rec, 'answers', ['answers', 'answer']);
    return [
      {
        id: idOf(rec),
        fields: { title: getString(rec, 'title', ['title']), context: getString(rec, 'context', ['context']), question: getString(rec, 'question', ['question']) },
        label: -1,
        candidates: [],
        correct: [],
        answers,
      },
    ];
  },
  causal: squadCausal,
  provenance: 'causal: MeZO templates.py SQuADv2Template; SQuAD-normalized F1',
});

const drop = task({
  name: 'drop',
  kind: 'generation',
  parse: (rec) => {
    const answers = getStringList(rec, 'answers', ['answers_spans', 'answers', 'answer']);
    return [
      {
        id: idOf(rec),
        fields: { passage: getString(rec, 'passage', ['passage', 'context']), question: getString(rec, 'question', ['question']) },
        label: -1,
        candidates: [],
        correct: [],
        answers,
      },
    ];
  },
  causal: dropCausal,
  provenance: 'causal: MeZO templates.py DROPTemplate; SQuAD-style F1 (not the official DROP metric)',
});

export const BUILTIN_TASKS: readonly Task[] = [sst2, sst5, mr, cr, mpqa, subj, trec, agnews, mnli, snli, qnli, rte, cb, boolq, wsc, wic, multirc, copa, record, squad, drop];

function canonicalName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '');
}
const ALIASES: Record<string, string> = { agnew: 'agnews', ag: 'agnews', squadv1: 'squad', squadv11: 'squad' };

/** A built-in task by name; case, '-' and '_' do not matter ("SST-2" = "sst2", "ag_news" = "agnews"). */
export function builtinTask(name: string): Task | undefined {
  const c = canonicalName(name);
  const target = ALIASES[c] ?? c;
  return BUILTIN_TASKS.find((t) => t.name === target);
}

export function getBuiltinTask(name: string): Task {
  const t = builtinTask(name);
  if (!t) {
    throw new LmtuneError('CONFIG', `unknown task "${name}"`, `built-in tasks: ${BUILTIN_TASKS.map((x) => x.name).join(', ')}; or pass a task file (.json/.yaml)`);
  }
  return t;
}

