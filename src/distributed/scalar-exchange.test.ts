/**
 * The data-parallel MeZO exchange on a real local Redis: 3 ranks agree on the same combined scalar,
 * bit-equal to the rank-ordered sum / 3 computed here; a rank that stops reporting is named with the
 * step within the bounded wait; ranks with different seeds are refused.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { redisSkipReason, startLocalRedis, type LocalRedis } from './redis-server.ts';
import { ScalarExchange } from './scalar-exchange.ts';
import { Rng } from '../util/rng.ts';

const skip = redisSkipReason();
let redis: LocalRedis | undefined;
before(async () => {
  if (!skip) redis = await startLocalRedis();
});
after(async () => {
  await redis?.stop();
});

test('3 ranks, 20 steps: every rank gets the same mean, bit-equal to (g0 + g1 + g2) / 3', { skip, timeout: 15_000 }, async () => {
  const xs = [0, 1, 2].map((rank) => new ScalarExchange({ url: redis!.url, runId: 'ok', world: 3, rank, timeoutMs: 5000 }));
  const rng = new Rng(7);
  try {
    for (let step = 0; step < 20; step++) {
      const g = [0, 1, 2].map(() => (rng.uniform() - 0.5) * 10 ** (step % 7));
      const got = await Promise.all(xs.map((x, r) => x.exchange(step, 1000 + step, g[r]!)));
      const want = (g[0]! + g[1]! + g[2]!) / 3;
      for (const e of got) {
        assert.equal(e.mean, want);
        assert.deepEqual(e.scalars, g);
      }
    }
  } finally {
    await Promise.all(xs.map((x) => x.close()));
  }
});

test('a rank that stops reporting is named with the step within the bounded wait', { skip, timeout: 15_000 }, async () => {
  const xs = [0, 1].map((rank) => new ScalarExchange({ url: redis!.url, runId: 'dead', world: 2, rank, timeoutMs: 400 }));
  try {
    await Promise.all(xs.map((x, r) => x.exchange(0, 5, r + 0.5)));
    const t0 = performance.now();
    // rank 1 "dies" after step 0: its heartbeat (400 ms) expires during rank 0's wait
    await assert.rejects(xs[0]!.exchange(1, 6, 1.5), /data-parallel step 1: rank 1 \(.*\) did not report within 400 ms; stopping rank 0/);
    const waited = performance.now() - t0;
    assert.ok(waited >= 400 && waited < 2000, `waited ${waited.toFixed(0)} ms`);
  } finally {
    await Promise.all(xs.map((x) => x.close()));
  }
});

test('ranks on different seeds are refused', { skip, timeout: 15_000 }, async () => {
  const xs = [0, 1].map((rank) => new ScalarExchange({ url: redis!.url, runId: 'seeds', world: 2, rank, timeoutMs: 2000 }));
  try {
    const r = await Promise.allSettled(xs.map((x, i) => x.exchange(0, 10 + i, 1)));
    assert.ok(r.every((x) => x.status === 'rejected' && /rank [01] used seed 1[01], rank [01] used 1[01]/.test((x.reason as Error).message)));
  } finally {
    await Promise.all(xs.map((x) => x.close()));
  }
});
