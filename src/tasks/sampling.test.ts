/**
 * Sampling protocols: LM-BFF k-shot shapes (k train + k dev per class, disjoint, seeded) with per-item
 * inclusion rates checked by Monte Carlo; MeZO's 1000/500 split including the WSC case of mezo.md §5
 * (554 rows -> 54 train / 500 dev); uniform, distinct demonstration draws.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { kShotSplit, lmBffTestSet, mezoSplit, mezoTestSet, sampleDemos, sampleIndices } from './sampling.ts';

interface Item {
  id: number;
  label: string;
}
const pool: Item[] = [
  ...Array.from({ length: 40 }, (_, i) => ({ id: i, label: 'a' })),
  ...Array.from({ length: 30 }, (_, i) => ({ id: 40 + i, label: 'b' })),
  ...Array.from({ length: 20 }, (_, i) => ({ id: 70 + i, label: 'c' })),
];

test('k-shot: k train + k dev per class, disjoint, grouped by class, reproducible by seed', () => {
  const s = kShotSplit(pool, (x) => x.label, 8, 13);
  assert.equal(s.train.length, 24);
  assert.equal(s.dev.length, 24);
  for (const part of [s.train, s.dev]) {
    assert.deepEqual(['a', 'b', 'c'].map((l) => part.filter((x) => x.label === l).length), [8, 8, 8]);
    for (let g = 0; g < 3; g++) assert.equal(new Set(part.slice(8 * g, 8 * g + 8).map((x) => x.label)).size, 1);
  }
  const ids = new Set([...s.train, ...s.dev].map((x) => x.id));
  assert.equal(ids.size, 48);
  assert.deepEqual(kShotSplit(pool, (x) => x.label, 8, 13), s);
  assert.notDeepEqual(kShotSplit(pool, (x) => x.label, 8, 21).train, s.train);
  assert.throws(() => kShotSplit(pool, (x) => x.label, 11, 13), (e: Error & { code?: string }) => e.code === 'DATA' && /class "c" has 20 examples; k-shot with k=11 needs 22/.test(e.message));
});

test('k-shot inclusion is uniform within a class: P(item in train) = k / n_c (Monte Carlo, 400 seeds)', () => {
  const seeds = 400;
  const counts = new Map<number, number>();
  for (let s = 0; s < seeds; s++) for (const x of kShotSplit(pool, (y) => y.label, 8, 1000 + s).train) counts.set(x.id, (counts.get(x.id) ?? 0) + 1);
  for (const [label, n] of [
    ['a', 40],
    ['b', 30],
    ['c', 20],
  ] as const) {
    const p = 8 / n;
    const sd = Math.sqrt(seeds * p * (1 - p));
    for (const x of pool.filter((y) => y.label === label)) {
      const c = counts.get(x.id) ?? 0;
      assert.ok(Math.abs(c - seeds * p) < 5 * sd, `item ${x.id}: ${c} vs ${seeds * p} ± ${sd.toFixed(1)}`);
    }
  }
});

test('MeZO split: 1000 train + 500 dev; with 554 rows (WSC) 54 train + 500 dev; seeded', () => {
  const big = Array.from({ length: 2000 }, (_, i) => i);
  const s = mezoSplit(big, { seed: 0 });
  assert.equal(s.train.length, 1000);
  assert.equal(s.dev.length, 500);
  assert.equal(new Set([...s.train, ...s.dev]).size, 1500);
  assert.deepEqual(mezoSplit(big, { seed: 0 }), s);
  const wsc = mezoSplit(Array.from({ length: 554 }, (_, i) => i));
  assert.deepEqual([wsc.train.length, wsc.dev.length], [54, 500]);
  assert.equal(new Set([...wsc.train, ...wsc.dev]).size, 554);
  assert.throws(() => mezoSplit(Array.from({ length: 500 }, (_, i) => i)), (e: Error & { code?: string }) => e.code === 'DATA');
});

test('test sets: MeZO takes up to 1000 of a permutation; LM-BFF keeps sets of at most 1000 as they are', () => {
  const sst2dev = Array.from({ length: 872 }, (_, i) => i);
  const t = mezoTestSet(sst2dev);
  assert.equal(t.length, 872);
  assert.deepEqual([...t].sort((a, b) => a - b), sst2dev);
  assert.equal(mezoTestSet(Array.from({ length: 1500 }, (_, i) => i)).length, 1000);
  assert.deepEqual(lmBffTestSet(sst2dev), sst2dev);
  const capped = lmBffTestSet(Array.from({ length: 1821 }, (_, i) => i));
  assert.equal(new Set(capped).size, 1000);
});

test('sampleIndices: k distinct indices, each index and each first draw uniform (Monte Carlo, 20000 draws)', () => {
  const n = 10;
  const k = 3;
  const draws = 20000;
  const rng = new Rng('sample-indices-test');
  const any = new Array<number>(n).fill(0);
  const first = new Array<number>(n).fill(0);
  for (let d = 0; d < draws; d++) {
    const idx = sampleIndices(n, k, rng);
    assert.equal(new Set(idx).size, k);
    idx.forEach((i) => any[i]!++);
    first[idx[0]!]!++;
  }
  const sdAny = Math.sqrt(draws * 0.3 * 0.7);
  const sdFirst = Math.sqrt(draws * 0.1 * 0.9);
  any.forEach((c, i) => assert.ok(Math.abs(c - draws * 0.3) < 5 * sdAny, `index ${i}: ${c}`));
  first.forEach((c, i) => assert.ok(Math.abs(c - draws * 0.1) < 5 * sdFirst, `first ${i}: ${c}`));
  assert.deepEqual([...sampleIndices(4, 9, rng)].sort(), [0, 1, 2, 3]);
});

test('sampleDemos: k items, never the excluded one', () => {
  const items = Array.from({ length: 6 }, (_, i) => ({ i }));
  const rng = new Rng(5);
  for (let d = 0; d < 500; d++) {
    const got = sampleDemos(items, 5, rng, items[2]);
    assert.equal(got.length, 5);
    assert.ok(!got.includes(items[2]!));
  }
});
