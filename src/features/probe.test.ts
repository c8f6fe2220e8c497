/**
 * The probe solver against optima found independently: a 1-D problem whose stationarity equation is
 * solved by bisection, the intercept-only limit (class log-priors), finite-difference gradients of an
 * independently written loss at the solution, and cross-validation against a brute-force loop.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';
import { accuracyOf, decisionScores, fitProbe, predict, type Dataset } from './probe.ts';
import { crossValidate, defaultCs, repeatedSplits, stratifiedFolds, subset, trainAndEvaluate } from './cv.ts';
import { minimizeLbfgs } from './lbfgs.ts';

/** a Gaussian blob per class, means at random points, in d dims */
function blobs(n: number, d: number, K: number, seed: number, spread = 1): Dataset {
  const rng = new Rng(seed);
  const centers = Array.from({ length: K }, () => Array.from({ length: d }, () => rng.normal() * 1.5));
  const x = new Float64Array(n * d);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = rng.int(K);
    y[i] = k * 3 + 1; // non-contiguous label values: the probe must map them
    for (let j = 0; j < d; j++) x[i * d + j] = centers[k]![j]! + spread * rng.normal() + (j === 0 ? 5 : 0);
  }
  return { x, y, n, d };
}

/** ½‖W‖² + C Σ loss written from scratch (log of a softmax via explicit sums; binary as 2 logits [0, z]) */
function independentLoss(data: Dataset, classes: number[], w: Float64Array, b: Float64Array, C: number): number {
  const { n, d } = data;
  const rows = b.length;
  let f = 0;
  for (let k = 0; k < w.length; k++) f += (w[k]! * w[k]!) / 2;
  for (let i = 0; i < n; i++) {
    const logits: number[] = [];
    for (let r = 0; r < rows; r++) {
      let s = b[r]!;
      for (let j = 0; j < d; j++) s += w[r * d + j]! * data.x[i * d + j]!;
      logits.push(s);
    }
    const full = rows === 1 ? [0, logits[0]!] : logits;
    const yi = classes.indexOf(data.y[i]!);
    const m = Math.max(...full);
    f += C * (m + Math.log(full.reduce((a, z) => a + Math.exp(z - m), 0)) - full[yi]!);
  }
  return f;
}

test('1-D ridge logistic regression: the solver matches the bisection root of w = 2C·σ(−w)', () => {
  // x = ±1 with labels 0/1, no intercept: f(w) = ½w² + 2C·log(1 + e^{−w}); f'(w) = w − 2C·σ(−w)
  for (const C of [0.01, 0.5, 3, 100]) {
    const data: Dataset = { x: Float64Array.from([-1, 1]), y: Int32Array.from([0, 1]), n: 2, d: 1 };
    const p = fitProbe(data, { C, fitIntercept: false, solver: { gtol: 1e-13 } });
    let lo = 0;
    let hi = 2 * C;
    for (let it = 0; it < 200; it++) {
      const mid = (lo + hi) / 2;
      if (mid - (2 * C) / (1 + Math.exp(mid)) > 0) hi = mid;
      else lo = mid;
    }
    assert.ok(Math.abs(p.w[0]! - lo) <= 1e-9 * Math.max(1, lo), `C=${C}: solver ${p.w[0]} vs bisection ${lo}`);
    assert.equal(p.b[0], 0);
  }
});

test('as C → 0 the weights vanish and the unpenalized intercepts are the class log-priors', () => {
  const bin = blobs(200, 3, 2, 1);
  const n1 = bin.y.filter((v) => v === 4).length;
  const pb = fitProbe(bin, { C: 1e-9, solver: { gtol: 1e-12 } });
  assert.ok(Math.abs(pb.b[0]! - Math.log(n1 / (200 - n1))) < 1e-5, `${pb.b[0]} vs log(${n1}/${200 - n1})`);
  assert.ok(Math.max(...pb.w.map(Math.abs)) < 1e-5);
  const multi = blobs(300, 3, 3, 2);
  const pm = fitProbe(multi, { C: 1e-9, solver: { gtol: 1e-12 } });
  const counts = pm.classes.map((c) => multi.y.filter((v) => v === c).length);
  // intercepts are identified up to a shift: compare differences
  for (let k = 1; k < 3; k++) assert.ok(Math.abs(pm.b[k]! - pm.b[0]! - Math.log(counts[k]! / counts[0]!)) < 1e-5);
});

