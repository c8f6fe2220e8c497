/**
 * What data-parallel MeZO needs from the network: at each step every rank publishes (seed, its
 * projected-gradient scalar) and waits, bounded, until all `world` ranks have; the combined scalar is the
 * rank-ordered sum divided by `world`, so every replica computes the same float64 and applies the same
 * update. Values travel as the 16 hex digits of their float64 bits (exact). A rank that does not report
 * within the timeout is named with the step, and whether its heartbeat key has also expired.
 */
import { Redis } from 'ioredis';
import { LmtuneError } from '../util/errors.ts';
import { connectionFromUrl } from './jobs.ts';

export interface ScalarExchangeOptions {
  readonly url: string;
  /** names the run's keys; every rank of one run must use the same id */
  readonly runId: string;
  readonly world: number;
  readonly rank: number;
  /** how long a step waits for the others before declaring a rank dead (default 60 s) */
  readonly timeoutMs?: number;
  readonly pollMs?: number;
}

export interface Exchanged {
  /** rank-ordered sum of the ranks' scalars divided by world */
  readonly mean: number;
  readonly scalars: readonly number[];
}

function toHex(x: number): string {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(x);
  return b.toString('hex');
}

function fromHex(h: string): number {
  return Buffer.from(h, 'hex').readDoubleBE();
}

export class ScalarExchange {
  private readonly redis: Redis;
  private readonly timeoutMs: number;
  private readonly pollMs: number;

  constructor(private readonly o: ScalarExchangeOptions) {
    if (!Number.isInteger(o.world) || o.world < 1) throw new LmtuneError('CONFIG', `--world must be a positive integer, got ${o.world}`);
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.world) throw new LmtuneError('CONFIG', `--rank must be in [0, ${o.world - 1}], got ${o.rank}`);
    const c = connectionFromUrl(o.url, '--data-parallel');
    this.redis = new Redis(c.url, { maxRetriesPerRequest: 3, lazyConnect: false });
    this.timeoutMs = o.timeoutMs ?? 60_000;
    this.pollMs = o.pollMs ?? 5;
  }

  private key(step: number): string {
    return `lmtune:dp:${this.o.runId}:step:${step}`;
  }
  private aliveKey(rank: number): string {
    return `lmtune:dp:${this.o.runId}:alive:${rank}`;
  }

  /** Publishes this rank's (seed, scalar) for `step` and returns the combination once all ranks have. */
  async exchange(step: number, seed: number, scalar: number): Promise<Exchanged> {
    const key = this.key(step);
    // one round trip: the value, the key's lifetime, and this rank's heartbeat
    await this.redis
      .multi()
      .hset(key, String(this.o.rank), `${seed}:${toHex(scalar)}`)
      .pexpire(key, Math.max(3_600_000, this.timeoutMs * 4))
      .set(this.aliveKey(this.o.rank), String(step), 'PX', this.timeoutMs)
      .exec();
    const deadline = performance.now() + this.timeoutMs;
    const maxPolls = Math.ceil(this.timeoutMs / this.pollMs) + 1;
    for (let poll = 0; poll < maxPolls; poll++) {
      if ((await this.redis.hlen(key)) >= this.o.world) break;
      if (performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, this.pollMs));
    }
    const all = await this.redis.hgetall(key);
    const missing = Array.from({ length: this.o.world }, (_, r) => r).filter((r) => all[String(r)] === undefined);
    if (missing.length > 0) {
      const alive = await Promise.all(missing.map((r) => this.redis.get(this.aliveKey(r))));
      const who = missing.map((r, i) => `rank ${r}${alive[i] === null ? ' (no heartbeat: dead or never started)' : ` (last reported step ${alive[i]})`}`).join(', ');
      throw new LmtuneError('RUNTIME', `data-parallel step ${step}: ${who} did not report within ${this.timeoutMs} ms; stopping rank ${this.o.rank}`, 'restart all ranks with the same command: training resumes from the last checkpoint');
    }
    const scalars: number[] = [];
    let sum = 0;
    for (let r = 0; r < this.o.world; r++) {
      const [s, hex] = all[String(r)]!.split(':');
      if (Number(s) !== seed) throw new LmtuneError('RUNTIME', `data-parallel step ${step}: rank ${r} used seed ${s}, rank ${this.o.rank} used ${seed}`, 'all ranks must run the same command (same --seed and resume point)');
      const v = fromHex(hex!);
      scalars.push(v);
      sum += v;
    }
    return { mean: sum / this.o.world, scalars };
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
