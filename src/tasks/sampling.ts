/**
 * The papers' data protocols, driven by lmtune's seeded Philox `Rng` (src/util/rng.ts). The shapes follow
 * the reference code; the draws do not: numpy's Mersenne-Twister permutation cannot be reproduced here, so
 * "seed 13" selects different rows than LM-BFF's seed 13 (use the shared k-shot folders for LM-BFF's exact
 * rows).
 *
 * - LM-BFF k-shot (tools/generate_k_shot_data.py): shuffle the training set, then per label (in order of
 *   first appearance) the first k rows are train and the next k dev; test is the original dev/test set,
 *   capped at 1000 rows drawn with seed 42.
 * - MeZO (large_models/tasks.py `sample_train_sets`): the first numTrain + numDev rows of a seeded
 *   permutation; dev is the last numDev of those, train the rest (so WSC's 554 rows give 54 train / 500 dev,
 *   as in the reference); test is up to 1000 rows of a seeded permutation of the validation set.
 * - In-context demonstrations: a fresh draw of k rows per test example from its own named stream.
 */
import { Rng } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';

export const LMBFF_SEEDS = [13, 21, 42, 87, 100] as const;
export const LMBFF_TEST_CAP = 1000;
export const LMBFF_TEST_SEED = 42;

export interface Split<T> {
  readonly train: T[];
  readonly dev: T[];
}

/** LM-BFF k-shot: k train + k dev examples per class. Throws when a class has fewer than 2k examples. */
export function kShotSplit<T>(items: readonly T[], labelOf: (item: T) => number | string, k: number, seed: number): Split<T> {
  if (!Number.isInteger(k) || k < 1) throw new LmtuneError('CONFIG', `k must be a positive integer, got ${k}`);
  const shuffled = new Rng(seed).shuffle(items);
  const byLabel = new Map<number | string, T[]>();
  for (const it of shuffled) {
    const l = labelOf(it);
    const list = byLabel.get(l);
    if (list) list.push(it);
    else byLabel.set(l, [it]);
  }
  const train: T[] = [];
  const dev: T[] = [];
  for (const [label, list] of byLabel) {
    if (list.length < 2 * k) {
      throw new LmtuneError('DATA', `class ${JSON.stringify(label)} has ${list.length} examples; k-shot with k=${k} needs ${2 * k} (k train + k dev)`, 'lower k or use a larger training file');
    }
    train.push(...list.slice(0, k));
    dev.push(...list.slice(k, 2 * k));
  }
  return { train, dev };
}

/** LM-BFF test set: all of it when it has at most 1000 rows, else 1000 rows drawn with seed 42. */
export function lmBffTestSet<T>(items: readonly T[]): T[] {
  return items.length <= LMBFF_TEST_CAP ? [...items] : seededSubset(items, LMBFF_TEST_CAP, LMBFF_TEST_SEED);
}

/** The first n items of a seeded permutation (all of them, permuted, when there are fewer). */
export function seededSubset<T>(items: readonly T[], n: number, seed: number): T[] {
  const perm = new Rng(seed).permutation(items.length);
  return perm.slice(0, Math.min(n, items.length)).map((i) => items[i]!);
}

/** MeZO's train/dev split (defaults: 1000 train, 500 dev, data seed 0). */
export function mezoSplit<T>(pool: readonly T[], opts: { numTrain?: number; numDev?: number; seed?: number } = {}): Split<T> {
  const numTrain = opts.numTrain ?? 1000;
  const numDev = opts.numDev ?? 500;
  const taken = seededSubset(pool, numTrain + numDev, opts.seed ?? 0);
  if (taken.length <= numDev) {
    throw new LmtuneError('DATA', `${pool.length} training examples leave nothing to train on after ${numDev} dev examples`, 'lower numDev');
  }
  return { train: taken.slice(0, taken.length - numDev), dev: taken.slice(taken.length - numDev) };
}

/** MeZO's test set: up to `n` (default 1000) rows of a seeded permutation of the validation set. */
export function mezoTestSet<T>(valid: readonly T[], opts: { n?: number; seed?: number } = {}): T[] {
  return seededSubset(valid, opts.n ?? 1000, opts.seed ?? 0);
}

/**
 * k distinct indices of 0..n-1, uniformly, in draw order: a partial Fisher-Yates shuffle that touches only
 * k entries, so drawing demonstrations from 67k rows for every test example stays cheap.
 */
export function sampleIndices(n: number, k: number, rng: Rng): number[] {
  const m = Math.min(k, n);
  const swapped = new Map<number, number>();
  const out: number[] = [];
  for (let i = 0; i < m; i++) {
    const j = i + rng.int(n - i);
    const vj = swapped.get(j) ?? j;
    const vi = swapped.get(i) ?? i;
    swapped.set(j, vi);
    out.push(vj);
  }
  return out;
}

/** The demonstration stream of test example `index` under `seed`: independent per example and reproducible. */
export function demoRng(seed: number, index: number): Rng {
  return new Rng(`icl-demos/${seed}/${index}`);
}

/**
 * k demonstrations from `pool` for one test example; `exclude` (the test example itself, when the pool is
 * the evaluation file) is never chosen. As in the reference, k+1 are drawn and the excluded one removed.
 */
export function sampleDemos<T>(pool: readonly T[], k: number, rng: Rng, exclude?: T): T[] {
  if (k <= 0) return [];
  const idx = sampleIndices(pool.length, k + 1, rng);
  const picked: T[] = idx.map((i) => pool[i] as T);
  const at = exclude === undefined ? -1 : picked.indexOf(exclude);
  if (at >= 0) picked.splice(at, 1);
  return picked.slice(0, k);
}
