/**
 * Eval slices on a real local Redis (redis-server started by the test, never a mock): 3 in-process
 * workers evaluate a 23-example file in slices and the merged record equals `runEvaluation` in one
 * process field for field (every candidate score bit-equal); a worker running another code version
 * refuses the jobs, which fail without retries and carry the reason.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CausalLM, ContinuationRequest } from '../models/api.ts';
import { runEvaluation } from '../tasks/run-eval.ts';
import { ToyTokenizer } from '../tasks/test-fixtures.ts';
import { runDistributedEvaluation } from './eval-slices.ts';
import { redisSkipReason, startLocalRedis, type LocalRedis } from './redis-server.ts';
import { startWorker, type RunningWorker } from './worker.ts';
import type { QueueProgress } from './coordinator.ts';

const skip = redisSkipReason();
const tok = new ToyTokenizer(['good', 'bad', ' film', ' plot', ' It', ' was', ' great', ' terrible', '\n']);

/** log-probs that depend on every prompt token and the position, so predictions differ across examples */
class HashLM implements CausalLM {
  readonly kind = 'causal' as const;
  readonly tokenizer = tok;
  readonly maxPositions = 256;
  calls = 0;
  async continuationLogprobs(reqs: readonly ContinuationRequest[]): Promise<Float64Array[]> {
    this.calls++;
    return reqs.map((r) => {
      let h = 0.1;
      r.prompt.forEach((t, i) => (h = Math.sin(h * 3.7 + t * 1.3 + i * 0.11)));
      return Float64Array.from(r.continuation, (t, i) => -Math.abs(Math.sin(h * 5.3 + t * 0.7 + i)) * 2 - 0.01);
    });
  }
  async generate(): Promise<string> {
    return '';
  }
}

const dir = mkdtempSync(join(tmpdir(), 'lmtune-dist-eval-'));
const modelDir = join(dir, 'model');
const data = join(dir, 'dev.jsonl');
const words = ['good', 'bad', ' film', ' plot'];
const rows = Array.from({ length: 23 }, (_, i) => ({ sentence: [0, 1, 2].map((k) => words[Math.floor(i / 4 ** k) % 4]).join(''), label: (i * 7) % 3 === 0 ? 1 : 0 }));
writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
const { mkdirSync } = await import('node:fs');
mkdirSync(modelDir);
writeFileSync(join(modelDir, 'config.json'), '{"toy":true}');

let redis: LocalRedis | undefined;
before(async () => {
  if (!skip) redis = await startLocalRedis();
});
after(async () => {
  await redis?.stop();
});

test('3 workers, slices of 4 (batch 2): the merged record equals the single-process one exactly', { skip, timeout: 20_000 }, async () => {
  const single = await runEvaluation(new HashLM(), { task: 'sst2', data, batchSize: 2 });
  // the data must exercise both classes of prediction, or equality would prove little
  assert.ok(new Set(single.predictions.map((p) => p.prediction)).size === 2);
  const workers: RunningWorker[] = [];
  const loads: string[] = [];
  for (let w = 0; w < 3; w++) {
    workers.push(await startWorker({ queueUrl: redis!.url, name: `w${w}`, loadModel: async (d) => (loads.push(d), new HashLM()) }));
  }
  const seen: QueueProgress[] = [];
  try {
    const merged = await runDistributedEvaluation({ queueUrl: redis!.url, modelDir, task: 'sst2', data, batchSize: 2, sliceSize: 3, pollMs: 50, timeoutMs: 15_000, onProgress: (p) => seen.push(p) });
    assert.deepEqual(merged, single);
    assert.equal(JSON.stringify(merged), JSON.stringify(single));
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
  // slice size 3 rounds up to 4 (a multiple of the batch): ceil(23/4) = 6 jobs
  const last = seen[seen.length - 1]!;
  assert.deepEqual([last.done, last.total, last.fraction], [6, 6, 1]);
  assert.ok(seen.some((p) => p.workers === 3), 'the coordinator saw the 3 workers');
  // the model is loaded once per worker (cached by fingerprint), not once per job
  assert.ok(loads.length <= 3 && loads.every((d) => d === modelDir));
});

test('a worker on another code version refuses the job; it fails at once with the reason', { skip, timeout: 20_000 }, async () => {
  const url = `${redis!.url}/1`;
  const w = await startWorker({ queueUrl: url, name: 'old', codeVersion: 'lmtune@0.0.1/jobs-0', loadModel: async () => new HashLM() });
  try {
    await assert.rejects(
      runDistributedEvaluation({ queueUrl: url, modelDir, task: 'sst2', data, batchSize: 2, sliceSize: 100, pollMs: 50, timeoutMs: 15_000 }),
      (e: Error) => /failed after 1 attempt\(s\): worker old refused job .*code version mismatch: the job was made by lmtune@.*\/jobs-1, this worker runs lmtune@0\.0\.1\/jobs-0/.test(e.message),
    );
  } finally {
    await w.close();
  }
});

test('a worker whose model copy differs refuses the job', { skip, timeout: 20_000 }, async () => {
  const url = `${redis!.url}/2`;
  const w = await startWorker({ queueUrl: url, name: 'stale', fingerprint: () => 'f'.repeat(64), loadModel: async () => new HashLM() });
  try {
    await assert.rejects(
      runDistributedEvaluation({ queueUrl: url, modelDir, task: 'sst2', data, batchSize: 2, sliceSize: 100, pollMs: 50, timeoutMs: 15_000 }),
      /refused job .*model fingerprint mismatch for .*model: the job expects [0-9a-f]{16}…, this worker's copy is f{16}…/,
    );
  } finally {
    await w.close();
  }
});
