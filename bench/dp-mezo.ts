/**
 * Data-parallel MeZO's network cost: bytes through Redis per training step (Redis's `INFO stats`,
 * total_net_input_bytes and total_net_output_bytes), measured on real `lmtune train --data-parallel`
 * ranks (tiny GPT-2, SST-2, batch 6, LMTUNE_THREADS=1 each) against a local redis-server, and on the
 * exchange alone. Dev evaluation is off (rank 0 evaluating makes the others wait; docs/distributed.md
 * gives the cost per second of waiting).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { startLocalRedis } from '../src/distributed/redis-server.ts';
import { RedisDataParallel } from '../src/distributed/data-parallel.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const MAIN = join(ROOT, 'src/cli/main.ts');
const MODEL = join(ROOT, '../shared/data/models/tiny-random-gpt2');
const SST2 = join(ROOT, '../shared/data/sst2/glue_train.jsonl');

function rank(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env: { ...process.env, LMTUNE_THREADS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`lmtune train failed (${code}):\n${err}`))));
  });
}

async function netBytes(r: Redis): Promise<{ input: number; output: number }> {
  const info = await r.info('stats');
  const get = (k: string) => Number(new RegExp(`${k}:(\\d+)`).exec(info)![1]);
  return { input: get('total_net_input_bytes'), output: get('total_net_output_bytes') };
}

export interface DataParallelBytes {
  world: number;
  /** all ranks together, per step */
  into_redis_per_step: number;
  out_of_redis_per_step: number;
  per_rank_per_step: number;
}

/**
 * Bytes per MeZO step through Redis for each world size, in real training: the ranks are started, and
 * once they exchange (a step hash of step ≥ 1 exists) Redis's counters are read; they are read again
 * after the ranks exit, and the difference is divided by the steps taken in between (the ranks' meeting,
 * whose length depends on how far apart they start, is left out; their goodbye, ~100 B per rank, is in).
 */
export async function measureDataParallelBytes(worlds: readonly number[] = [1, 2, 3], steps = 40): Promise<DataParallelBytes[]> {
  const redis = await startLocalRedis();
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-dp-bytes-'));
  const client = new Redis(redis.url);
  try {
    const data = join(tmp, 'sst2.jsonl');
    writeFileSync(data, readFileSync(SST2, 'utf8').split('\n').slice(0, 60).join('\n') + '\n');
    const out: DataParallelBytes[] = [];
    for (const world of worlds) {
      const args = ['train', '--model', MODEL, '--task', 'sst2', '--data', data, '--num-dev', '8', '--max-steps', String(steps), '--batch-size', '6', '--save-every', String(steps), '--eval-every', '0', '--optimizer', 'mezo', '--lr', '1e-3', '--zo-eps', '1e-3', '--seed', '3', '--out', join(tmp, `w${world}`), '--data-parallel', `${redis.url}/${world}`, '--world', String(world)];
      // a database per world: the step hashes a finished run leaves (they expire in 1 h) are not this one's
      const db = new Redis(`${redis.url}/${world}`);
      let exited = false;
      const ranks = Promise.all(Array.from({ length: world }, (_, r) => rank([...args, '--rank', String(r)]))).finally(() => (exited = true));
      let first = -1;
      let before = { input: 0, output: 0 };
      while (first < 1 && !exited) {
        // the step hashes alive now (rank 0 drops step t−2's); the newest is where the ranks are
        const keys = await db.keys('lmtune:dp:*:step:*');
        const newest = Math.max(-1, ...keys.map((k) => Number(k.slice(k.lastIndexOf(':') + 1))));
        if (newest >= 1) {
          before = await netBytes(client);
          first = newest;
        } else await new Promise((r) => setTimeout(r, 10));
      }
      await ranks;
      const after = await netBytes(client);
      db.disconnect();
      if (first < 1) throw new Error(`world ${world}: the run ended before it could be measured`);
      // the counters were read while step `first` was being exchanged: steps first … steps−1 follow, about
      const d = steps - first;
      const input = (after.input - before.input) / d;
      const output = (after.output - before.output) / d;
      out.push({ world, into_redis_per_step: Math.round(input), out_of_redis_per_step: Math.round(output), per_rank_per_step: Math.round((input + output) / world) });
    }
    return out;
  } finally {
    client.disconnect();
    await redis.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The exchange alone, without training: `world` ranks in this process meet, then exchange a MeZO step's
 * numbers (units, g, l₊, l₋) `steps` times in lockstep, so no rank waits long: the fixed cost of a step,
 * all ranks together, and the time one exchange takes on this machine's loopback.
 */
export async function measureExchangeBytes(worlds: readonly number[] = [1, 2, 3, 4, 8], steps = 200): Promise<{ world: number; into_redis_per_step: number; out_of_redis_per_step: number; per_rank_per_step: number; ms_per_exchange: number }[]> {
  const redis = await startLocalRedis();
  const client = new Redis(redis.url);
  try {
    const out = [];
    for (const world of worlds) {
      const url = `${redis.url}/${world % 16}`;
      const ranks = Array.from({ length: world }, (_, rank) => new RedisDataParallel({ url, world, rank, timeoutMs: 60_000 }));
      await Promise.all(ranks.map((r) => r.join({ config: { bench: true }, steps: [0] })));
      const before = await netBytes(client);
      const t = performance.now();
      for (let s = 0; s < steps; s++) await Promise.all(ranks.map((r, i) => r.exchange(s, 12345 + s, [2, 0.1 * i + s, 0.69, 0.68])));
      const ms = (performance.now() - t) / steps;
      const after = await netBytes(client);
      await Promise.all(ranks.map((r) => r.close()));
      const input = (after.input - before.input) / steps;
      const output = (after.output - before.output) / steps;
      out.push({ world, into_redis_per_step: Math.round(input), out_of_redis_per_step: Math.round(output), per_rank_per_step: Math.round((input + output) / world), ms_per_exchange: Math.round(ms * 100) / 100 });
    }
    return out;
  } finally {
    client.disconnect();
    await redis.stop();
  }
}

/** what `npm run bench -- distributed` reports for data-parallel MeZO */
export async function benchDataParallelMezo(): Promise<Record<string, unknown>> {
  return {
    exchange_only: await measureExchangeBytes(),
    training: await measureDataParallelBytes(),
    note: 'bytes through Redis per MeZO step, all ranks together (INFO stats total_net_input_bytes / total_net_output_bytes); exchange_only: ranks in lockstep (the fixed cost); training: real lmtune train ranks, tiny GPT-2, batch 6, 40 steps (the ranks’ meeting left out), where a rank that waits for a slower one adds ≈ 100 B per second of waiting',
  };
}

// `node --import tsx bench/dp-mezo.ts`: prints the measurements as JSON
if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  process.stdout.write(JSON.stringify(await benchDataParallelMezo()) + '\n');
}
