/** Metric code against hand-computed cases (SQuAD normalization and F1, ReCoRD multi-answer, COPA, macro-F1). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accuracy, argmax, exactMatch, macroF1, normalizeAnswer, recordScores, squadF1, tokenF1 } from './metrics.ts';

test('SQuAD normalization: lower-case, punctuation, articles as whole words, whitespace', () => {
  assert.equal(normalizeAnswer("The  Cat's, hat!"), 'cats hat');
  assert.equal(normalizeAnswer('theory of a thing'), 'theory of thing'); // "the" inside "theory" stays
  assert.equal(normalizeAnswer('Café, the élan'), 'café élan');
  assert.equal(normalizeAnswer('an_the'), 'anthe'); // "_" is punctuation, removed before articles
  assert.equal(normalizeAnswer('  A\tAN\nthe  '), '');
});

test('token F1 is a multiset F1 on normalized tokens', () => {
  // pred [cat sat on mat], gold [cat on mat]: 3 shared, P = 3/4, R = 1
  assert.equal(tokenF1('the cat sat on the mat', 'a cat on a mat'), (2 * 0.75 * 1) / 1.75);
  // pred [x x y], gold [x y y]: shared min-counts x:1 y:1 = 2, P = R = 2/3
  assert.ok(Math.abs(tokenF1('x x y', 'x y y') - 2 / 3) < 1e-15);
  assert.equal(tokenF1('nothing', 'else'), 0);
  assert.equal(tokenF1('', 'x'), 0);
});

test('SQuAD F1 takes the best gold answer; "no answer" gold needs an exact match; EM', () => {
  // vs "broncos": P 1/2, R 1 -> 2/3; vs "denver broncos team": P 1, R 2/3 -> 0.8
  assert.ok(Math.abs(squadF1('Denver Broncos', ['Broncos', 'Denver Broncos team']) - 0.8) < 1e-15);
  assert.equal(squadF1('no answer.', ['no answer']), 1);
  assert.equal(squadF1('something', ['no answer']), 0);
  assert.equal(exactMatch('The Broncos!', ['broncos', 'x']), true);
  assert.equal(exactMatch('Broncos team', ['broncos']), false);
});

test('ReCoRD: right when the chosen entity is any gold answer; official EM/F1 against the answer strings', () => {
  assert.ok(Math.abs(accuracy([1, 0, 2], [[0, 1], [1], [2]]) - 2 / 3) < 1e-15);
  assert.deepEqual(recordScores('Paris', ['France', 'paris']), { em: 1, f1: 1 });
  const s = recordScores('the Paris team', ['Paris']); // [paris team] vs [paris]: P 1/2, R 1
  assert.equal(s.em, 0);
  assert.ok(Math.abs(s.f1 - 2 / 3) < 1e-15);
});

test('COPA two-choice accuracy and argmax ties (first index wins, as numpy)', () => {
  assert.equal(accuracy([0, 1, 1, 0], [[0], [0], [1], [1]]), 0.5);
  assert.equal(argmax([-1.5, -1.5]), 0);
  assert.equal(argmax([-2, -1, -1]), 1);
});

test('macro-F1 over classes seen in gold or predictions', () => {
  // class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 -> 0.8; class 2: tp0 fn1 -> 0
  assert.ok(Math.abs(macroF1([0, 1, 1, 1, 0], [0, 0, 1, 1, 2]) - 1.3 / 3) < 1e-15);
  assert.equal(macroF1([1, 1], [1, 1]), 1);
});