test('binary and multinomial optima: central finite differences of an independent loss vanish there', () => {
  for (const [K, C, std] of [[2, 0.3, false], [4, 2, false], [3, 0.05, true]] as const) {
    const data = blobs(120, 5, K, 10 + K);
    const p = fitProbe(data, { C, standardize: std, solver: { gtol: 1e-12 } });
    assert.ok(p.converged);
    // the independent loss in the probe's own (standardized) coordinates
    const xs = new Float64Array(data.x.length);
    for (let i = 0; i < data.n; i++) for (let j = 0; j < data.d; j++) xs[i * data.d + j] = (data.x[i * data.d + j]! - p.mean[j]!) / p.scale[j]!;
    if (std) for (let j = 0; j < data.d; j++) assert.ok(Math.abs(p.mean[j]! - data.x.filter((_, i) => i % data.d === j).reduce((a, b) => a + b, 0) / data.n) < 1e-12);
    const sdata = { ...data, x: xs };
    const theta = [...p.w, ...p.b];
    const f0 = independentLoss(sdata, p.classes, p.w, p.b, C);
    const h = 1e-5;
    let worst = 0;
    for (let k = 0; k < theta.length; k++) {
      const at = (delta: number): number => {
        const t = Float64Array.from(theta);
        t[k] = t[k]! + delta;
        return independentLoss(sdata, p.classes, t.subarray(0, p.w.length), t.subarray(p.w.length), C);
      };
      worst = Math.max(worst, Math.abs((at(h) - at(-h)) / (2 * h)));
    }
    assert.ok(worst < 1e-5 * Math.max(1, f0), `K=${K}: largest |∂f/∂θ| at the solution ${worst}`);
    // and any perturbation increases the independent loss (a minimum, not a saddle)
    const rng = new Rng(K);
    for (let t = 0; t < 5; t++) {
      const dir = theta.map(() => rng.normal() * 1e-2);
      const w2 = Float64Array.from(p.w, (v, i) => v + dir[i]!);
      const b2 = Float64Array.from(p.b, (v, i) => v + dir[p.w.length + i]!);
      assert.ok(independentLoss(sdata, p.classes, w2, b2, C) > f0);
    }
  }
});

test('standardized probes predict the same on raw eval features as on features scaled by hand', () => {
  const data = blobs(100, 4, 3, 7);
  const p = fitProbe(data, { C: 1, standardize: true });
  const s = decisionScores(p, data.x, data.n);
  // one row by hand: b + W (x − μ)/σ
  let z = p.b[2]!;
  for (let j = 0; j < 4; j++) z += (p.w[2 * 4 + j]! * (data.x[5 * 4 + j]! - p.mean[j]!)) / p.scale[j]!;
  assert.ok(Math.abs(s[5 * 3 + 2]! - z) < 1e-12);
  assert.ok(accuracyOf(predict(p, data.x, data.n), data.y) > 0.8);
});

test('stratified folds deal each class round-robin in file order, as sklearn StratifiedKFold(shuffle=False)', () => {
  // 7 of class 5 then 4 of class 2, interleaved; 3 folds: sorted codes [0×7, 1×4] dealt round-robin
  const y = Int32Array.from([5, 2, 5, 5, 2, 5, 5, 2, 5, 2, 5]);
  const folds = stratifiedFolds(y, 3);
  for (const c of [5, 2]) {
    const fs = [...folds].filter((_, i) => y[i] === c);
    assert.deepEqual(fs, [...fs].sort((a, b) => a - b), 'folds increase in file order within a class');
  }
  // brute-force allocation: deal the appearance-coded sorted labels to folds i mod 3
  const sorted = [...y].map((v) => (v === 5 ? 0 : 1)).sort((a, b) => a - b);
  for (let f = 0; f < 3; f++) {
    for (const [code, c] of [[0, 5], [1, 2]] as const) {
      const expected = sorted.filter((v, i) => i % 3 === f && v === code).length;
      assert.equal([...folds].filter((g, i) => g === f && y[i] === c).length, expected);
    }
  }
  assert.throws(() => stratifiedFolds(Int32Array.from([0, 0, 0, 1]), 2), (e: unknown) => e instanceof LmtuneError && /class 1 has only 1/.test(e.message));
});

