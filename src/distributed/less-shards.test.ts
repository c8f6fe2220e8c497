/**
 * Distributed LESS on a real local Redis (redis-server started here, never a mock), with `lmtune worker`
 * child processes on the embedded 4-layer model: the datastore N workers build is byte-identical to the
 * single-process one (every header and shard), and stays so when a worker is SIGKILLed mid-job, when a
 * worker gets SIGTERM while it holds a job (it finishes it and exits 0), and when Redis is killed and
 * restarted mid-run (append-only file, fsync always: nothing lost, no job run twice). A resumed
 * coordinator enqueues only the missing shards; a worker on another code version, or a datastore
 * folder made with another projection, is refused at once with the reason.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import '../node/host.ts';
import { Command } from 'commander';
import { buildSelectConfig, register as registerSelect } from '../cli/select.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';
import { runStage } from '../select/pipeline.ts';
import { stableStringify } from '../node/fsx.ts';
import type { SelectConfig } from '../select/config.ts';
import './kinds.ts';
import { LESS_GRAD_SHARD } from './less-shards.ts';
import { connectionFromUrl, queueName } from './jobs.ts';
import { redisSkipReason, startLocalRedis, type LocalRedis } from './redis-server.ts';
import { startWorker } from './worker.ts';
import { ROOT, differingFiles, filesUnder, spawnWorker, type ChildWorker } from './queue-workers.test-util.ts';

const skip = redisSkipReason();
const MODEL = join(ROOT, 'assets/tiny-english-lm');
const tmp = mkdtempSync(join(tmpdir(), 'lmtune-dist-less-'));
const base = join(tmp, 'base');
let cfg: SelectConfig;
let reference: Map<string, Buffer>;
let redis: LocalRedis | undefined;
const children: ChildWorker[] = [];

const grads = (out: string) => filesUnder(join(out, 'grads'), (rel) => rel === 'done.json');

/** a new selection folder holding the base run's configuration and warmup, and no gradients */
function fresh(name: string): string {
  const dir = join(tmp, name);
  cpSync(join(base, 'select.json'), join(dir, 'select.json'));
  cpSync(join(base, 'warmup'), join(dir, 'warmup'), { recursive: true });
  return dir;
}

function worker(url: string, args: string[] = []): ChildWorker {
  const w = spawnWorker(url, ['--kinds', LESS_GRAD_SHARD, ...args]);
  children.push(w);
  return w;
}

