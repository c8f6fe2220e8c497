/**
 * zo-bench: the k-shot sample is k per class and seeded; a tiny run's bookkeeping (forward passes
 * counted against the budget, passes to target = the first evaluation at or below the target dev loss,
 * mean ± std over seeds recomputed by hand) and its report (table rows, one curve per method).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../node/host.ts';
import { loadExamples, resolveTask } from '../tasks/index.ts';
import { kShotSample, runZoBench, type ZoBenchProtocol } from './bench.ts';
import { markdownTable, zoBenchHtml } from './report.ts';

const TRAIN = 'assets/demo/sst2-train.jsonl';
const DEV = 'assets/demo/sst2-dev.jsonl';

test('k-shot sample: k examples of each class, the same for a seed, different across seeds', () => {
  const pool = loadExamples(resolveTask('sst2'), TRAIN);
  const a = kShotSample(pool, 5, 1);
  assert.equal(a.filter((e) => e.label === 0).length, 5);
  assert.equal(a.filter((e) => e.label === 1).length, 5);
  assert.deepEqual(kShotSample(pool, 5, 1).map((e) => e.id), a.map((e) => e.id));
  assert.notDeepEqual(kShotSample(pool, 5, 2).map((e) => e.id), a.map((e) => e.id));
});

test('a tiny zo-bench run: budget, passes to target, mean ± std and the report', async () => {
  const p: ZoBenchProtocol = {
    model: '../shared/data/models/tiny-random-gpt2', task: 'sst2', train: TRAIN, dev: DEV, kShot: 4, devN: 8,
    peft: { kind: 'lora', rank: 4, alpha: 8, dropout: 0, targets: [] }, batchSize: 4, eps: 1e-2, seeds: [0, 1], budget: 20, evalEvery: 10,
    targetDevLoss: 10, methods: [{ name: 'sgd', lr: 1e-2 }, { name: 'fzoo', lr: 1e-2, settings: { samples: 3 } }], threads: 1,
  };
  const r = await runZoBench(p);
  assert.equal(r.methods.length, 2);
  for (const m of r.methods) {
    assert.equal(m.forwardPassesPerStep, m.method === 'sgd' ? 2 : 4);
    for (const run of m.runs) {
      const last = run.curve[run.curve.length - 1]!;
      assert.ok(last.passes <= p.budget && last.passes > p.budget - m.forwardPassesPerStep, `${m.method}: ${last.passes} passes`);
      assert.equal(last.passes, run.steps * m.forwardPassesPerStep);
      assert.equal(run.curve[0]!.passes, 0);
      // target 10 is above any 2-class loss here: reached at the first evaluation
      assert.equal(run.passesToTarget, 0);
      assert.equal(run.finalAccuracy, last.devAccuracy);
    }
    const accs = m.runs.map((x) => x.finalAccuracy);
    const mean = (accs[0]! + accs[1]!) / 2;
    assert.ok(Math.abs(m.finalAccuracyMean - mean) < 1e-12);
    assert.ok(Math.abs(m.finalAccuracyStd - Math.abs(accs[0]! - accs[1]!) / Math.SQRT2) < 1e-12);
  }
  assert.equal(markdownTable(r).trim().split('\n').length, 4);
  const html = zoBenchHtml(r);
  assert.equal((html.match(/<svg/g) ?? []).length, 2);
  assert.ok(html.includes('fzoo') && html.includes('sgd'));
});
