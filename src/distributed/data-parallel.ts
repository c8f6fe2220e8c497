/**
 * Data-parallel MeZO over Redis: the `DataParallel` that `lmtune train --data-parallel redis://…` gives
 * the training loop (src/train/data-parallel.ts says what the ranks compute; this file how they meet and
 * exchange). A step moves only its seed and a few float64 per rank.
 *
 * Meeting (`join`), before the first step of every start or restart:
 *   each rank writes `lmtune:dp:join:<rank>:<nonce>` = {world, code version, model fingerprint, config, the steps
 *   it can start from, a random nonce}, with a 3 s lifetime it refreshes every 250 ms while it waits, and
 *   reads every `lmtune:dp:join:*`. A rank whose entry differs (config, --world, code, model, or a second
 *   process with the same --rank) is refused by name on both sides. Once all `world` ranks are in,
 *   the session id is the hash of their nonces, so keys left by an earlier attempt are never read.
 *   One data-parallel run per Redis database at a time (use redis://HOST:PORT/DB to run several).
 *
 * Each step (`exchange`): one Lua script call, atomic, writes `seed:<hex float64>.<hex float64>…` into
 *   the hash `lmtune:dp:<session>:step:<t>` (field = rank), refreshes this rank's heartbeat
 *   (`…:alive:<rank>`, lifetime = the timeout, also refreshed by a timer, so a rank busy evaluating dev
 *   stays alive), and, if this rank is the last one in, pushes a wake-up onto every other rank's list.
 *   The others block on their list (BLPOP, at most 1 s at a time) and then read the hash (HGETALL).
 *   Between two waits a rank checks the ones still missing: one without a heartbeat is dead (SIGKILL, a
 *   lost machine) and the step stops, naming it; a rank that failed posted `…:abort` with its error,
 *   which stops the others at once. No polling: a step costs the same bytes however long ranks wait.
 *   Rank 0 drops step t−2's hash (every rank has read it by then).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { Redis, type Result } from 'ioredis';
import { LmtuneError } from '../util/errors.ts';
import { checkDataParallel } from '../train/stepper.ts';
import { jsonDiff, replicaConfig, replicaDir, type DataParallel, type ReplicaJoin } from '../train/data-parallel.ts';
import { absolutePaths, readRunConfig, train, type TrainHooks, type TrainSummary } from '../train/loop.ts';
import type { TrainConfig } from '../train/options.ts';
import { claimFolder } from '../node/outputs.ts';
import { CODE_VERSION, connectionFromUrl, fingerprintModelDir } from './jobs.ts';

export interface RedisDataParallelOptions {
  readonly url: string;
  readonly world: number;
  readonly rank: number;
  /** a rank without a heartbeat for this long is dead (default 60 s) */
  readonly timeoutMs?: number;
  /** how long `join` waits for the other ranks to start (default 10 × timeoutMs) */
  readonly joinTimeoutMs?: number;
  /** what must also be equal on every rank besides the config (e.g. the model folder's fingerprint) */
  readonly identity?: Readonly<Record<string, string>>;
}

const PREFIX = 'lmtune:dp:';
const JOIN_TTL_MS = 3000;
const JOIN_POLL_MS = 250;

interface JoinEntry {
  rank: number;
  world: number;
  nonce: string;
  code: string;
  identity: Record<string, string>;
  config: Record<string, unknown>;
  steps: number[];
  host: string;
  pid: number;
}

function toHex(x: number): string {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(x);
  return b.toString('hex');
}

function fromHex(h: string): number {
  if (!/^[0-9a-f]{16}$/.test(h)) throw new LmtuneError('RUNTIME', `data-parallel: malformed value ${JSON.stringify(h)} in Redis`);
  return Buffer.from(h, 'hex').readDoubleBE();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * KEYS: the step's hash, this rank's heartbeat. ARGV: rank, value, step, heartbeat ms, world, a step
 * hash to drop ('' = none), the wake-up lists' prefix (the other ranks' lists are named here rather than
 * sent: a step's bytes grow less with the world; one Redis, not a cluster). Returns how many ranks are in.
 */
const PUBLISH_LUA = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], 3600000)
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
if ARGV[6] ~= '' then redis.call('UNLINK', ARGV[6]) end
local n = redis.call('HLEN', KEYS[1])
local world = tonumber(ARGV[5])
if n >= world then
  for r = 0, world - 1 do
    if tostring(r) ~= ARGV[1] then
      redis.call('RPUSH', ARGV[7] .. r, ARGV[3])
      redis.call('PEXPIRE', ARGV[7] .. r, 3600000)
    end
  end
