/** User task files (YAML and JSON): rendering, and errors that name the file and line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseTaskFile } from './custom-task.ts';
import { renderMasked } from './masked-template.ts';
import { resolveTask } from './run-eval.ts';

type Coded = Error & { code?: string };
const configErr = (re: RegExp) => (e: Coded) => e.code === 'CONFIG' && re.test(e.message);

const YAML = `name: movie
kind: classification
prompt: "Review: {text}\\nSentiment:"
masked_prompt: "{text} It was{mask}."
labels:
  neg: terrible
  pos: great
metric: macro-f1
`;

test('a YAML classification task renders its prompt, answers (" {label_word}") and masked template', () => {
  const t = parseTaskFile(YAML, 'movie.yaml');
  const ex = t.parse({ file: 'd.jsonl', line: 3, value: { text: 'a fine film', label: 'pos' } })[0]!;
  assert.equal(ex.label, 1);
  assert.equal(t.causal!.prompt(ex), 'Review: a fine film\nSentiment:');
  assert.equal(t.causal!.verbalize(ex, 0), 'Review: a fine film\nSentiment: terrible');
  assert.equal(renderMasked(t.masked!.parts, t.masked!.texts(ex)), '<s>a fine film It was<mask>.</s>');
  assert.deepEqual([t.metric, t.labelNames, t.labelWords], ['macro-f1', ['neg', 'pos'], ['terrible', 'great']]);
  assert.throws(() => t.parse({ file: 'd.jsonl', line: 4, value: { txt: 'x', label: 'pos' } }), (e: Coded) => e.code === 'DATA' && e.message.startsWith('d.jsonl:4: missing field text'));
  assert.throws(() => t.parse({ file: 'd.jsonl', line: 5, value: { text: 'x', label: 'meh' } }), (e: Coded) => e.code === 'DATA' && e.message.startsWith('d.jsonl:5: label "label" = "meh" is not one of "neg", "pos"'));
});

test('the same task as JSON, and a generation task with a list of answers and literal braces', () => {
  const json = JSON.stringify({ name: 'movie', prompt: 'Review: {text}\nSentiment:', masked_prompt: '{text} It was{mask}.', labels: { neg: 'terrible', pos: 'great' }, metric: 'macro-f1' }, null, 2);
  const t = parseTaskFile(json, 'movie.json');
  const ex = t.parse({ file: 'd', line: 1, value: { text: 'x', label: 'neg' } })[0]!;
  assert.equal(t.causal!.verbalize(ex, 1), 'Review: x\nSentiment: great');
  const g = parseTaskFile('name: qa\nkind: generation\nprompt: "{{Q}} {question}\\nA:"\nanswers_field: gold\n', 'qa.yaml');
  const q = g.parse({ file: 'q.jsonl', line: 2, value: { question: 'Who?', gold: ['Kim', 'Kim Lee'] } })[0]!;
  assert.equal(g.causal!.prompt(q), '{Q} Who?\nA:');
  assert.equal(g.causal!.verbalize(q, 0), '{Q} Who?\nA: Kim\n');
  assert.deepEqual([g.metric, g.maxNewTokens, g.stop], ['f1', 50, ['\n']]);
});

test('task file errors name the line', () => {
  assert.throws(() => parseTaskFile('name: t\nlabels: [a, b]\npromt: "{x}"\n', 'task.yaml'), configErr(/^task\.yaml:3: unknown key "promt"/));
  assert.throws(() => parseTaskFile('name: t\nprompt: "{x}"\nlabels: [a, b]\nmetric: f1\n', 'task.yaml'), configErr(/^task\.yaml:4: metric "f1" does not fit a classification task/));
  assert.throws(() => parseTaskFile('name: t\nlabels: [a, b]\nprompt: "{text It was"\n', 'task.yaml'), configErr(/^task\.yaml:3: unclosed "\{"/));
  assert.throws(() => parseTaskFile('name: t\nlabels: [a, b]\nprompt: "{x}"\nanswer: " {word}"\n', 'task.yaml'), configErr(/^task\.yaml:4: "answer" must use \{label_word\}/));
  assert.throws(() => parseTaskFile('name: t\nlabels: [a, b]\nmasked_prompt: "{x} It was."\n', 'task.yaml'), configErr(/^task\.yaml:3: "masked_prompt" needs exactly one \{mask\}/));
  assert.throws(() => parseTaskFile('name: t\nlabels: [a, b\nprompt: "{x}"\n', 'task.yaml'), configErr(/^task\.yaml:\d+: /));
  assert.throws(() => parseTaskFile('name: t\nprompt: "{x}"\nlabels:\n  only: one\n', 'task.yaml'), configErr(/^task\.yaml:3: need at least two labels/));
  assert.throws(() => parseTaskFile('name: t\nprompt: "no fields"\nlabels: [a, b]\n', 'task.yaml'), configErr(/^task\.yaml:2: the prompt uses no \{field\}/));
  assert.throws(() => parseTaskFile('prompt: "{x}"\nlabels: [a, b]\n', 'task.yaml'), configErr(/^task\.yaml:1: missing "name"/));
  assert.throws(() => parseTaskFile('name: t\nprompt: "{x}"\nlabels: [a, b]\nmax_new_tokens: 0\n', 'task.yaml'), configErr(/^task\.yaml:4: "max_new_tokens" must be an integer >= 1/));
});

test('resolveTask: a path to a task file, or a built-in name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-task-'));
  const p = join(dir, 'movie.yaml');
  writeFileSync(p, YAML);
  assert.equal(resolveTask(p).name, 'movie');
  assert.equal(resolveTask('RTE').name, 'rte');
});
