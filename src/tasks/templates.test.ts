/**
 * Golden strings: each built-in template renders exactly the text of the specs (mezo.md §4 for the OPT
 * prompts, kernel-and-features.md A3 / mezo.md §4 for the LM-BFF masked templates), including where the
 * label word's leading space comes from. The expected strings are written out from the spec tables, not
 * produced by the code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getBuiltinTask } from './builtin.ts';
import { renderMasked } from './masked-template.ts';
import type { RawRecord } from './readers.ts';
import type { Example, Task } from './task.ts';

function one(task: Task, value: Record<string, unknown>): Example {
  const rec: RawRecord = { file: 'golden.jsonl', line: 1, value };
  const exs = task.parse(rec);
  assert.equal(exs.length, 1);
  return exs[0]!;
}

/** The answer text a candidate adds after the prompt. */
function answers(task: Task, ex: Example, n: number): string[] {
  const p = task.causal!.prompt(ex);
  return Array.from({ length: n }, (_, c) => {
    const v = task.causal!.verbalize(ex, c);
    assert.ok(v.startsWith(p), `verbalized text must extend the prompt: ${JSON.stringify(v)}`);
    return v.slice(p.length);
  });
}

test('SST-2 (OPT): "{sentence} It was" + " terrible" / " great" with the leading space', () => {
  const t = getBuiltinTask('SST-2');
  const ex = one(t, { sentence: '  a gorgeous , witty film \r', label: 1 });
  assert.equal(t.causal!.prompt(ex), 'a gorgeous , witty film It was');
  assert.deepEqual(answers(t, ex, 2), [' terrible', ' great']);
  assert.equal(ex.label, 1);
  assert.equal(t.causal!.sfcPrompt!(ex), ' It was');
  assert.equal(t.causal!.sfcVerbalize!(ex, 1), ' It was great');
});

test('RTE (OPT): premise, question line, answer right after the newline (0 Yes, 1 No)', () => {
  const t = getBuiltinTask('rte');
  const ex = one(t, { premise: 'Dana lives in Paris.', hypothesis: 'Dana lives in France.', label: 'not_entailment' });
  assert.equal(t.causal!.prompt(ex), 'Dana lives in Paris.\nDoes this mean that "Dana lives in France." is true? Yes or No?\n');
  assert.deepEqual(answers(t, ex, 2), ['Yes', 'No']);
  assert.equal(ex.label, 1);
  // GLUE TSV spelling of the same row
  assert.equal(one(t, { index: '0', sentence1: 'a.', sentence2: 'b', label: 'entailment' }).label, 0);
});

test('CB (OPT): "Suppose ... Can we infer that ...? Yes, No, or Maybe?\\n" (0 Yes, 1 No, 2 Maybe)', () => {
  const t = getBuiltinTask('cb');
  const ex = one(t, { premise: 'It rained.', hypothesis: 'the ground is wet', label: 'neutral' });
  assert.equal(t.causal!.prompt(ex), 'Suppose It rained. Can we infer that "the ground is wet"? Yes, No, or Maybe?\n');
  assert.deepEqual(answers(t, ex, 3), ['Yes', 'No', 'Maybe']);
  assert.equal(ex.label, 2);
  assert.equal(one(t, { premise: 'p', hypothesis: 'h', label: 'contradiction' }).label, 1);
});

test('BoolQ (OPT, template V3): question capitalized with "?" added, then "\\n" + Yes/No', () => {
  const t = getBuiltinTask('boolq');
  const ex = one(t, { passage: 'Ethanol fuel -- all biomass.', question: 'is ethanol a fuel', label: true });
  assert.equal(t.causal!.prompt(ex), 'Ethanol fuel -- all biomass. Is ethanol a fuel?\n');
  assert.deepEqual(answers(t, ex, 2), ['Yes', 'No']);
  assert.equal(ex.label, 0); // true -> "Yes"
  assert.equal(one(t, { passage: 'p', question: 'Already?', answer: false }).label, 1);
  assert.equal(t.causal!.prompt(one(t, { passage: 'p', question: 'Already?', answer: false })), 'p Already?\n');
});

test('WSC (OPT): the pronoun is lower-cased; 0 No, 1 Yes', () => {
  const t = getBuiltinTask('wsc');
  const ex = one(t, { text: 'Mark told Pete he was late.', target: { span1_text: 'Pete', span2_text: 'He', span1_index: 2, span2_index: 3 }, label: false });
  assert.equal(t.causal!.prompt(ex), 'Mark told Pete he was late.\nIn the previous sentence, does the pronoun "he" refer to Pete? Yes or No?\n');
  assert.deepEqual(answers(t, ex, 2), ['No', 'Yes']);
  assert.equal(ex.label, 0);
});

