/**
 * Matching (spec less.md §5 items 5 and 8): a hand fixture of 2 checkpoints × 3 subtasks × 2 target rows
 * against cosines computed from angles; the checkpoint weights are rescaled so that scaling every lr by a
 * constant changes nothing; permuting target rows (within and across subtasks) changes nothing; epoch
 * learning-rate weights of the reference's schedule are within 1% of its README constants.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { Matcher, checkpointWeights, epochAverageLr, subtaskGroups } from './match.ts';

/** unit vectors in the plane at angles θ: ⟨u(a), u(b)⟩ = cos(a − b) */
function circle(angles: number[]): Float32Array {
  return Float32Array.from(angles.flatMap((a) => [Math.cos(a), Math.sin(a)]));
}

test('hand fixture: 2 checkpoints, 3 subtasks of 2 rows; max over subtasks of the subtask mean', () => {
  const pool = [circle([0, 1]), circle([0.5, 2])]; // 2 pool rows, at checkpoints 0 and 1
  const tA = [0.1, 0.3, 1.0, 1.2, 2.0, 2.5];
  const tB = [0.4, 0.0, 1.5, 0.9, 3.0, 2.2];
  const subs = ['x', 'x', 'y', 'y', 'z', 'z'];
  const lrs = [3e-5, 1e-5];
  const m = new Matcher([circle(tA), circle(tB)], 6, 2, lrs, subtaskGroups(subs, [], 'max-subtask-mean'));
  const got = m.score(pool, 2);
  const w = [0.75, 0.25];
  const poolAngles = [
    [0, 1],
    [0.5, 2],
  ];
  for (let n = 0; n < 2; n++) {
    const S = tA.map((_, j) => w[0]! * Math.cos(poolAngles[0]![n]! - tA[j]!) + w[1]! * Math.cos(poolAngles[1]![n]! - tB[j]!));
    const means = [0, 2, 4].map((j) => (S[j]! + S[j + 1]!) / 2);
    const want = Math.max(...means);
    assert.ok(Math.abs(got[n]! - want) < 1e-6, `row ${n}: ${got[n]} vs ${want}`);
    const meanAll = S.reduce((a, b) => a + b, 0) / 6;
    const mm = new Matcher([circle(tA), circle(tB)], 6, 2, lrs, subtaskGroups(subs, [], 'mean'));
    assert.ok(Math.abs(mm.score(pool, 2)[n]! - meanAll) < 1e-6);
  }
});

test('weights sum to 1 and a common factor on the learning rates changes no score', () => {
  const w = checkpointWeights([1.6877e-5, 1.2859e-5, 7.703e-6, 2.5616e-6]);
  assert.ok(Math.abs(w.reduce((a, b) => a + b, 0) - 1) < 1e-15);
  const rng = new Rng(4);
  const d = 16;
  const M = 6;
  const N = 50;
  const unit = (n: number): Float32Array => {
    const x = Float32Array.from({ length: n * d }, () => rng.normal());
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += x[r * d + k]! ** 2;
      for (let k = 0; k < d; k++) x[r * d + k] = x[r * d + k]! / Math.sqrt(s);
    }
    return x;
  };
  const V = [unit(M), unit(M)];
  const G = [unit(N), unit(N)];
  const subs = ['a', 'b', 'a', 'c', 'b', 'c'];
  const base = new Matcher(V, M, d, [2e-5, 1e-5], subtaskGroups(subs, [], 'max-subtask-mean')).score(G, N);
  const scaled = new Matcher(V, M, d, [2e-5 * 1234.5, 1e-5 * 1234.5], subtaskGroups(subs, [], 'max-subtask-mean')).score(G, N);
  for (let n = 0; n < N; n++) assert.ok(Math.abs(base[n]! - scaled[n]!) < 1e-12);
  assert.throws(() => checkpointWeights([0, 0]), /sum to 0/);
  assert.throws(() => checkpointWeights([1, -1]), /not a finite number >= 0/);

  // permuting target rows (together with their subtask labels) changes no score
  const perm = rng.permutation(M);
  const Vp = V.map((v) => {
    const o = new Float32Array(v.length);
    perm.forEach((src, dst) => o.set(v.subarray(src * d, (src + 1) * d), dst * d));
    return o;
  });
  const permuted = new Matcher(Vp, M, d, [2e-5, 1e-5], subtaskGroups(perm.map((p) => subs[p]!), [], 'max-subtask-mean')).score(G, N);
  for (let n = 0; n < N; n++) assert.ok(Math.abs(base[n]! - permuted[n]!) < 1e-12, `row ${n}`);
});

test('subtasks: none at all is one group; a mix names the row without one', () => {
  assert.deepEqual(subtaskGroups([undefined, undefined], [], 'max-subtask-mean').names, ['all']);
  assert.throws(() => subtaskGroups(['a', undefined], ['t.jsonl:1', 't.jsonl:2'], 'max-subtask-mean'), /t\.jsonl:2: no "subtask"/);
  assert.deepEqual([...subtaskGroups(['a', 'b', 'a'], [], 'max-subtask-mean').sizes], [2, 1]);
});

test('epoch-average learning rates of the reference schedule are within 1% of its README weights', () => {
  // 4 epochs on 4 GPUs: 420 updates, warmup_ratio 0.03 → 13 warmup steps, 105 updates per epoch
  const lrs = epochAverageLr({ kind: 'linear', lr: 2e-5, warmupSteps: 13, totalSteps: 420 }, [105, 210, 315, 420]);
  const readme = [1.6877e-5, 1.2859e-5, 7.703e-6, 2.5616e-6];
  lrs.forEach((x, i) => assert.ok(Math.abs(x / readme[i]! - 1) < 0.0025, `epoch ${i + 1}: ${x} vs ${readme[i]}`));
});

test('epoch-average learning rates are means of the schedule over each epoch (brute force)', () => {
  const s = { kind: 'linear' as const, lr: 1, warmupSteps: 2, totalSteps: 6 };
  // logged lrs after updates 1..6: 0.5, 1, 0.75, 0.5, 0.25, 0
  const got = epochAverageLr(s, [3, 6]);
  assert.ok(Math.abs(got[0]! - (0.5 + 1 + 0.75) / 3) < 1e-15);
  assert.ok(Math.abs(got[1]! - (0.5 + 0.25 + 0) / 3) < 1e-15);
  assert.throws(() => epochAverageLr(s, [3, 3]), /must increase/);
});
