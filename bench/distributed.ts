/**
 * `npm run bench -- distributed`: the job queue's throughput on this machine, as one JSON object.
 *
 * `less`: LESS gradient-feature extraction (the `select grads` stage) on the embedded model
 * (assets/tiny-english-lm, LoRA r = 8 on c_attn, dense projection) for a pool of DIST_BENCH_POOL rows
 * (default 192) and 16 target rows, 2 warmup checkpoints, shards of DIST_BENCH_SHARD rows (default 16):
 * one process (`select grads`), then the same datastore by 1, 2 and 4 `lmtune worker` processes
 * (LMTUNE_THREADS=1 each) on a local Redis, after the workers are up (their model load and encoding is in
 * their first job, as in a cluster). Every run's datastore is checked byte-identical to the single one.
 * From the measured per-job compute time and the coordinator's wall time it derives the queue overhead per
 * job and an estimate of the rows/s on more machines (see docs/distributed.md).
 *
 * `mezo`: data-parallel MeZO's bytes per step through Redis (bench/dp-mezo.ts): the exchange alone for
 * 1–8 ranks, and real `lmtune train --data-parallel` ranks for 1–3.
 */
import '../src/node/host.ts';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSelectConfig } from '../src/cli/select.ts';
import { runStage } from '../src/select/pipeline.ts';
import { SHARED_DATA } from '../src/tasks/test-fixtures.ts';
import { redisSkipReason, startLocalRedis } from '../src/distributed/redis-server.ts';
import { benchDataParallelMezo } from './dp-mezo.ts';
import { LESS_GRAD_SHARD, type LessShardResult } from '../src/distributed/less-shards.ts';
import { differingFiles, filesUnder, ROOT, spawnWorker } from '../src/distributed/queue-workers.test-util.ts';

