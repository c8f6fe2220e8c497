/**
 * The queue in operation, on a real local Redis: `lmtune eval --queue` through commander prints the
 * same JSON and writes the same result bytes as `lmtune eval`; a worker process SIGKILLed while it
 * holds a job loses nothing (its job is taken over after the lock expires and the merged result is
 * still exact); `lmtune queue status` lists failed jobs with their errors and the workers alive,
 * `queue retry` re-runs them and `queue clean` removes finished jobs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import type { CausalLM, ContinuationRequest } from '../models/api.ts';
import { register as registerEval } from '../cli/eval.ts';
import { register as registerQueue } from '../cli/queue.ts';
import { runEvaluation } from '../tasks/run-eval.ts';
import { ToyTokenizer } from '../tasks/test-fixtures.ts';
import { runDistributedEvaluation } from './eval-slices.ts';
import { redisSkipReason, startLocalRedis, type LocalRedis } from './redis-server.ts';
import { startWorker } from './worker.ts';

const skip = redisSkipReason();
const tok = new ToyTokenizer(['good', 'bad', ' film', ' plot', ' It', ' was', ' great', ' terrible', '\n']);

class HashLM implements CausalLM {
  readonly kind = 'causal' as const;
  readonly tokenizer = tok;
  readonly maxPositions = 256;
  constructor(private readonly failFirst = 0) {}
  async continuationLogprobs(reqs: readonly ContinuationRequest[]): Promise<Float64Array[]> {
    if (this.failFirst > 0) throw new Error(`model backend crashed (${this.failFirst})`);
    return reqs.map((r) => {
      let h = 0.3;
      r.prompt.forEach((t, i) => (h = Math.sin(h * 2.9 + t * 1.7 + i * 0.13)));
      return Float64Array.from(r.continuation, (t, i) => -Math.abs(Math.sin(h * 4.1 + t * 0.9 + i)) * 2 - 0.01);
    });
  }
  async generate(): Promise<string> {
    return '';
  }
}

const dir = mkdtempSync(join(tmpdir(), 'lmtune-dist-ops-'));
const modelDir = join(dir, 'model');
mkdirSync(modelDir);
writeFileSync(join(modelDir, 'config.json'), '{"toy":2}');
const data = join(dir, 'dev.jsonl');
const words = ['good', 'bad', ' film', ' plot'];
writeFileSync(data, Array.from({ length: 17 }, (_, i) => JSON.stringify({ sentence: [0, 1, 2].map((k) => words[Math.floor(i / 4 ** k) % 4]).join(''), label: i % 2 })).join('\n') + '\n');

let redis: LocalRedis | undefined;
before(async () => {
  if (!skip) redis = await startLocalRedis();
});
after(async () => {
  await redis?.stop();
});

async function cli(reg: (p: Command) => void, args: string[]): Promise<string> {
  const out: string[] = [];
  const program = new Command().exitOverride();
  reg(program);
  await program.parseAsync(['node', 'lmtune', ...args]);
  return out.join('');
}

test('lmtune eval --queue: same JSON line and same result file bytes as lmtune eval', { skip, timeout: 20_000 }, async () => {
  const url = `${redis!.url}/3`;
  const w = await startWorker({ queueUrl: url, loadModel: async () => new HashLM() });
  try {
    const outs: Record<string, string> = {};
    for (const mode of ['single', 'queue']) {
      const lines: string[] = [];
      const program = new Command().exitOverride();
      registerEval(program, { loadModel: async () => new HashLM(), stdout: (s) => lines.push(s), stderr: () => undefined, tty: false });
      const file = join(dir, `${mode}.json`);
      await program.parseAsync(['node', 'lmtune', 'eval', '--model', modelDir, '--task', 'sst2', '--data', data, '--batch-size', '3', '--json', '--out', file, ...(mode === 'queue' ? ['--queue', url, '--slice-size', '5'] : [])]);
      outs[mode] = lines.join('').replace(file, 'OUT');
      outs[`${mode}-file`] = readFileSync(file, 'utf8');
    }
    assert.equal(outs['queue'], outs['single']);
    assert.equal(outs['queue-file'], outs['single-file']);
  } finally {
    await w.close();
  }
});

test('a SIGKILLed worker loses nothing: its job is taken over and the merge is still exact', { skip, timeout: 25_000 }, async () => {
  const url = `${redis!.url}/4`;
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'hanging-worker.fixture.ts'), url], { stdio: ['ignore', 'pipe', 'inherit'] });
  const took = new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`the child worker took no job in 15 s: ${buf}`)), 15_000);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /eval-slice job (\S+) \(attempt/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
  const run = runDistributedEvaluation({ queueUrl: url, modelDir, task: 'sst2', data, batchSize: 2, sliceSize: 100, pollMs: 50, timeoutMs: 20_000 });
  let takenOver: string[] = [];
  try {
    const id = await took;
    child.kill('SIGKILL');
    // the survivor starts only now, so the one job must come from the dead worker
    const w = await startWorker({ queueUrl: url, name: 'survivor', lockDurationMs: 1000, stalledIntervalMs: 500, loadModel: async () => new HashLM(), log: (l) => takenOver.push(l) });
    try {
      const merged = await run;
      assert.deepEqual(merged, await runEvaluation(new HashLM(), { task: 'sst2', data, batchSize: 2 }));
    } finally {
      await w.close();
    }
    takenOver = takenOver.filter((l) => l.includes(id));
    assert.ok(takenOver.length > 0, 'the survivor ran the dead worker\'s job');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('queue status shows failed jobs with their errors and the workers; retry re-runs them; clean removes them', { skip, timeout: 25_000 }, async () => {
  const url = `${redis!.url}/5`;
  const out: string[] = [];
  const q = (args: string[]) => cli((p) => registerQueue(p, { stdout: (s) => out.push(s) }), ['queue', ...args, '--queue', url, '--kinds', 'eval-slice']);
  // a broken backend: every attempt throws; 3 attempts with backoff, then the job fails for good
  const bad = await startWorker({ queueUrl: url, name: 'broken', loadModel: async () => new HashLM(1) });
  const t0 = performance.now();
  try {
  await assert.rejects(
    runDistributedEvaluation({ queueUrl: url, modelDir, task: 'sst2', data, batchSize: 2, sliceSize: 100, pollMs: 50, timeoutMs: 20_000, backoffMs: 100 }),
    /failed after 3 attempt\(s\): model backend crashed \(1\)/,
  );
  // exponential backoff 100 ms, 200 ms between the three attempts
  assert.ok(performance.now() - t0 >= 300, `retries waited for the backoff (${(performance.now() - t0).toFixed(0)} ms)`);
  await q(['status']);
  assert.match(out.join(''), /eval-slice: 0 waiting, 0 active, 0 delayed \(retry backoff\), 1 failed, 0 completed; 1 worker\(s\): broken/);
  assert.match(out.join(''), /failed eval-slice-\S+ after 3 attempt\(s\): model backend crashed \(1\)/);
  } finally {
    await bad.close();
  }
  // the cause is fixed (a working worker); retry, and the same command picks the job up again
  const good = await startWorker({ queueUrl: url, name: 'fixed', loadModel: async () => new HashLM() });
  try {
    out.length = 0;
    await q(['retry']);
    assert.match(out.join(''), /eval-slice: 1 failed job\(s\) retried/);
    const merged = await runDistributedEvaluation({ queueUrl: url, modelDir, task: 'sst2', data, batchSize: 2, sliceSize: 100, pollMs: 50, timeoutMs: 20_000 });
    assert.deepEqual(merged, await runEvaluation(new HashLM(), { task: 'sst2', data, batchSize: 2 }));
  } finally {
    await good.close();
  }
  out.length = 0;
  await q(['clean']);
  await q(['status']);
  assert.match(out.join(''), /eval-slice: 1 finished job\(s\) removed\neval-slice: 0 waiting, 0 active, 0 delayed \(retry backoff\), 0 failed, 0 completed; 0 worker\(s\)/);
});