end
return n`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    dpPublish(numKeys: number, ...keysAndArgs: string[]): Result<number, Context>;
  }
}

export class RedisDataParallel implements DataParallel {
  readonly world: number;
  readonly rank: number;
  private readonly redis: Redis;
  private readonly timeoutMs: number;
  private readonly joinTimeoutMs: number;
  private readonly checkEveryMs: number;
  private readonly url: string;
  private session: string | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private lastStep = -1;
  private joinKey: string | null = null;

  constructor(private readonly o: RedisDataParallelOptions) {
    if (!Number.isInteger(o.world) || o.world < 1) throw new LmtuneError('CONFIG', `--world must be a positive integer, got ${o.world}`);
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.world) throw new LmtuneError('CONFIG', `--rank must be in [0, ${o.world - 1}] for --world ${o.world}, got ${o.rank}`);
    const c = connectionFromUrl(o.url, '--data-parallel');
    this.url = c.url;
    this.world = o.world;
    this.rank = o.rank;
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.joinTimeoutMs = o.joinTimeoutMs ?? 10 * this.timeoutMs;
    // a quarter of the heartbeat's lifetime, at most 1 s: a dead rank is named within timeout + 1 s
    this.checkEveryMs = Math.min(1000, Math.max(50, Math.floor(this.timeoutMs / 4)));
    // a few retries, then the command fails with the connection error (a run must not hang on a dead Redis)
    this.redis = new Redis(c.url, { maxRetriesPerRequest: 3, lazyConnect: true, retryStrategy: (n) => (n > 5 ? null : 200 * n) });
    this.redis.on('error', () => {}); // reported through the failing command
    this.redis.defineCommand('dpPublish', { lua: PUBLISH_LUA });
  }

  private key(name: string): string {
    return `${PREFIX}${this.session}:${name}`;
  }

  private async connect(): Promise<void> {
    if (this.redis.status === 'ready') return;
    try {
      await this.redis.connect();
    } catch (e) {
      throw new LmtuneError('RUNTIME', `--data-parallel ${this.url}: cannot reach Redis (${(e as Error).message})`, 'start it with: redis-server --port 6379 --bind 0.0.0.0 --save "" --appendonly no (docs/distributed.md)');
    }
  }

  private async joinEntries(): Promise<JoinEntry[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await this.redis.scan(cursor, 'MATCH', `${PREFIX}join:*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    if (!keys.length) return [];
    const raw = await this.redis.mget(...keys);
    return raw.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as JoinEntry);
  }

  async join(mine: ReplicaJoin): Promise<ReplicaJoin[]> {
    await this.connect();
    const me: JoinEntry = {
      rank: this.rank,
      world: this.world,
      nonce: randomBytes(8).toString('hex'),
      code: CODE_VERSION,
      identity: { ...(this.o.identity ?? {}) },
      config: { ...mine.config },
      steps: [...mine.steps],
      host: hostname(),
      pid: process.pid,
    };
    const text = JSON.stringify(me);
    this.joinKey = `${PREFIX}join:${this.rank}:${me.nonce}`;
    const deadline = performance.now() + this.joinTimeoutMs;
    const here = `rank ${this.rank} (${me.host}:${me.pid})`;
    // an entry of a process killed while it waited lingers for JOIN_TTL_MS; a second live process
    // with this rank keeps refreshing its own, so only a duplicate that outlives that is refused
    let duplicateSince: number | null = null;
    for (;;) {
      await this.redis.set(this.joinKey, text, 'PX', JOIN_TTL_MS);
      const entries = await this.joinEntries();
      const twins = entries.filter((e) => e.rank === this.rank && e.nonce !== me.nonce);
      if (twins.length) {
        duplicateSince ??= performance.now();
        if (performance.now() - duplicateSince > JOIN_TTL_MS + 1000) {
          throw new LmtuneError('CONFIG', `data-parallel: rank ${this.rank} (${twins[0]!.host}:${twins[0]!.pid}) also runs as --rank ${this.rank}; refusing to start ${here}`, 'give every process its own --rank in [0, --world)');
        }
      } else duplicateSince = null;
      // a refused rank leaves its entry for JOIN_TTL_MS, so the rank it differs from refuses too
      const refuse = async (err: LmtuneError): Promise<never> => {
        await this.redis.set(this.joinKey!, text, 'PX', JOIN_TTL_MS);
        throw err;
      };
      for (const e of entries) {
        const there = `rank ${e.rank} (${e.host}:${e.pid})`;
        if (e.world !== this.world) await refuse(new LmtuneError('CONFIG', `data-parallel: ${there} was started with --world ${e.world}, ${here} with --world ${this.world}; refusing to start`, 'run every rank with the same command (only --rank differs)'));
        if (e.code !== me.code) await refuse(new LmtuneError('CONFIG', `data-parallel: ${there} runs ${e.code}, ${here} runs ${me.code}; refusing to start`, 'install the same lmtune on every machine'));
        const diff = [...jsonDiff(me.identity, e.identity), ...jsonDiff(me.config, e.config)];
        if (diff.length) {
          await refuse(new LmtuneError('CONFIG', `data-parallel: ${there} was started with a different command than ${here} (this rank's value vs theirs): ${diff.join('; ')}; refusing to start`, 'run every rank with the same command (only --rank differs), with the same model and data files'));
        }
      }
      const byRank = new Map<number, JoinEntry>();
      const twice = new Set<number>();
      for (const e of entries) {
        if (byRank.has(e.rank)) twice.add(e.rank);
        byRank.set(e.rank, e);
      }
      const missing = Array.from({ length: this.world }, (_, r) => r).filter((r) => !byRank.has(r));
      if (!missing.length && !twice.size) {
        const all = Array.from({ length: this.world }, (_, r) => byRank.get(r)!);
        this.session = createHash('sha256').update(all.map((e) => e.nonce).join(':')).digest('hex').slice(0, 16);
        await this.beat(-1);
        this.heartbeat = setInterval(() => void this.beat(this.lastStep).catch(() => {}), Math.max(50, Math.floor(this.timeoutMs / 4)));
        this.heartbeat.unref();
        return all.map((e) => ({ config: e.config, steps: e.steps }));
      }
      if (performance.now() > deadline) {
        throw new LmtuneError('RUNTIME', `data-parallel: ${missing.map((r) => `rank ${r}`).join(', ')} did not start within ${Math.round(this.joinTimeoutMs / 1000)} s; stopping ${here}`, `start every rank with the same command and --rank 0..${this.world - 1}`);
      }
      await sleep(JOIN_POLL_MS);
    }
  }

  private async beat(step: number): Promise<void> {
    if (this.session === null) return;
    await this.redis.set(this.key(`alive:${this.rank}`), String(step), 'PX', this.timeoutMs);
  }

  async exchange(step: number, seed: number, values: readonly number[]): Promise<number[][]> {
    try {
      return await this.exchangeOnce(step, seed, values);
    } catch (e) {
      if (e instanceof LmtuneError) throw e;
      // Redis went away (ioredis gave up reconnecting): every rank stops the same way
      throw new LmtuneError('RUNTIME', `data-parallel step ${step}: lost Redis at ${this.url} (${(e as Error).message}); stopping rank ${this.rank}`, 'restart Redis, then every rank with the same command: training resumes from the newest checkpoint all ranks have');
    }
  }

  private async exchangeOnce(step: number, seed: number, values: readonly number[]): Promise<number[][]> {
    if (this.session === null) throw new LmtuneError('RUNTIME', 'data-parallel: exchange before join');
    this.lastStep = step;
    const key = this.key(`step:${step}`);
    // one round trip, atomic: the value, the heartbeat, and (when this rank completes the step) the
    // wake-ups of the others; rank 0 also drops step t−2, which every rank has read by now
    const n = await this.redis.dpPublish(
      2,
      key,
      this.key(`alive:${this.rank}`),
      String(this.rank),
      `${seed}:${values.map(toHex).join('.')}`,
      String(step),
      String(this.timeoutMs),
      String(this.world),
      this.rank === 0 && step >= 2 ? this.key(`step:${step - 2}`) : '',
      this.key('wake:'),
    );
    if (n < this.world) await this.waitForOthers(step, key);
    const all = await this.redis.hgetall(key);
    const out: number[][] = [];
    for (let r = 0; r < this.world; r++) {
      const [s, hex] = all[String(r)]!.split(':');
      if (Number(s) !== seed) throw new LmtuneError('RUNTIME', `data-parallel step ${step}: rank ${r} used seed ${s}, rank ${this.rank} used ${seed}`, 'every rank must run the same command (same --seed and checkpoints)');
      out.push(hex!.split('.').map(fromHex));
    }
    return out;
  }

  /**
   * Blocks on this rank's wake-up list (pushed by the rank that completes the step), waking every
   * `checkEveryMs` to check the others: waiting costs a few hundred bytes a second, not a poll every 5 ms.
   */
  private async waitForOthers(step: number, key: string): Promise<void> {
    const t0 = performance.now();
    const wake = this.key(`wake:${this.rank}`);
    for (;;) {
      const got = await this.redis.blpop(wake, this.checkEveryMs / 1000);
      // a wake-up of an earlier step (left when that step completed through the check below) is skipped
      if (got !== null && Number(got[1]) === step) return;
      if (got === null && (await this.checkOthers(step, key, performance.now() - t0))) return;
    }
  }

  /**
   * While waiting: a rank's posted error, or a missing rank's expired heartbeat, stops this one; true
   * when every rank is in after all (a rank that completed the step died before its wake-ups went out).
   */
  private async checkOthers(step: number, key: string, waitedMs: number): Promise<boolean> {
    const [abort, present] = await Promise.all([this.redis.get(this.key('abort')), this.redis.hkeys(key)]);
    if (abort !== null) throw new LmtuneError('RUNTIME', `data-parallel step ${step}: ${abort}; stopping rank ${this.rank}`, 'fix the cause, then restart every rank with the same command: training resumes from the newest checkpoint all ranks have');
    // a rank that has just joined sets its heartbeat a moment later: no verdict in the first 2 s
    const missing = Array.from({ length: this.world }, (_, r) => r).filter((r) => !present.includes(String(r)));
    if (!missing.length) return true;
    if (waitedMs < Math.min(2000, this.timeoutMs)) return false;
    const alive = await this.redis.mget(...missing.map((r) => this.key(`alive:${r}`)));
    const dead = missing.filter((_, i) => alive[i] === null);
    if (dead.length) {
      throw new LmtuneError(
        'RUNTIME',
        `data-parallel step ${step}: ${dead.map((r) => `rank ${r}`).join(', ')} stopped responding (no heartbeat for ${Math.round(this.timeoutMs / 1000)} s: the process died, was killed, or its machine is unreachable); stopping rank ${this.rank}`,
        'restart every rank with the same command: training resumes from the newest checkpoint all ranks have',
      );
    }
    return false;
  }

  async abort(message: string): Promise<void> {
    if (this.session === null || this.redis.status !== 'ready') return;
    await this.redis.set(this.key('abort'), `rank ${this.rank} stopped: ${message}`, 'PX', 3_600_000).catch(() => {});
  }

  async close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    if (this.redis.status === 'ready') {
      // a rank that stops while the others still wait is seen as gone at once (no heartbeat); its join
      // entry expires by itself (JOIN_TTL_MS), so a rank that refused it still sees why
      if (this.session) await this.redis.del(this.key(`alive:${this.rank}`)).catch(() => {});
      await this.redis.quit().catch(() => this.redis.disconnect());
    } else this.redis.disconnect();
  }
}

