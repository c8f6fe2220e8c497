/** Global-norm clipping (torch rule) and gradient accumulation against hand-computed numbers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GradAccumulator } from './accumulate.ts';
import { clipGradNorm, globalGradNorm } from './clip.ts';
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';

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

test('gradients written into writeTarget() accumulate to the same bytes as add() (−0, NaN, subnormals, weights, restarts)', () => {
  const rng = new Rng(7);
  const special = [-0, 0, Number.NaN, 1e-45, -1e-45, 3.4e38, -2.5];
  const micro = (): Map<string, Float32Array> =>
    new Map(
      [
        ['a', 37],
        ['b', 5],
      ].map(([n, len]) => [n as string, Float32Array.from({ length: len as number }, (_, i) => (i < special.length && rng.uniform() < 0.5 ? special[i]! : rng.normal()))]),
    );
  const params = [
    { name: 'a', data: new Float32Array(37) },
    { name: 'b', data: new Float32Array(5) },
  ];
  const viaAdd = new GradAccumulator(params);
  const viaWrite = new GradAccumulator(params);
  const bytes = (m: Map<string, Float32Array>): number[] => [...m.values()].flatMap((g) => [...new Uint8Array(g.buffer, g.byteOffset, g.byteLength)]);
  // steps of 1, 3 and 2 micro-batches with weights; a step abandoned after its first micro-batch (a
  // non-finite loss: nothing added) and one abandoned mid-way, whose partial sum both carry on with
  const plan: { weights: number[]; abandonAfter?: number }[] = [{ weights: [1] }, { weights: [2, 5, 1] }, { weights: [1], abandonAfter: 0 }, { weights: [3, 0.25] }, { weights: [1, 1], abandonAfter: 1 }, { weights: [1] }, { weights: [7] }];
  for (const { weights, abandonAfter } of plan) {
    let abandoned = false;
    for (let k = 0; k < weights.length; k++) {
      const g = micro();
      const target = viaWrite.writeTarget();
      for (const [n, v] of g) target.get(n)!.set(v);
      if (abandonAfter === k) {
        abandoned = true;
        break;
      }
      viaAdd.add(g, weights[k]);
      viaWrite.addWritten(weights[k]);
    }
    if (abandoned) continue;
    const a = viaAdd.take();
    const w = viaWrite.take();
    assert.deepEqual(bytes(w), bytes(a));
    // one micro-batch of weight 1: a written −0 became +0, as adding into zeroed sums does
    if (weights.length === 1 && weights[0] === 1) assert.ok([...w.values()].every((g) => g.every((x) => !Object.is(x, -0))));
  }
  const one = new GradAccumulator([{ name: 'z', data: new Float32Array(1) }]);
  one.writeTarget().get('z')![0] = -0;
  one.addWritten(1);
  assert.ok(Object.is(one.take().get('z')![0], 0), 'a written −0 is summed as 0 + (−0) = +0');
  assert.throws(() => viaWrite.addWritten(1), (e: unknown) => e instanceof LmtuneError && e.code === 'RUNTIME');
  viaWrite.writeTarget();
  assert.throws(() => viaWrite.addWritten(0), (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG');
});
