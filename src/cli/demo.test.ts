/**
 * `npm run demo`'s ingredients: the embedded TREC subset keeps its promises (three question types,
 * balanced training labels, questions short enough for the model's 64 positions, no dev question among
 * the training questions), the sentence-blind baseline is what a brute-force search over constant
 * answers gives, and the demo's MeZO configuration, run for a few steps on the embedded model, lowers
 * the dev loss it starts from.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { train } from '../train/loop.ts';
import { loadTokenizer } from '../models/tokenizer.ts';
import { buildTrainConfig } from './train.ts';
import { DEMO_DEV, DEMO_FLAGS, DEMO_MODEL, DEMO_TASK, DEMO_TRAIN, sentenceBlind } from './demo.ts';

function rows(path: string): { text: string; label: number }[] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { text: string; label: number });
}

test('demo data: HUM/LOC/NUM questions that fit the model, balanced training labels, dev disjoint from training', async () => {
  const tr = rows(DEMO_TRAIN);
  const dev = rows(DEMO_DEV);
  assert.equal(dev.length, Number(DEMO_FLAGS.devLimit));
  for (const y of [3, 4, 5]) assert.equal(tr.filter((r) => r.label === y).length, tr.length / 3);
  for (const r of dev) assert.ok([3, 4, 5].includes(r.label), r.text);
  const seen = new Set(tr.map((r) => r.text.toLowerCase()));
  assert.equal(dev.filter((r) => seen.has(r.text.toLowerCase())).length, 0);
  const tok = await loadTokenizer(DEMO_MODEL);
  // the prompt adds " The answer is a" and one label word; the BOS token takes one more position
  const longest = Math.max(...[...tr, ...dev].map((r) => tok.encode(`${r.text} The answer is a person`).length + 1));
  assert.ok(longest <= 64, `longest prompt + answer: ${longest} tokens`);
  for (const w of [' person', ' place', ' number']) assert.equal(tok.encode(w).length, 1, w);
});

test('sentence-blind baseline: the best constant answer and the entropy of the labels', () => {
  const labels = rows(DEMO_DEV).map((r) => r.label);
  const blind = sentenceBlind(labels);
  let bestConstant = 0;
  for (const c of [3, 4, 5]) bestConstant = Math.max(bestConstant, labels.filter((y) => y === c).length / labels.length);
  assert.equal(blind.accuracy, bestConstant);
  // the label frequencies are the constant prediction of least cross-entropy: any other is worse
  const ce = (q: number[]) => -labels.reduce((s, y) => s + Math.log(q[y - 3]!), 0) / labels.length;
  assert.ok(Math.abs(ce([3, 4, 5].map((c) => labels.filter((y) => y === c).length / labels.length)) - blind.loss) < 1e-12);
  assert.ok(ce([1 / 3, 1 / 3, 1 / 3]) > blind.loss);
});

test("the demo's MeZO configuration lowers dev loss on the embedded model", async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-demo-'));
  try {
    const cfg = buildTrainConfig({ ...DEMO_FLAGS, model: DEMO_MODEL, task: DEMO_TASK, data: DEMO_TRAIN, dev: DEMO_DEV, maxSteps: '100', evalEvery: '100', saveEvery: '100', devLimit: '64', threads: '2' });
    const s = await train(cfg, join(tmp, 'run'));
    assert.ok(s.initialEval && s.finalEval);
    // the zero-shot model answers " number" to almost everything; 100 MeZO steps correct much of that bias
    assert.ok(s.finalEval.devLoss < s.initialEval.devLoss - 0.3, `dev loss ${s.initialEval.devLoss} → ${s.finalEval.devLoss}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