before(async () => {
  if (skip) return;
  // 40 pool rows from every source and 10 target rows: 5 pool + 2 target shards of 8 rows per checkpoint
  const pool = join(tmp, 'pool.jsonl');
  writeFileSync(pool, readFileSync(join(SHARED_DATA, 'instruct-pool/pool.jsonl'), 'utf8').split('\n').filter((l, i) => l && i % 750 === 11).slice(0, 40).join('\n') + '\n');
  const target = join(tmp, 'target.jsonl');
  writeFileSync(target, readFileSync(join(SHARED_DATA, 'instruct-pool/targets/trec_target.jsonl'), 'utf8').split('\n').filter((l, i) => l && i % 4 === 1).slice(0, 10).join('\n') + '\n');
  cfg = buildSelectConfig({ model: MODEL, pool, target, truncation: 'left', warmupPercentage: '0.25', warmupEpochs: '2', warmupBatchSize: '4', warmupLr: '1e-3', projDim: '32,48', shardRows: '8', gradBatchSize: '4', percentage: '0.25', threads: '1' });
  redis = await startLocalRedis();
  await runStage('run', base, cfg);
  reference = grads(base);
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await redis?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

test('3 workers build a datastore byte-identical to the single-process one; a resumed coordinator enqueues only what is missing', { skip, timeout: 90_000 }, async () => {
  // 2 checkpoints × (5 pool + 2 target shards), 2 dimensions each: 28 shard files and 8 headers
  assert.equal(reference.size, 36);
  const url = `${redis!.url}/1`;
  const ws = [worker(url), worker(url), worker(url)];
  const dir = fresh('three');
  const messages: string[] = [];
  const seenWorkers: number[] = [];
  const res = await runStage('run', dir, null, { onMessage: (m) => messages.push(m), onProgress: (p) => p.stage === 'grads' && p.detail && seenWorkers.push(Number(p.detail.split(' ')[0])) }, { queue: { queueUrl: url, pollMs: 100, timeoutMs: 80_000 } });
  assert.deepEqual(differingFiles(grads(dir), reference), []);
  assert.match(messages.join('\n'), /grads: 14 of 14 shards to compute/);
  assert.ok(Math.max(...seenWorkers) === 3, `the coordinator saw the 3 workers (${[...new Set(seenWorkers)]})`);
  // the rest of the pipeline runs here on the shared datastore: the same selection, byte for byte
  assert.ok(readFileSync(join(dir, 'selected.jsonl')).equals(readFileSync(join(base, 'selected.jsonl'))));
  assert.ok(readFileSync(join(dir, 'scores.csv')).equals(readFileSync(join(base, 'scores.csv'))));
  assert.equal(res.grads!.gradDim, JSON.parse(readFileSync(join(base, 'grads/done.json'), 'utf8')).gradDim);
  assert.equal(stableStringify(res.grads!.pool), stableStringify(JSON.parse(readFileSync(join(base, 'grads/done.json'), 'utf8')).pool));
  // every worker took part
  for (const w of ws) assert.ok(w.lines.some((l) => /less-grad-shard job \S+ done/.test(l)), `a worker ran no job:\n${w.lines.join('\n')}`);

  // resume: two shards lost and the stage not finished; the same command recomputes those two only
  rmSync(join(dir, 'grads/done.json'));
  rmSync(join(dir, 'grads/epoch-1/pool/dim48/shard-00003.safetensors'));
  rmSync(join(dir, 'grads/epoch-2/target/dim32/shard-00001.safetensors'));
  messages.length = 0;
  await runStage('grads', dir, null, { onMessage: (m) => messages.push(m) }, { queue: { queueUrl: url, pollMs: 100, timeoutMs: 60_000 } });
  assert.match(messages.join('\n'), /grads: 2 of 14 shards to compute/);
  assert.deepEqual(differingFiles(grads(dir), reference), []);

  // the command line: `lmtune select grads --out DIR --queue URL` (commander, in this process)
  const viaCli = fresh('cli');
  const program = new Command().exitOverride();
  registerSelect(program);
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = () => true;
  try {
    await program.parseAsync(['node', 'lmtune', 'select', 'grads', '--out', viaCli, '--queue', url, '--no-progress']);
  } finally {
    process.stdout.write = write;
  }
  assert.deepEqual(differingFiles(grads(viaCli), reference), []);
  for (const w of ws) w.kill('SIGTERM');
  assert.deepEqual(await Promise.all(ws.map((w) => w.exited)), [0, 0, 0]);
});

test('a worker SIGKILLed mid-job loses nothing: its job is taken over, the datastore is identical', { skip, timeout: 90_000 }, async () => {
  const url = `${redis!.url}/2`;
  const doomed = worker(url, ['--lock-ms', '1000']);
  const dir = fresh('sigkill');
  const run = runStage('grads', dir, null, {}, { queue: { queueUrl: url, pollMs: 100, timeoutMs: 80_000 } });
  // a failure before `run` is awaited must not leave it pending (and the process alive)
  run.catch(() => undefined);
  // its first job also loads the model and encodes the data (seconds): it is mid-job when killed
  const [, id] = await doomed.waitFor(/less-grad-shard job (\S+) \(attempt 1\)/, 30_000);
  doomed.kill('SIGKILL');
  assert.equal(await doomed.exited, null);
  const survivor = worker(url, ['--lock-ms', '1000']);
  await run;
  assert.deepEqual(differingFiles(grads(dir), reference), []);
  assert.ok(survivor.lines.some((l) => l.includes(`job ${id} (attempt`)), `the survivor ran the killed worker's job ${id}`);
  survivor.kill('SIGTERM');
  assert.equal(await survivor.exited, 0);
});

test('SIGTERM: a worker finishes the job it holds, then exits 0; the run completes identically', { skip, timeout: 90_000 }, async () => {
  const url = `${redis!.url}/3`;
  const w = worker(url);
  const dir = fresh('sigterm');
  const run = runStage('grads', dir, null, {}, { queue: { queueUrl: url, pollMs: 100, timeoutMs: 80_000 } });
  run.catch(() => undefined);
  const [, id] = await w.waitFor(/less-grad-shard job (\S+) \(attempt 1\)/, 30_000);
  w.kill('SIGTERM');
  assert.equal(await w.exited, 0);
  const tail = w.lines.join('\n');
  // the job it held is done before it stopped (not released), and it took no other job after the signal
  assert.match(tail, new RegExp(`SIGTERM: finishing the current job[^]*job ${id} done[^]*stopped`));
  const after = w.lines.slice(w.lines.findIndex((l) => l.startsWith('SIGTERM')));
  assert.ok(!after.some((l) => /\(attempt/.test(l)), `took a job after SIGTERM:\n${after.join('\n')}`);
  const other = worker(url);
  await run;
  assert.deepEqual(differingFiles(grads(dir), reference), []);
  other.kill('SIGTERM');
  assert.equal(await other.exited, 0);
});

test('Redis killed and restarted mid-run (append-only, fsync always): coordinator and workers reconnect; nothing lost, nothing run twice', { skip, timeout: 90_000 }, async () => {
  const r = await startLocalRedis(10_000, { persist: true });
  try {
    const ws = [worker(r.url, ['--lock-ms', '10000']), worker(r.url, ['--lock-ms', '10000'])];
    const dir = fresh('restart');
    let restarted = false;
    let restart: Promise<void> | undefined;
    const messages: string[] = [];
    const run = runStage(
      'grads',
      dir,
      null,
      {
        onMessage: (m) => messages.push(m),
        onProgress: (p) => {
          if (!restarted && p.done >= 3) {
            restarted = true;
            restart = r.restart(1500);
          }
        },
      },
      { queue: { queueUrl: r.url, pollMs: 100, timeoutMs: 80_000 } },
    );
    await run;
    assert.ok(restarted, 'Redis was restarted during the run');
    await restart;
    assert.deepEqual(differingFiles(grads(dir), reference), []);
    assert.match(messages.join('\n'), /queue connection: .*reconnecting/);
    // 14 jobs, each completed once: no job lost with the restart, none run a second time
    const q = new Queue(queueName(LESS_GRAD_SHARD), { connection: connectionFromUrl(r.url) });
    try {
      assert.deepEqual(await q.getJobCounts('completed', 'failed', 'waiting', 'active'), { completed: 14, failed: 0, waiting: 0, active: 0 });
    } finally {
      await q.close();
    }
    const done = ws.flatMap((w) => w.lines).map((l) => /less-grad-shard job (\S+) done/.exec(l)?.[1]).filter((x): x is string => x !== undefined);
    assert.equal(done.length, 14, `jobs done: ${done.join(', ')}`);
    assert.equal(new Set(done).size, 14);
    for (const w of ws) w.kill('SIGTERM');
    assert.deepEqual(await Promise.all(ws.map((w) => w.exited)), [0, 0]);
  } finally {
    await r.stop();
  }
});

test('a worker on another code version, or a datastore made with another projection, is refused at once', { skip, timeout: 60_000 }, async () => {
  const url = `${redis!.url}/4`;
  const old = await startWorker({ queueUrl: url, name: 'old', kinds: [LESS_GRAD_SHARD], codeVersion: 'lmtune@0.0.1/jobs-0', loadModel: () => Promise.reject(new Error('unused')) });
  try {
    await assert.rejects(
      runStage('grads', fresh('old-code'), null, {}, { queue: { queueUrl: url, pollMs: 50, timeoutMs: 30_000 } }),
      /less-grad-shard job \S+ \(#\d+ of 14\) failed after 1 attempt\(s\): worker old refused job .*code version mismatch: the job was made by lmtune@.*\/jobs-\d+, this worker runs lmtune@0\.0\.1\/jobs-0/,
    );
  } finally {
    await old.close();
  }
  // a folder whose first datastore was computed with projection seed 7: the worker refuses to add to it
  const dir = fresh('other-projection');
  const header = JSON.parse(readFileSync(join(base, 'grads/epoch-1/pool/dim32/header.json'), 'utf8')) as { projection: { seed: number } };
  header.projection.seed = 7;
  cpSync(join(base, 'grads/epoch-1/pool/dim32/header.json'), join(dir, 'grads/epoch-1/pool/dim32/header.json'));
  writeFileSync(join(dir, 'grads/epoch-1/pool/dim32/header.json'), stableStringify(header));
  const url2 = `${redis!.url}/5`;
  const w = await startWorker({ queueUrl: url2, name: 'careful', kinds: [LESS_GRAD_SHARD], loadModel: () => Promise.reject(new Error('unused')) });
  try {
    await assert.rejects(
      runStage('grads', dir, null, {}, { queue: { queueUrl: url2, pollMs: 50, timeoutMs: 60_000 } }),
      /failed after 1 attempt\(s\): worker careful refused job .*dim32: this datastore was computed with a different projection: it holds [^]*"seed": 7[^]*this run has [^]*"seed": 0/,
    );
  } finally {
    await w.close();
  }
});
