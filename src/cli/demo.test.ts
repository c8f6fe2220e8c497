/**
 * `npm run demo`'s ingredients: the embedded SST-2 subset keeps its promises (short texts, balanced
 * training labels, no dev sentence in the training text), and the demo's MeZO configuration, run for a
 * few steps on the embedded model, lowers the dev loss it starts from.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { train } from '../train/loop.ts';
import { buildTrainConfig } from './train.ts';
import { DEMO_DEV, DEMO_FLAGS, DEMO_MODEL, DEMO_TRAIN } from './demo.ts';

function rows(path: string): { sentence: string; label: number }[] {
  return readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { sentence: string; label: number });
}

test('demo data: short texts, balanced training labels, dev disjoint from training', () => {
  const tr = rows(DEMO_TRAIN);
  const dev = rows(DEMO_DEV);
  for (const r of [...tr, ...dev]) assert.ok(r.sentence.split(/\s+/).length <= 12, r.sentence);
  assert.equal(tr.filter((r) => r.label === 1).length, tr.length / 2);
  const seen = new Set(tr.map((r) => r.sentence));
  assert.equal(dev.filter((r) => seen.has(r.sentence)).length, 0);
});

test("the demo's MeZO configuration lowers dev loss on the embedded model", async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-demo-'));
  try {
    const cfg = buildTrainConfig({ ...DEMO_FLAGS, model: DEMO_MODEL, task: 'sst2', data: DEMO_TRAIN, dev: DEMO_DEV, maxSteps: '100', evalEvery: '100', saveEvery: '100', devLimit: '128', threads: '2' });
    const s = await train(cfg, join(tmp, 'run'));
    assert.ok(s.initialEval && s.finalEval);
    // the zero-shot model favours one label word; 100 MeZO steps correct much of that bias
    assert.ok(s.finalEval.devLoss < s.initialEval.devLoss - 0.1, `dev loss ${s.initialEval.devLoss} → ${s.finalEval.devLoss}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
