/**
 * `kernel run` end to end on the embedded model at toy size: the k-shot files hold k examples per class
 * (train and dev disjoint), the kernel row is the dev-chosen grid point scored on test (recomputed from
 * the stored folder), the fine-tuning row is the final model's test accuracy (re-evaluated), and a rerun
 * reuses everything and reports the same numbers.
 */
import '../node/host.ts';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { asLanguageModel, loadTransformer } from '../heads/model.ts';
import { evaluate, loadExamples, loadTaskFile } from '../tasks/index.ts';
import { problemFromTensors } from './compute.ts';
import { runKernelExperiment, type RunOptions } from './run.ts';
import { gridSearch } from './select.ts';
import { readKernelFolder } from './store.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'lmtune-kernel-run-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('kernel run: k-shot files, dev-chosen kernel solver, fine-tuning scored with its final weights, rerun reuses', async () => {
  const opts: RunOptions = {
    model: join(ROOT, 'assets', 'tiny-english-lm'),
    task: join(ROOT, 'src', 'kernel', 'tasks', 'sst2-single-token.yaml'),
    pool: join(ROOT, 'assets', 'demo', 'sst2-train.jsonl'),
    test: join(ROOT, 'assets', 'demo', 'sst2-dev.jsonl'),
    k: 2,
    seeds: [13],
    formulas: ['sgd'],
    solver: 'lstsq',
    params: 'all',
    testLimit: 6,
    ft: { steps: 2, batch: 2, sgdLrs: [0.01], adamLrs: [1e-4] },
    out: join(tmp, 'run'),
    threads: 1,
  };
  const s = await runKernelExperiment(opts);
  const task = loadTaskFile(opts.task);
  const dir = join(opts.out, 'seed-13');
  const train = loadExamples(task, join(dir, 'train.jsonl'));
  const dev = loadExamples(task, join(dir, 'dev.jsonl'));
  for (const set of [train, dev]) assert.deepEqual([0, 1].map((l) => set.filter((e) => e.label === l).length), [2, 2]);
  const texts = new Set(train.map((e) => e.fields.sentence));
  assert.ok(dev.every((e) => !texts.has(e.fields.sentence)), 'train and dev are disjoint');
  const row = s.rows[0]!;
  const folder = readKernelFolder(join(dir, 'kernel-sgd'));
  const g = gridSearch('lstsq', problemFromTensors(folder.tensors, 2, 'dev', 'x'), problemFromTensors(folder.tensors, 2, 'eval', 'x'));
  assert.equal(row.kernel.test, g.test.value);
  assert.equal(row.kernel.dev, g.dev.value);
  const tuned = await loadTransformer(join(dir, 'ft-sgd-lr0.01', 'final'), { threads: 1 });
  const test6 = loadExamples(task, opts.test).slice(0, 6);
  assert.equal(row.ft!.test, (await evaluate(asLanguageModel(tuned), task, test6)).value);
  assert.deepEqual([s.table[0]!.kernelMean, s.table[0]!.kernelStd, s.table[0]!.ftMean], [row.kernel.test, 0, row.ft!.test]);
  assert.ok(existsSync(join(opts.out, 'report.html')));
  assert.deepEqual(JSON.parse(readFileSync(join(opts.out, 'results.json'), 'utf8')).rows, JSON.parse(JSON.stringify(s.rows)));
  const again = await runKernelExperiment(opts);
  assert.deepEqual(again.rows.map((r) => [r.kernel.test, r.ft?.test]), s.rows.map((r) => [r.kernel.test, r.ft?.test]));
});