async function benchLessQueue(): Promise<Record<string, unknown>> {
  const poolRows = Number(process.env.DIST_BENCH_POOL ?? 192);
  const shardRows = Number(process.env.DIST_BENCH_SHARD ?? 16);
  const workerCounts = (process.env.DIST_BENCH_WORKERS ?? '1,2,4').split(',').map(Number);
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-bench-dist-'));
  const redis = await startLocalRedis();
  try {
    const poolLines = readFileSync(join(SHARED_DATA, 'instruct-pool/pool.jsonl'), 'utf8').split('\n').filter(Boolean);
    const stride = Math.max(1, Math.floor(poolLines.length / poolRows));
    const pool = join(tmp, 'pool.jsonl');
    writeFileSync(pool, poolLines.filter((_, i) => i % stride === 3).slice(0, poolRows).join('\n') + '\n');
    const target = join(tmp, 'target.jsonl');
    writeFileSync(target, readFileSync(join(SHARED_DATA, 'instruct-pool/targets/trec_target.jsonl'), 'utf8').split('\n').filter(Boolean).slice(0, 16).join('\n') + '\n');
    const cfg = buildSelectConfig({ model: join(ROOT, 'assets/tiny-english-lm'), pool, target, truncation: 'left', warmupPercentage: '0.1', warmupEpochs: '2', warmupBatchSize: '4', warmupLr: '1e-3', projDim: '256', shardRows: String(shardRows), gradBatchSize: '8', threads: '1' });
    const base = join(tmp, 'single');
    await runStage('warmup', base, cfg);
    const fresh = (name: string): string => {
      const dir = join(tmp, name);
      cpSync(join(base, 'select.json'), join(dir, 'select.json'));
      cpSync(join(base, 'warmup'), join(dir, 'warmup'), { recursive: true });
      return dir;
    };
    const single = fresh('one-process');
    let t = performance.now();
    const g = (await runStage('grads', single, null)).grads!;
    const singleSeconds = (performance.now() - t) / 1000;
    const rows = 2 * (g.pool.rows + g.target.rows);
    const reference = filesUnder(join(single, 'grads'), (r) => r === 'done.json');
    const runs: Record<string, unknown>[] = [];
    for (const n of workerCounts) {
      const url = `${redis.url}/${n}`;
      const ws = Array.from({ length: n }, () => spawnWorker(url, ['--kinds', LESS_GRAD_SHARD]));
      try {
        await Promise.all(ws.map((w) => w.waitFor(/serving/, 60_000)));
        const dir = fresh(`workers-${n}`);
        const results: LessShardResult[] = [];
        t = performance.now();
        const { runGradsQueued } = await import('../src/distributed/less-shards.ts');
        const { readWarmup } = await import('../src/select/warmup.ts');
        const { readConfig } = await import('../src/select/config.ts');
        await runGradsQueued(readConfig(dir), dir, readWarmup(dir)!, {}, { queueUrl: url, pollMs: 50 });
        const seconds = (performance.now() - t) / 1000;
        const identical = differingFiles(filesUnder(join(dir, 'grads'), (r) => r === 'done.json'), reference).length === 0;
        // the jobs' own compute seconds are in their results, which the queue keeps
        const { Queue } = await import('bullmq');
        const { connectionFromUrl, queueName } = await import('../src/distributed/jobs.ts');
        const q = new Queue(queueName(LESS_GRAD_SHARD), { connection: connectionFromUrl(url) });
        for (const j of await q.getCompleted(0, 10_000)) results.push(j.returnvalue as LessShardResult);
        await q.close();
        const jobSeconds = results.map((r) => r.seconds).sort((a, b) => a - b);
        runs.push({
          workers: n,
          seconds: round(seconds),
          rows_per_s: round(rows / seconds),
          speedup_vs_1_worker: undefined,
          jobs: results.length,
          job_seconds_median: round(jobSeconds[Math.floor(jobSeconds.length / 2)] ?? 0),
          job_seconds_max: round(jobSeconds[jobSeconds.length - 1] ?? 0),
          job_seconds_sum: round(jobSeconds.reduce((a, b) => a + b, 0)),
          identical_to_single_process: identical,
        });
      } finally {
        for (const w of ws) w.kill('SIGTERM');
        await Promise.all(ws.map((w) => w.exited));
      }
    }
    const one = runs.find((r) => r.workers === 1);
    for (const r of runs) if (one) r.speedup_vs_1_worker = round((one.rows_per_s as number) > 0 ? (r.rows_per_s as number) / (one.rows_per_s as number) : 0);
    // the estimate: with W workers on W machines, each job costs its compute time c plus the queue's
    // overhead o (enqueue, the blocking pop, the lock, the completion, the coordinator's poll); the
    // coordinator is one process polling every job, so the wall time is about jobs·(c + o)/W + startup
    const estimate = (() => {
      if (!one) return null;
      const jobs = one.jobs as number;
      const c = (one.job_seconds_median as number) ?? 0;
      const o = Math.max(0, ((one.seconds as number) - (one.job_seconds_sum as number)) / Math.max(1, jobs));
      const rowsPerJob = rows / Math.max(1, jobs);
      return {
        rows_per_job: round(rowsPerJob),
        compute_s_per_job: round(c),
        queue_overhead_s_per_job: round(o),
        model: 'rows/s(W) ≈ W · rows_per_job / (compute_s_per_job + queue_overhead_s_per_job), while W ≤ jobs and the shared folder keeps up',
        projected_rows_per_s: Object.fromEntries([1, 8, 32, 128].map((w) => [w, round((Math.min(w, jobs) * rowsPerJob) / Math.max(1e-9, c + o))])),
      };
    })();
    return {
      model: 'assets/tiny-english-lm (4 layers, d = 128), LoRA r = 8 on c_attn (16,384 gradient values), dense projection d = 256, f16',
      pool_rows: g.pool.rows,
      target_rows: g.target.rows,
      checkpoints: 2,
      shard_rows: shardRows,
      feature_rows: rows,
      single_process: { seconds: round(singleSeconds), rows_per_s: round(rows / singleSeconds) },
      queue: runs,
      estimate,
    };
  } finally {
    await redis.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export async function benchDistributed(): Promise<Record<string, unknown>> {
  let load = '';
  try {
    load = execSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    load = 'unknown';
  }
  const skip = redisSkipReason();
  const less = skip ? { skipped: skip } : await benchLessQueue();
  return {
    bench: 'distributed',
    machine: { cpus: cpus().length, uptime_before: load, uptime_after: execSync('uptime', { encoding: 'utf8' }).trim() },
    less,
    // data-parallel MeZO's bytes per step (bench/dp-mezo.ts); kept apart from `less`
    mezo: skip ? { skipped: skip } : await benchDataParallelMezo(),
  };
}
