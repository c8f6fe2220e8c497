/**
 * `evaluate` on hand-specified models (test-fixtures.ts): a bigram LM over a toy tokenizer, whose
 * candidate log-probs are worked out by hand below, and a masked LM with hand-set label-word logits.
 * Checks mean vs sum scoring (COPA), SFC calibration (RTE), in-context demonstrations, greedy generation
 * with SQuAD F1/EM, masked-LM scoring, and the progress callback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getBuiltinTask } from './builtin.ts';
import { parseTaskFile } from './custom-task.ts';
import { evaluate, type EvalProgress } from './evaluate.ts';
import { BigramLM, FakeMaskedLM, ToyTokenizer } from './test-fixtures.ts';
import type { Example, Task } from './task.ts';

function examples(task: Task, rows: Record<string, unknown>[]): Example[] {
  return rows.flatMap((value, i) => task.parse({ file: 'e.jsonl', line: i + 1, value }));
}
const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

test('SST-2 zero-shot: mean log-prob of " great" vs " terrible" after " was"', async () => {
  const tok = new ToyTokenizer(['good', 'bad', 'meh', ' film', ' It', ' was', ' great', ' terrible']); // V = 12
  const lm = new BigramLM(tok).set(' was', ' great', Math.log(3));
  const t = getBuiltinTask('sst2');
  const exs = examples(t, [
    { sentence: 'good film', label: 1 },
    { sentence: 'bad film', label: 0 },
    { sentence: 'meh film', label: 1 },
    { sentence: 'good', label: 1 },
  ]);
  const r = await evaluate(lm, t, exs);
  // row " was": 11 logits at 0 and one at ln 3 -> Z = 14
  for (const p of r.predictions) {
    close(p.candidateScores![0]!, -Math.log(14));
    close(p.candidateScores![1]!, Math.log(3) - Math.log(14));
    assert.equal(p.prediction, 1);
  }
  assert.equal(r.metric, 'accuracy');
  assert.equal(r.value, 0.75);
  assert.equal(r.n, 4);
  // all predicted 1: class 1 tp 3 fp 1 -> 6/7; class 0 -> 0
  close(r.metrics['macro-f1']!, 3 / 7);
});

test('COPA: mean scoring picks the 3-token choice, sum scoring the 2-token one', async () => {
  const tok = new ToyTokenizer(['P', ' so', ' because', ' a', ' b', ' c', '.']); // V = 11
  const lm = new BigramLM(tok).set(' b', ' c', Math.log(10));
  const t = getBuiltinTask('copa');
  const exs = examples(t, [{ premise: 'P.', choice1: 'A.', choice2: 'B c.', question: 'effect', label: 1 }]);
  // A: [a|so, .|a] = [-ln 11, -ln 11]; B: [b|so, c|b, .|c] = [-ln 11, ln10 - ln20, -ln 11]
  const mean = await evaluate(lm, t, exs, { scoring: 'mean' });
  close(mean.predictions[0]!.candidateScores![0]!, -Math.log(11));
  close(mean.predictions[0]!.candidateScores![1]!, (-2 * Math.log(11) - Math.log(2)) / 3);
  assert.equal(mean.predictions[0]!.prediction, 1);
  assert.equal(mean.value, 1);
  const sum = await evaluate(lm, t, exs, { scoring: 'sum' });
  close(sum.predictions[0]!.candidateScores![0]!, -2 * Math.log(11));
  close(sum.predictions[0]!.candidateScores![1]!, -2 * Math.log(11) - Math.log(2));
  assert.equal(sum.predictions[0]!.prediction, 0);
  assert.equal(sum.value, 0);
  // the continuations the model saw are exactly the choices' tokens
  assert.deepEqual(lm.requests.slice(0, 2).map((r) => r.continuation), [
    [tok.id(' a'), tok.id('.')],
    [tok.id(' b'), tok.id(' c'), tok.id('.')],
  ]);
});

test('RTE calibration (SFC): log p(answer | prompt) − log p(answer | content-free prompt) flips Yes to No', async () => {
  const tok = new ToyTokenizer(['Yes', 'No', '\n']); // V = 7; other characters become <unk>
  const lm = new BigramLM(tok).set('\n', 'Yes', Math.log(2)).set('<s>', 'Yes', Math.log(4));
  const t = getBuiltinTask('rte');
  const exs = examples(t, [{ premise: 'p', hypothesis: 'h', label: 'not_entailment' }]);
  const plain = await evaluate(lm, t, exs);
  assert.equal(plain.predictions[0]!.prediction, 0); // Yes: -ln 4 > No: -ln 8
  const cal = await evaluate(lm, t, exs, { calibrate: true });
  // Yes: (ln2 − ln8) − (ln4 − ln10) = ln 0.625; No: (−ln 8) − (−ln 10) = ln 1.25
  close(cal.predictions[0]!.candidateScores![0]!, Math.log(0.625));
  close(cal.predictions[0]!.candidateScores![1]!, Math.log(1.25));
  assert.equal(cal.predictions[0]!.prediction, 1);
  assert.equal(cal.value, 1);
});

test('ICL: k fresh demonstrations per example, gold-verbalized, never the example itself, reproducible by seed', async () => {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'omega'];
  const tok = new ToyTokenizer([...words, ' It', ' was', ' great', ' terrible', '\n']);
  const t = getBuiltinTask('sst2');
  const rows = words.map((w, i) => ({ sentence: w, label: i % 2 }));
  const exs = examples(t, rows);
  const prompts = async (seed: number) => {
    const lm = new BigramLM(tok);
    await evaluate(lm, t, exs, { shots: 2, seed });
    // two candidates per example share the prompt: take every other request
    return lm.requests.filter((_, i) => i % 2 === 0).map((r) => tok.decode(r.prompt));
  };
  const a = await prompts(7);
  assert.deepEqual(await prompts(7), a);
  const verbal = (i: number) => `${words[i]} It was ${i % 2 ? 'great' : 'terrible'}`;
  a.forEach((p, i) => {
    const parts = p.split('\n\n');
    assert.equal(parts.length, 3);
    assert.equal(parts[2], `${words[i]} It was`);
    const used = parts.slice(0, 2).map((d) => words.findIndex((_, j) => d === verbal(j)));
    assert.ok(used.every((j) => j >= 0 && j !== i), `demos of example ${i}: ${parts.slice(0, 2).join(' | ')}`);
    assert.notEqual(used[0], used[1]);
  });
  assert.notDeepEqual(await prompts(8), a);
  // a pool too small for k is an error, not a silent shortfall
  await assert.rejects(() => evaluate(new BigramLM(tok), t, exs, { shots: 5 }), (e: Error & { code?: string }) => e.code === 'DATA');
});

test('generation: greedy decoding cut at "\\n", SQuAD F1 and EM', async () => {
  const tok = new ToyTokenizer(['Answer:', ' Paris', ' region', '\n']);
  const lm = new BigramLM(tok).set('Answer:', ' Paris', 5).set(' Paris', '\n', 5);
  const t = getBuiltinTask('squad');
  const exs = examples(t, [
    { title: 't', context: 'c', question: 'q', answers: ['Paris'] },
    { title: 't', context: 'c', question: 'q', answers: ['the Paris region'] },
  ]);
  const r = await evaluate(lm, t, exs);
  assert.deepEqual(r.predictions.map((p) => p.prediction), ['Paris', 'Paris']);
  // F1: 1 and [paris] vs [paris region] = 2/3
  close(r.value, (1 + 2 / 3) / 2);
  close(r.metrics['em']!, 0.5);
  assert.equal(r.metric, 'f1');
  assert.equal(tok.decode(lm.prompts[0]!).endsWith('Answer:'), true);
});

test('masked LM: argmax of the label-word logits at the mask', async () => {
  const tok = new ToyTokenizer(['good', 'bad', ' film', ' It', ' was', ' great', ' terrible', '.']);
  const count = (ids: readonly number[], s: string) => ids.filter((i) => i === tok.id(s)).length;
  const lm = new FakeMaskedLM(tok, (ids, c) => (c === tok.id(' great') ? count(ids, 'good') : count(ids, 'bad')));
  const t = getBuiltinTask('sst2');
  const exs = examples(t, [
    { sentence: 'good film', label: 1 },
    { sentence: 'bad bad film', label: 0 },
    { sentence: 'good bad bad', label: 1 },
  ]);
  const r = await evaluate(lm, t, exs, { batchSize: 2 });
  assert.deepEqual(r.predictions.map((p) => p.candidateScores), [
    [0, 1],
    [2, 0],
    [2, 1],
  ]);
  close(r.value, 2 / 3);
  assert.deepEqual(lm.inputs[0], [0, tok.id('good'), tok.id(' film'), tok.id(' It'), tok.id(' was'), 2, tok.id('.'), 1]);
  await assert.rejects(() => evaluate(lm, t, exs, { shots: 1 }), (e: Error & { code?: string }) => e.code === 'UNSUPPORTED');
  await assert.rejects(() => evaluate(lm, getBuiltinTask('cb'), examples(getBuiltinTask('cb'), [{ premise: 'p', hypothesis: 'h', label: 0 }])), (e: Error & { code?: string }) => e.code === 'UNSUPPORTED');
});

test('a custom task ending on the sentence lets a bigram model tell examples apart; progress reaches the total', async () => {
  const task = parseTaskFile('name: tail\nprompt: "{text}"\nlabels: {neg: terrible, pos: great}\nmetric: macro-f1\n', 'tail.yaml');
  const tok = new ToyTokenizer(['good', 'bad', 'film', ' ', ' great', ' terrible']);
  const lm = new BigramLM(tok).set('good', ' great', 2).set('bad', ' terrible', 2);
  const exs = examples(task, [
    { text: 'film good', label: 'pos' },
    { text: 'film bad', label: 'neg' },
    { text: 'good bad', label: 'pos' },
  ]);
  const seen: EvalProgress[] = [];
  const r = await evaluate(lm, task, exs, { batchSize: 2, onProgress: (p) => seen.push(p) });
  assert.deepEqual(r.predictions.map((p) => p.prediction), [1, 0, 0]);
  // pos: tp1 fn1 -> 2/3; neg: tp1 fp1 -> 2/3
  close(r.value, 2 / 3);
  assert.equal(r.metric, 'macro-f1');
  assert.deepEqual(seen.map((p) => p.done), [2, 3]);
  assert.ok(seen.every((p) => p.total === 3 && p.examplesPerSecond >= 0));
});

test('ReCoRD: the chosen entity is right when it is any of the gold answers; EM/F1 against the answer strings', async () => {
  const tok = new ToyTokenizer(['-', ' Paris', ' France', ' won', 'x', '\n']);
  const lm = new BigramLM(tok).set('-', ' France', 2);
  const t = getBuiltinTask('record');
  const row = (answers: string[]) => ({ passage: 'x\n@highlight\nx', query: '@placeholder won', entities: ['Paris', 'France'], answers });
  const exs = examples(t, [row(['Paris']), row(['France', 'Paris'])]);
  const r = await evaluate(lm, t, exs);
  assert.deepEqual(r.predictions.map((p) => p.prediction), [1, 1]); // " France" after "-" in both
  assert.equal(r.value, 0.5);
  assert.deepEqual([r.metrics['em'], r.metrics['f1']], [0.5, 0.5]);
});