test('WIC (OPT)', () => {
  const t = getBuiltinTask('wic');
  const ex = one(t, { word: 'class', sentence1: 'An emerging professional class.', sentence2: 'It showed real class.', label: true });
  assert.equal(
    t.causal!.prompt(ex),
    'Does the word "class" have the same meaning in these two sentences? Yes, No?\nAn emerging professional class.\nIt showed real class.\n',
  );
  assert.deepEqual(answers(t, ex, 2), ['No', 'Yes']);
  assert.equal(ex.label, 1);
});

test('MultiRC (OPT): one example per answer from a nested SuperGLUE passage', () => {
  const t = getBuiltinTask('multirc');
  const rec: RawRecord = {
    file: 'm.jsonl',
    line: 7,
    value: {
      idx: 0,
      passage: {
        text: 'Sam ate.',
        questions: [{ question: 'Who ate?', idx: 0, answers: [{ text: 'Sam', idx: 0, label: 1 }, { text: 'Kim', idx: 1, label: 0 }] }],
      },
    },
  };
  const exs = t.parse(rec);
  assert.deepEqual(
    exs.map((e) => [e.id, e.label]),
    [
      ['m.jsonl:7#0.0', 1],
      ['m.jsonl:7#0.1', 0],
    ],
  );
  assert.equal(t.causal!.prompt(exs[1]!), 'Sam ate.\nQuestion: Who ate?\nI found this answer "Kim". Is that correct? Yes or No?\n');
  assert.deepEqual(answers(t, exs[0]!, 2), ['No', 'Yes']);
});

test('COPA (OPT): premise without its final ".", " so "/" because ", choice lower-cased unless "I"', () => {
  const t = getBuiltinTask('copa');
  const ex = one(t, { premise: 'The man turned on the faucet.', choice1: 'The toilet filled with water.', choice2: 'Water flowed from the spout.', question: 'effect', label: 1 });
  assert.equal(t.causal!.prompt(ex), 'The man turned on the faucet so ');
  assert.deepEqual(answers(t, ex, 2), ['the toilet filled with water.', 'water flowed from the spout.']);
  assert.deepEqual([ex.label, ex.correct], [1, [1]]);
  const cause = one(t, { premise: 'I was tired.', choice1: 'I stayed up late.', choice2: 'My Bed was soft.', question: 'cause', label: 0 });
  assert.equal(t.causal!.verbalize(cause, 0), 'I was tired because I stayed up late.');
  assert.equal(t.causal!.verbalize(cause, 1), 'I was tired because my Bed was soft.');
  assert.equal(t.causal!.sfcVerbalize!(cause, 0), 'because I stayed up late.');
});

test('ReCoRD (OPT): "@highlight\\n" becomes "- ", then "\\n- " + query with the entity; several gold answers', () => {
  const t = getBuiltinTask('record');
  const ex = one(t, {
    passage: 'Paris hosted it.\n@highlight\nFrance won\n@highlight\nParis cheered',
    query: '@placeholder celebrated the win',
    entities: ['Paris', 'France', 'Paris'],
    answers: ['France', 'Paris'],
  });
  assert.deepEqual(ex.candidates, ['Paris', 'France']);
  assert.deepEqual(ex.correct, [1, 0]);
  assert.equal(t.causal!.prompt(ex), 'Paris hosted it.\n- France won\n- Paris cheered\n-');
  assert.deepEqual(answers(t, ex, 2), [' Paris celebrated the win', ' France celebrated the win']);
});

test('ReCoRD official task-file rows expand per query, entity spans are end-inclusive', () => {
  const t = getBuiltinTask('record');
  const text = 'Kim met Lee.';
  const exs = t.parse({
    file: 'r.jsonl',
    line: 3,
    value: { passage: { text, entities: [{ start: 0, end: 2 }, { start: 8, end: 10 }] }, qas: [{ query: '@placeholder left', answers: [{ start: 8, end: 10, text: 'Lee' }] }] },
  });
  assert.deepEqual(exs[0]!.candidates, ['Kim', 'Lee']);
  assert.deepEqual(exs[0]!.correct, [1]);
});