test('cross-validation picks the same C and fold scores as a brute-force loop without warm starts', () => {
  const data = blobs(90, 6, 3, 21, 2.5);
  const Cs = [1e-3, 1e-2, 0.1, 1, 10];
  const cv = crossValidate(data, { Cs, folds: 3, solver: { gtol: 1e-11 } });
  const folds = stratifiedFolds(data.y, 3);
  const brute = Cs.map((C) => {
    let s = 0;
    for (let f = 0; f < 3; f++) {
      const tr = [...Array(data.n).keys()].filter((i) => folds[i] !== f);
      const te = [...Array(data.n).keys()].filter((i) => folds[i] === f);
      const p = fitProbe(subset(data, tr), { C, solver: { gtol: 1e-11 } });
      const e = subset(data, te);
      s += accuracyOf(predict(p, e.x, e.n), e.y) / 3;
    }
    return s;
  });
  brute.forEach((s, i) => assert.ok(Math.abs(s - cv.scores[i]!) < 1e-12, `C=${Cs[i]}: ${s} vs ${cv.scores[i]}`));
  const best = brute.indexOf(Math.max(...brute));
  assert.equal(cv.C, Cs[best]);
  assert.ok(new Set(brute).size > 1, 'the grid should separate the Cs on this data');
  assert.deepEqual(defaultCs(500), [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1, 10, 100, 1000]);
});

test('repeated splits: each split is a cross-validated probe on a seeded permutation', () => {
  const data = blobs(80, 3, 2, 4);
  const opts = { Cs: [0.01, 1], folds: 3, splits: 2, testFraction: 0.25, seed: 9 };
  const r = repeatedSplits(data, opts);
  assert.equal(r.values.length, 2);
  assert.ok(Math.abs(r.value - (r.values[0]! + r.values[1]!) / 2) < 1e-15);
  assert.deepEqual(repeatedSplits(data, opts), r);
  // split 0 by hand
  const perm = new Rng(9).fork('split-0').permutation(80);
  const one = trainAndEvaluate(subset(data, perm.slice(20)), subset(data, perm.slice(0, 20)), opts);
  assert.equal(one.value, r.values[0]);
});

test('bad probe input: one class, mismatched widths, unseen eval labels', () => {
  const one: Dataset = { x: new Float64Array(10), y: new Int32Array(10).fill(3), n: 10, d: 1 };
  assert.throws(() => fitProbe(one, { C: 1 }), (e: unknown) => e instanceof LmtuneError && /at least two classes.*label 3/.test(e.message));
  const a = blobs(40, 3, 2, 1);
  const b = blobs(10, 4, 2, 1);
  assert.throws(() => trainAndEvaluate(a, b, { Cs: [1], folds: 2 }), (e: unknown) => e instanceof LmtuneError && /3 wide.*4 wide/.test(e.message));
});

test('L-BFGS minimizes an ill-conditioned quadratic to its closed-form minimizer', () => {
  // f(x) = ½ Σ λ_i (x_i − c_i)², λ from 1 to 1e3
  const n = 20;
  const lam = Array.from({ length: n }, (_, i) => Math.pow(1e3, i / (n - 1)));
  const c = Array.from({ length: n }, (_, i) => Math.sin(i + 1));
  const r = minimizeLbfgs((x, g) => {
    let f = 0;
    for (let i = 0; i < n; i++) {
      const e = x[i]! - c[i]!;
      f += 0.5 * lam[i]! * e * e;
      g[i] = lam[i]! * e;
    }
    return f;
  }, new Float64Array(n), { gtol: 1e-12 });
  assert.ok(r.converged);
  for (let i = 0; i < n; i++) assert.ok(Math.abs(r.x[i]! - c[i]!) < 1e-8, `x${i}: ${r.x[i]} vs ${c[i]}`);
});
