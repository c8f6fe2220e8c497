/**
 * Exact one-sided permutation tests for comparing two sets of runs (bench/less.ts e2e: is the LESS arm
 * better than the random arm?). Exact enumeration rather than a t distribution because the arms hold
 * 3–15 runs of accuracies that are neither normal nor of equal spread; the enumerations stay below a
 * few hundred thousand labellings at these sizes.
 */

import { LmtuneError } from './errors.ts';

const MAX_LABELLINGS = 5_000_000;

function choose(n: number, k: number): number {
  let c = 1;
  for (let i = 1; i <= k; i++) c = (c * (n - k + i)) / i;
  return Math.round(c);
}

/**
 * Exact one-sided Mann–Whitney test that the `a` runs score higher than the `b` runs: U counts the pairs
 * (a beats b, ties half) and p is the share of all ways to label |a| of the pooled runs as `a` whose U is
 * at least the observed one (every labelling enumerated: at most a few hundred thousand here).
 */
export function mannWhitneyGreater(a: readonly number[], b: readonly number[]): { u: number; pairs: number; p: number } {
  if (a.length === 0 || b.length === 0) throw new LmtuneError('CONFIG', `Mann–Whitney needs runs in both arms, got ${a.length} and ${b.length}`);
  if (choose(a.length + b.length, a.length) > MAX_LABELLINGS) throw new LmtuneError('CONFIG', `Mann–Whitney with ${a.length} + ${b.length} runs: more than ${MAX_LABELLINGS} labellings to enumerate`);
  const pooled = [...a, ...b];
  const uOf = (inA: boolean[]): number => {
    let u = 0;
    for (let i = 0; i < pooled.length; i++) {
      if (!inA[i]) continue;
      for (let j = 0; j < pooled.length; j++) if (!inA[j]) u += pooled[i]! > pooled[j]! ? 1 : pooled[i] === pooled[j] ? 0.5 : 0;
    }
    return u;
  };
  const observed = uOf(pooled.map((_, i) => i < a.length));
  let total = 0;
  let atLeast = 0;
  const inA = pooled.map(() => false);
  const walk = (from: number, left: number): void => {
    if (left === 0) {
      total++;
      if (uOf(inA) >= observed - 1e-9) atLeast++;
      return;
    }
    for (let i = from; i <= pooled.length - left; i++) {
      inA[i] = true;
      walk(i + 1, left - 1);
      inA[i] = false;
    }
  };
  walk(0, a.length);
  return { u: observed, pairs: a.length * b.length, p: atLeast / total };
}

/** Exact one-sided sign-flip test that the paired differences are positive (all 2^n sign patterns). */
export function signFlipGreater(d: readonly number[]): { mean: number; p: number } {
  if (d.length === 0 || d.length > 20) throw new LmtuneError('CONFIG', `sign-flip test over ${d.length} differences (1 to 20)`);
  const mean = d.reduce((x, y) => x + y, 0) / d.length;
  let atLeast = 0;
  for (let m = 0; m < 1 << d.length; m++) {
    let s = 0;
    for (let i = 0; i < d.length; i++) s += m & (1 << i) ? -d[i]! : d[i]!;
    if (s / d.length >= mean - 1e-12) atLeast++;
  }
  return { mean, p: atLeast / (1 << d.length) };
}
