/** Global-norm clipping (torch rule) and gradient accumulation against hand-computed numbers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GradAccumulator } from './accumulate.ts';
import { clipGradNorm, globalGradNorm } from './clip.ts';
import { LmtuneError } from '../util/errors.ts';

test('global norm over all tensors; clipping scales by max/(norm + 1e-6) only when that is < 1', () => {
  // norm = sqrt(3² + 4² + 12²) = 13
  const grads = new Map([
    ['a', Float32Array.of(3, 4)],
    ['b', Float32Array.of(12)],
  ]);
  assert.equal(globalGradNorm(grads), 13);
  const n = clipGradNorm(grads, 6.5);
  assert.equal(n, 13);
  const coef = 6.5 / (13 + 1e-6);
  assert.deepEqual([...grads.get('a')!], [Math.fround(3 * coef), Math.fround(4 * coef)]);
  assert.deepEqual([...grads.get('b')!], [Math.fround(12 * coef)]);
  // below the threshold nothing changes
  const g2 = new Map([['a', Float32Array.of(0.3, 0.4)]]);
  assert.ok(Math.abs(clipGradNorm(g2, 1) - 0.5) < 1e-7);
  assert.deepEqual([...g2.get('a')!], [Math.fround(0.3), Math.fround(0.4)]);
});

test('a non-finite norm is a NUMERIC error naming the tensor (or returned when asked)', () => {
  const g = new Map([
    ['ok', Float32Array.of(1)],
    ['h.3.mlp.weight', Float32Array.of(Number.NaN)],
  ]);
  assert.throws(() => clipGradNorm(g, 1), (e: unknown) => e instanceof LmtuneError && e.code === 'NUMERIC' && e.message.includes('h.3.mlp.weight'));
  assert.ok(Number.isNaN(clipGradNorm(g, 1, { errorIfNonfinite: false })));
});

test('accumulation returns the weighted mean and restarts after take()', () => {
  const acc = new GradAccumulator([{ name: 'w', data: new Float32Array(2) }]);
  acc.add(new Map([['w', Float32Array.of(1, 2)]]), 1);
  acc.add(new Map([['w', Float32Array.of(4, -1)]]), 3);
  assert.equal(acc.microBatches, 2);
  // (1·1 + 3·4)/4 = 3.25, (1·2 + 3·(−1))/4 = −0.25
  assert.deepEqual([...acc.take().get('w')!], [3.25, -0.25]);
  acc.add(new Map([['w', Float32Array.of(0.5, 0.5)]]));
  acc.add(new Map([['w', Float32Array.of(1.5, 2.5)]]));
  assert.deepEqual([...acc.take().get('w')!], [1, 1.5]);
  assert.throws(() => acc.take(), LmtuneError);
  assert.throws(() => acc.add(new Map([['v', Float32Array.of(1)]])), (e: unknown) => e instanceof LmtuneError && e.code === 'SHAPE');
});