test('SQuAD and DROP (OPT): "...\\nAnswer:" + " {answer}\\n" as the training target', () => {
  const sq = getBuiltinTask('squad');
  const ex = one(sq, { title: 'Normans', context: 'The Normans were in Normandy.', question: ' Where were they? ', answers: { text: ['Normandy', 'in Normandy'], answer_start: [20, 17] } });
  assert.equal(sq.causal!.prompt(ex), 'Title: Normans\nContext: The Normans were in Normandy.\nQuestion: Where were they?\nAnswer:');
  assert.equal(sq.causal!.verbalize(ex, 0).slice(sq.causal!.prompt(ex).length), ' Normandy\n');
  assert.deepEqual(ex.answers, ['Normandy', 'in Normandy']);
  const dr = getBuiltinTask('drop');
  const d = one(dr, { passage: 'Bears won 21-7.', question: 'How many points did the Bears score?', answers_spans: { spans: ['21'], types: ['number'] } });
  assert.equal(dr.causal!.verbalize(d, 0), 'Passage: Bears won 21-7.\nQuestion: How many points did the Bears score?\nAnswer: 21\n');
});

test('LM-BFF masked templates render as in the spec, with the spec label words', () => {
  const cases: [string, Record<string, unknown>, string, string[]][] = [
    ['sst2', { sentence: 'a fine film', label: 0 }, '<s>a fine film It was<mask>.</s>', ['terrible', 'great']],
    ['sst5', { text: 'a fine film', label: 4 }, '<s>a fine film It was<mask>.</s>', ['terrible', 'bad', 'okay', 'good', 'great']],
    ['mr', { text: 'a fine film', label: 1 }, '<s>a fine film It was<mask>.</s>', ['terrible', 'great']],
    ['cr', { text: 'works well', label: 1 }, '<s>works well It was<mask>.</s>', ['terrible', 'great']],
    ['mpqa', { text: 'hope', label: 1 }, '<s>hope It was<mask>.</s>', ['terrible', 'great']],
    ['subj', { text: 'the film opens', label: 1 }, '<s>the film opens This is<mask>.</s>', ['subjective', 'objective']],
    ['trec', { text: 'Who won ?', label: 3 }, '<s><mask>: Who won ?</s>', ['Description', 'Entity', 'Expression', 'Human', 'Location', 'Number']],
    ['agnews', { label: 2, title: 'T', description: 'Goal scored.' }, '<s>Goal scored. This article is about<mask> news.</s>', ['world', 'sports', 'business', 'tech']],
    ['mnli', { sentence1: 'Price caps may help.', sentence2: 'Rate cases help.', gold_label: 'neutral' }, '<s>Price caps may help?<mask>, rate cases help.</s>', ['No', 'Yes', 'Maybe']],
    ['snli', { sentence1: 'A man runs.', sentence2: 'Someone moves.', gold_label: 'entailment' }, '<s>A man runs?<mask>, someone moves.</s>', ['No', 'Yes', 'Maybe']],
    ['qnli', { question: 'Who ran?', sentence: 'Kim ran.', label: 'entailment' }, '<s>Who ran?<mask>, kim ran.</s>', ['Yes', 'No']],
    ['rte', { premise: 'Dana lives in Paris.', hypothesis: 'Dana lives in France.', label: 'entailment' }, '<s>Dana lives in Paris?<mask>, dana lives in France.</s>', ['Yes', 'No']],
  ];
  for (const [name, row, rendered, words] of cases) {
    const t = getBuiltinTask(name);
    const ex = one(t, row);
    assert.equal(renderMasked(t.masked!.parts, t.masked!.texts(ex)), rendered, name);
    assert.deepEqual([...t.masked!.labelWords], words, name);
  }
  // label order: MNLI contradiction/entailment/neutral -> No/Yes/Maybe; RTE entailment -> Yes
  assert.equal(one(getBuiltinTask('mnli'), { sentence1: 'a.', sentence2: 'b', gold_label: 'contradiction' }).label, 0);
  assert.equal(one(getBuiltinTask('agnews'), { 'Class Index': '2', Title: 't', Description: 'd' }).label, 1);
  assert.equal(getBuiltinTask('rte').masked!.labelWords[one(getBuiltinTask('rte'), { premise: 'a.', hypothesis: 'b', label: 'entailment' }).label], 'Yes');
});

test('every task name resolves, case and punctuation aside; unknown names are CONFIG errors', () => {
  assert.equal(getBuiltinTask('AG_News').name, 'agnews');
  assert.equal(getBuiltinTask('SST-5').name, 'sst5');
  assert.throws(() => getBuiltinTask('sst3'), (e: Error & { code?: string }) => e.code === 'CONFIG' && /unknown task "sst3"/.test(e.message));
});
