/**
 * `npm run bench -- less-select`: LESS matching (`lmtune select match`'s own code path, runStage('match'))
 * over a synthetic pool datastore of 10⁶ rows × 8192 f16 values (16 GB, larger than the memory the stage
 * may use) against a target shaped like the reference's MMLU target (57 subtasks × 5 rows), one
 * checkpoint. Prints one JSON object with `select_rows`, `select_seconds`, `select_peak_rss_mb`
 * (target: under 90 s and 1 GB) and the stream's breakdown.
 *
 * The datastore is written once, in the real format (FeatureStore shards with header and checksums),
 * into a cache folder ($LMTUNE_BENCH_CACHE, default ../bench-cache next to the repository) and reused;
 * an interrupted generation resumes shard by shard. The match runs in a child process so its peak RSS
 * is the stage's alone. Settings: LESS_SELECT_ROWS, LESS_SELECT_DIM, LESS_SELECT_SUBTASKS,
 * LESS_SELECT_PER_SUBTASK, LESS_SELECT_AGGREGATE, LESS_SELECT_RUNS (timed runs, default 1),
 * LESS_SELECT_COLD=1 (evict the shards from the page cache before each run, with `dd iflag=nocache`).
 */
import '../src/node/host.ts';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FeatureStore, type StoreHeader } from '../src/select/datastore.ts';
import { storeDir, type GradsResult } from '../src/select/grads.ts';
import type { WarmupResult } from '../src/select/warmup.ts';
import type { SelectConfig } from '../src/select/config.ts';
import type { Aggregate } from '../src/select/match.ts';
import { stableStringify } from '../src/node/fsx.ts';

const SHARD_ROWS = 1024;

function settings(): { rows: number; dim: number; subtasks: number; perSubtask: number; aggregate: Aggregate; runs: number; cold: boolean; cache: string } {
  const env = process.env;
  return {
    rows: Number(env.LESS_SELECT_ROWS ?? 1_000_000),
    dim: Number(env.LESS_SELECT_DIM ?? 8192),
    subtasks: Number(env.LESS_SELECT_SUBTASKS ?? 57),
    perSubtask: Number(env.LESS_SELECT_PER_SUBTASK ?? 5),
    aggregate: (env.LESS_SELECT_AGGREGATE ?? 'max-subtask-mean') as Aggregate,
    runs: Number(env.LESS_SELECT_RUNS ?? 1),
    cold: env.LESS_SELECT_COLD === '1',
    cache: resolve(env.LMTUNE_BENCH_CACHE ?? fileURLToPath(new URL('../../bench-cache', import.meta.url))),
  };
}

/** seeded unit rows: uniform values from a xorshift generator (cheap; the values do not change the work) */
function unitRows(n: number, d: number, seed: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const x = new Float32Array(n * d);
  for (let r = 0; r < n; r++) {
    let q = 0;
    for (let k = 0; k < d; k++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      const v = (s >>> 0) / 2147483648 - 1;
      x[r * d + k] = v;
      q += v * v;
    }
    const inv = 1 / Math.sqrt(q);
    for (let k = 0; k < d; k++) x[r * d + k]! *= inv;
  }
  return x;
}

function header(rows: number, dim: number, feature: 'adam' | 'sgd', file: string): StoreHeader {
  return {
    format: 'lmtune-less-features',
    version: 1,
    rows,
    dim,
    dtype: 'f16',
    shardRows: SHARD_ROWS,
    model: 'synthetic',
    checkpoint: 'epoch-1:synthetic',
    projection: { kind: 'rademacher', seed: 0, inDim: 442368 },
    data: { file, sha256: 'synthetic' },
    feature,
    maxLength: 128,
  };
}