export interface DataParallelFlags {
  readonly url: string;
  readonly world: number;
  readonly rank: number;
  readonly timeoutMs?: number;
}

function fileSha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * `lmtune train … --data-parallel URL --world N --rank r`: rank r's part of the run in `out` (rank 0:
 * `out` itself, rank r: `out/rank-r`). Running the same command again continues the run from the newest
 * checkpoint all ranks have; a command that differs from the run's config.json is refused, naming what
 * differs. The model folder and the data files are fingerprinted so that every rank provably reads the
 * same bytes. On any error this rank tells the others (they stop at once) and leaves Redis clean.
 */
export async function trainDataParallel(cfgGiven: TrainConfig, out: string, flags: DataParallelFlags, hooks: TrainHooks = {}): Promise<TrainSummary> {
  const cfg = absolutePaths(cfgGiven);
  checkDataParallel(cfg, flags.world);
  const dp = new RedisDataParallel({
    url: flags.url,
    world: flags.world,
    rank: flags.rank,
    ...(flags.timeoutMs !== undefined ? { timeoutMs: flags.timeoutMs } : {}),
    identity: {
      model: existsSync(cfg.model) ? fingerprintModelDir(cfg.model) : 'absent',
      data: existsSync(cfg.data) ? fileSha256(cfg.data) : 'absent',
      ...(cfg.dev ? { dev: existsSync(cfg.dev) ? fileSha256(cfg.dev) : 'absent' } : {}),
    },
  });
  const runDir = replicaDir(out, flags.rank);
  try {
    // a replica's folder sits inside the run folder: claim that first, whichever rank starts first
    if (flags.rank > 0) claimFolder(out, { kind: 'run' }, '--out');
    const resume = existsSync(join(runDir, 'config.json'));
    if (resume) {
      const stored = readRunConfig(runDir);
      const diff = jsonDiff(replicaConfig(stored), replicaConfig(cfg));
      if (diff.length) {
        throw new LmtuneError('CONFIG', `${runDir} holds a data-parallel run started with a different command (the run's value vs this command's): ${diff.join('; ')}`, 'run the same command to continue it, or choose another --out');
      }
    }
    return await train(resume ? readRunConfig(runDir) : cfg, runDir, hooks, resume, dp);
  } catch (e) {
    await dp.abort(e instanceof Error ? e.message : String(e));
    throw e;
  } finally {
    await dp.close();
  }
}
