/**
 * The exact permutation tests against closed forms and hand-counted null distributions.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mannWhitneyGreater, signFlipGreater } from './exact-tests.ts';

test('Mann–Whitney: complete separation has p = 1 / C(n + m, n); the reverse has p = 1', () => {
  // C(20, 5) = 15504: five runs above fifteen
  const hi = [0.41, 0.47, 0.31, 0.35, 0.38];
  const lo = [0.25, 0.25, 0.25, 0.24, 0.23, 0.21, 0.27, 0.26, 0.22, 0.21, 0.25, 0.22, 0.25, 0.24, 0.25];
  assert.deepEqual(mannWhitneyGreater(hi, lo), { u: 75, pairs: 75, p: 1 / 15504 });
  assert.equal(mannWhitneyGreater(lo.slice(0, 3), hi).p, 1);
});

test('Mann–Whitney: U and p by hand, with and without ties', () => {
  // n = 3, m = 4, no ties: U = 11 of 12; of the C(7, 3) = 35 labellings one has U = 12 and one U = 11
  assert.deepEqual(mannWhitneyGreater([5, 6, 7], [1, 2, 3, 5.5]), { u: 11, pairs: 12, p: 2 / 35 });
  // a tie counts half: a = [2] against b = [1, 2] has U = 1.5; labelling either 2 as `a` gives 1.5, the 1 gives 0
  assert.deepEqual(mannWhitneyGreater([2], [1, 2]), { u: 1.5, pairs: 2, p: 2 / 3 });
});

test('sign flip: all positive gives 2^-n; a symmetric pair gives 3/4', () => {
  assert.deepEqual(signFlipGreater([0.168, 0.223, 0.058, 0.1, 0.15]), { mean: (0.168 + 0.223 + 0.058 + 0.1 + 0.15) / 5, p: 1 / 32 });
  // patterns of [1, −1]: means 0, −1, 1, 0; three are ≥ 0
  assert.deepEqual(signFlipGreater([1, -1]), { mean: 0, p: 3 / 4 });
  // [3, −1]: means 1, −2, 2, −1 → two of four ≥ 1
  assert.equal(signFlipGreater([3, -1]).p, 1 / 2);
});

test('bad sizes are errors', () => {
  assert.throws(() => mannWhitneyGreater([], [1]), /both arms/);
  assert.throws(() => mannWhitneyGreater(Array.from({ length: 15 }, (_, i) => i), Array.from({ length: 25 }, (_, i) => i)), /labellings/);
  assert.throws(() => signFlipGreater([]), /1 to 20/);
});