/** a selection folder whose warmup and grads stages are "done" with synthetic datastores; written once */
function ensureFolder(): string {
  const o = settings();
  const out = join(o.cache, `less-select-${o.rows}x${o.dim}-f16-t${o.subtasks}x${o.perSubtask}`);
  if (existsSync(join(out, 'ready.json'))) return out;
  mkdirSync(out, { recursive: true });
  const M = o.subtasks * o.perSubtask;
  const targetPath = join(out, 'target.jsonl');
  const lines: string[] = [];
  for (let m = 0; m < M; m++) lines.push(JSON.stringify({ messages: [{ role: 'user', content: `q${m}` }, { role: 'assistant', content: `a${m}` }], subtask: `subtask-${Math.floor(m / o.perSubtask)}` }));
  writeFileSync(targetPath, lines.join('\n') + '\n');
  const ck = { name: 'epoch-1', epoch: 1, step: 100, lr: 1e-5, dir: 'warmup/epochs/epoch-1' };
  const warm: WarmupResult = { rows: Math.floor(o.rows * 0.05), stepsPerEpoch: 100, checkpoints: [ck], seconds: 0 };
  const grads: GradsResult = {
    checkpoints: [ck.name],
    dims: [o.dim],
    gradDim: 442368,
    pool: { rows: o.rows, truncated: 0, skipped: [] },
    target: { rows: M, truncated: 0, skipped: [] },
    examplesPerSecond: 0,
    seconds: 0,
  };
  const cfg: SelectConfig = {
    version: 1,
    model: join(out, 'model'),
    pool: join(out, 'pool.jsonl'),
    target: targetPath,
    seed: 42,
    maxLength: 128,
    truncation: 'right',
    skipInvalid: false,
    threads: null,
    warmup: { percentage: 0.05, epochs: 1, lr: 2e-5, batchSize: 32, warmupRatio: 0.03, clipNorm: 1, loraRank: 8, loraAlpha: 32, loraTargets: [] },
    grads: { projection: 'rademacher', projDims: [o.dim], projSeed: 0, dtype: 'f16', batchSize: 16, shardRows: SHARD_ROWS },
    match: { aggregate: o.aggregate, dim: o.dim },
    write: { percentage: 0.05 },
  };
  mkdirSync(join(out, 'warmup'), { recursive: true });
  mkdirSync(join(out, 'grads'), { recursive: true });
  writeFileSync(join(out, 'select.json'), stableStringify(cfg));
  writeFileSync(join(out, 'warmup', 'done.json'), stableStringify(warm));
  writeFileSync(join(out, 'grads', 'done.json'), stableStringify(grads));
  const target = FeatureStore.open(storeDir(out, ck.name, 'target', o.dim), header(M, o.dim, 'sgd', targetPath));
  for (let i = 0; i < target.shards; i++) {
    const [s, e] = target.range(i);
    target.writeShard(i, unitRows(e - s, o.dim, 1_000_000 + i));
  }
  const pool = FeatureStore.open(storeDir(out, ck.name, 'pool', o.dim), header(o.rows, o.dim, 'adam', join(out, 'pool.jsonl')));
  const t0 = performance.now();
  for (let i = 0; i < pool.shards; i++) {
    if (existsSync(pool.shardPath(i))) continue; // shards are written atomically: present means whole
    const [s, e] = pool.range(i);
    pool.writeShard(i, unitRows(e - s, o.dim, i + 1));
    if (i % 50 === 0) process.stderr.write(`less-select: writing the synthetic datastore, shard ${i + 1}/${pool.shards} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
  }
  writeFileSync(join(out, 'ready.json'), stableStringify({ rows: o.rows, dim: o.dim, seconds: (performance.now() - t0) / 1000 }));
  return out;
}

function evict(out: string): void {
  const o = settings();
  const st = FeatureStore.read(storeDir(out, 'epoch-1', 'pool', o.dim));
  for (let i = 0; i < st.shards; i++) spawnSync('dd', [`if=${st.shardPath(i)}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
}

function cachedMb(): number {
  const m = /^Cached:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : -1;
}

/** child: one timed `select match` */
async function measure(out: string): Promise<void> {
  const { runStage } = await import('../src/select/pipeline.ts');
  rmSync(join(out, 'match'), { recursive: true, force: true });
  const t = performance.now();
  const cpu = process.cpuUsage();
  const r = await runStage('match', out, null);
  const seconds = (performance.now() - t) / 1000;
  const used = process.cpuUsage(cpu);
  process.stdout.write(JSON.stringify({ seconds, cpuSeconds: (used.user + used.system) / 1e6, peakRssMb: process.resourceUsage().maxRSS / 1024, match: r.match }) + '\n');
}

export async function benchLessSelect(_threads: number): Promise<Record<string, unknown>> {
  const o = settings();
  const out = ensureFolder();
  const runs: Record<string, unknown>[] = [];
  for (let k = 0; k < o.runs; k++) {
    if (o.cold) evict(out);
    const cached = cachedMb();
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    process.stderr.write(`less-select: run ${k + 1}/${o.runs}, load ${load}, page cache ${cached} MB\n`);
    const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), 'measure', out], { encoding: 'utf8', maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'inherit'] });
    if (r.status !== 0) throw new Error(`less-select: the measuring process failed (status ${r.status})`);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!) as { seconds: number; cpuSeconds: number; peakRssMb: number; match: { stream?: { bytes: number; waitSeconds: number; verifySeconds: number; computeSeconds: number } } };
    const st = m.match.stream;
    runs.push({
      seconds: Math.round(m.seconds * 10) / 10,
      // CPU time of the process (all its threads): what the stage costs when it has the cores to itself
      cpu_seconds: Math.round(m.cpuSeconds * 10) / 10,
      peak_rss_mb: Math.round(m.peakRssMb),
      page_cache_mb_before: cached,
      evicted: o.cold,
      load_before: load,
      load_after: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
      read_wait_seconds: st ? Math.round(st.waitSeconds * 10) / 10 : null,
      checksum_seconds: st ? Math.round(st.verifySeconds * 10) / 10 : null,
      compute_seconds: st ? Math.round(st.computeSeconds * 10) / 10 : null,
      gb_per_s: st ? Math.round((st.bytes / 1e9 / m.seconds) * 100) / 100 : null,
    });
  }
  const last = runs[runs.length - 1] ?? {};
  return {
    bench: 'less-select',
    select_rows: o.rows,
    select_seconds: last.seconds,
    select_cpu_seconds: last.cpu_seconds,
    select_peak_rss_mb: last.peak_rss_mb,
    dim: o.dim,
    dtype: 'f16',
    datastore_gb: Math.round((o.rows * o.dim * 2) / 1e8) / 10,
    checkpoints: 1,
    target: { subtasks: o.subtasks, rows: o.subtasks * o.perSubtask, aggregate: o.aggregate },
    runs,
    datastore: out,
  };
}

if (process.argv[2] === 'measure' && process.argv[1] === fileURLToPath(import.meta.url)) await measure(process.argv[3]!);
