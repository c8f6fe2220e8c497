/**
 * Solver claims of spec §6 (items 10–14) and the SMO / logistic solvers against independent
 * computations: Gaussian elimination, gradient flow on a linearized model, brute-force QP over active
 * sets, the logistic objective's stationarity.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';
import { computeKernels } from './accumulate.ts';
import { lstsq, spectralNorm, svd } from './linalg.ts';
import { aggregateBySeed, gridSearch } from './select.ts';
import { asymLsSvm, decode, logisticFit, solve, targets, type KernelProblem } from './solvers.ts';
import { svcDual, svrDual } from './smo.ts';
import { mlpModel, toySource } from './toy.ts';

const rng = new Rng(21);
const vec = (n: number, s = 1): Float64Array => Float64Array.from({ length: n }, () => s * rng.normal());

/** plain Gaussian elimination with partial pivoting: an independent A⁻¹b */
function gauss(A: Float64Array, b: Float64Array, n: number): Float64Array {
  const M = Array.from({ length: n }, (_, i) => [...A.subarray(i * n, (i + 1) * n), b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[p]![c]!)) p = r;
    [M[c], M[p]] = [M[p]!, M[c]!];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r]![c]! / M[c]![c]!;
      for (let k = c; k <= n; k++) M[r]![k] = M[r]![k]! - f * M[c]![k]!;
    }
  }
  return Float64Array.from({ length: n }, (_, i) => M[i]![n]! / M[i]![i]!);
}

function rbfProblem(n: number, m: number, C: number, seed = 0): KernelProblem {
  const r = new Rng(seed);
  const xs = Array.from({ length: n + m }, () => [r.normal(), r.normal()]);
  const k = (a: number[], b: number[]) => Math.exp(-((a[0]! - b[0]!) ** 2 + (a[1]! - b[1]!) ** 2));
  const nc = n * C;
  const mc = m * C;
  const tt = new Float64Array(nc * nc);
  const te = new Float64Array(nc * mc);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < C; c++) {
      for (let j = 0; j < n; j++) tt[(i * C + c) * nc + j * C + c] = k(xs[i]!, xs[j]!);
      for (let j = 0; j < m; j++) te[(i * C + c) * mc + j * C + c] = k(xs[i]!, xs[n + j]!);
    }
  }
  const label = (x: number[]) => (C === 1 ? (x[0]! + 0.3 * x[1]! > 0 ? 1 : 0) : (x[0]! > 0 ? 1 : 0) + (C > 2 && x[1]! > 0.5 ? 1 : 0));
  return {
    classes: C,
    n,
    m,
    trainTrain: tt,
    trainEval: te,
    f0Train: Float64Array.from({ length: nc }, () => r.normal()),
    f0Eval: Float64Array.from({ length: mc }, () => r.normal()),
    labelsTrain: Int32Array.from(xs.slice(0, n), label),
    labelsEval: Int32Array.from(xs.slice(n), label),
  };
}

/** the train set as its own eval set */
function onTrain(p: KernelProblem): KernelProblem {
  return { ...p, m: p.n, trainEval: p.trainTrain, f0Eval: p.f0Train, labelsEval: p.labelsTrain };
}

test('§6.10 lstsq with r = 0 interpolates; the solution is (K + r‖K‖₂I)⁻¹(Y − f₀/s); predictions add f₀/s', () => {
  for (const C of [1, 3]) {
    const p = rbfProblem(8, 5, C);
    const self = solve('lstsq', onTrain(p));
    const y = targets(p.labelsTrain, C);
    self.predictions.forEach((v, i) => assert.ok(Math.abs(v - y[i]!) < 1e-8, `train prediction ${i}: ${v} vs ${y[i]}`));
    assert.equal(self.value, 1);
    assert.equal(self.rank, 8 * C);
    const nc = 8 * C;
    const mc = 5 * C;
    for (const [reg, s] of [[0.1, 10], [1e-3, 1]] as const) {
      const K = Float64Array.from(p.trainTrain);
      const add = reg * spectralNorm(p.trainTrain, nc, nc);
      for (let i = 0; i < nc; i++) K[i * nc + i] = K[i * nc + i]! + add;
      const alpha = gauss(K, y.map((v, i) => v - p.f0Train[i]! / s), nc);
      const r = solve('lstsq', p, { reg, f0Scaling: s });
      for (let j = 0; j < mc; j++) {
        let want = p.f0Eval[j]! / s;
        for (let i = 0; i < nc; i++) want += p.trainEval[i * mc + j]! * alpha[i]!;
        assert.ok(Math.abs(r.predictions[j]! - want) < 1e-9 * (1 + Math.abs(want)));
      }
    }
  }
});

test('§6.10 bad input: a singular kernel without a ridge, labels outside the task, svc/asym on multi-class kernels', () => {
  const p = rbfProblem(4, 3, 1);
  const dup = { ...p, trainTrain: new Float64Array(16).fill(1) };
  assert.throws(() => solve('lstsq', dup), (e: unknown) => e instanceof LmtuneError && /singular \(rank 1 of 4\)/.test(e.message) && /--reg/.test(e.hint ?? ''));
  assert.doesNotThrow(() => solve('lstsq', dup, { reg: 1e-3 }));
  assert.throws(() => solve('lstsq', { ...p, labelsEval: Int32Array.from([0, 2, 1]) }), /eval label 2 of example 1 is outside the task's 2 classes/);
  const multi = rbfProblem(4, 3, 3);
  assert.throws(() => solve('svc', multi), /--binary/);
  assert.throws(() => solve('asym', multi), /--binary/);
});

test('§6.11 kernel regression = gradient flow to convergence on the linearized model (MSE)', async () => {
  const model = mlpModel(3, 6, 2);
  const theta = vec(model.params, 0.6);
  const train = Array.from({ length: 4 }, () => vec(3));
  const evalSet = Array.from({ length: 3 }, () => vec(3));
  const labels = Int32Array.from([0, 1, 1, 0]);
  const k = await computeKernels(toySource(model, theta, { train, eval: evalSet }), { formula: 'sgd' });
  const p: KernelProblem = {
    classes: 2, n: 4, m: 3, trainTrain: k.kernels.train_train!, trainEval: k.kernels.train_eval!,
    f0Train: k.f0.train!, f0Eval: k.f0.eval!, labelsTrain: labels, labelsEval: Int32Array.from([0, 0, 0]),
  };
  const kr = solve('lstsq', p, { f0Scaling: 1 });
  // gradient descent on ½‖f₀ + JΔθ − Y‖² from Δθ = 0 with step 1/λ_max(JJᵀ)
  const P = model.params;
  const J = new Float64Array(8 * P);
  train.forEach((x, i) => J.set(model.jacobian(theta, x), i * 2 * P));
  const Y = targets(labels, 2);
  const lr = 1 / spectralNorm(k.kernels.train_train!, 8, 8);
  const dth = new Float64Array(P);
  for (let it = 0; it < 200_000; it++) {
    const resid = new Float64Array(8);
    for (let r = 0; r < 8; r++) {
      let s = k.f0.train![r]! - Y[r]!;
      for (let q = 0; q < P; q++) s += J[r * P + q]! * dth[q]!;
      resid[r] = s;
    }
    let norm = 0;
    for (let q = 0; q < P; q++) {
      let g = 0;
      for (let r = 0; r < 8; r++) g += J[r * P + q]! * resid[r]!;
      dth[q] = dth[q]! - lr * g;
      norm = Math.max(norm, Math.abs(g));
    }
    if (norm < 1e-13) break;
  }
  evalSet.forEach((x, j) => {
    const Je = model.jacobian(theta, x);
    for (let c = 0; c < 2; c++) {
      let f = k.f0.eval![j * 2 + c]!;
      for (let q = 0; q < P; q++) f += Je[c * P + q]! * dth[q]!;
      assert.ok(Math.abs(f - kr.predictions[j * 2 + c]!) < 1e-7 * (1 + Math.abs(f)), `eval ${j} class ${c}: flow ${f} vs kernel ${kr.predictions[j * 2 + c]}`);
    }
  });
});

test('§6.12 asymmetric LS-SVM on a symmetric kernel: α = β solves (H + I/γ)α = 𝟙, predictions do not depend on λ', () => {
  const p = rbfProblem(6, 4, 1, 3);
  const y = targets(p.labelsTrain, 1);
  const gamma = 2;
  const { alpha, beta } = asymLsSvm(p.trainTrain, 6, y, gamma);
  const H = new Float64Array(36);
  for (let i = 0; i < 6; i++) for (let j = 0; j < 6; j++) H[i * 6 + j] = y[i]! * p.trainTrain[i * 6 + j]! * y[j]! + (i === j ? 1 / gamma : 0);
  const want = gauss(H, new Float64Array(6).fill(1), 6);
  for (let i = 0; i < 6; i++) {
    assert.ok(Math.abs(alpha[i]! - beta[i]!) < 1e-10);
    assert.ok(Math.abs(alpha[i]! - want[i]!) < 1e-10);
  }
  // the flipped kernel of a symmetric kernel is its transpose in [eval, train] order
  const et = new Float64Array(4 * 6);
  for (let i = 0; i < 6; i++) for (let j = 0; j < 4; j++) et[j * 6 + i] = p.trainEval[i * 4 + j]!;
  const sym = { ...p, evalTrain: et };
  const preds = [0, 0.3, 1].map((lambda) => solve('asym', sym, { gamma, lambda }).predictions);
  for (const q of preds.slice(1)) q.forEach((v, j) => assert.ok(Math.abs(v - preds[0]![j]!) < 1e-10));
});

test('§6.13 reshape round trips: [N,C,M,C] ↔ [N·C, M·C] row-major, one-hot targets ↔ argmax', () => {
  const N = 3;
  const M = 2;
  const C = 4;
  // nested [N][C][M][C] → flat, and the flat index the solvers use
  const nested = Array.from({ length: N }, (_, i) => Array.from({ length: C }, (_, c) => Array.from({ length: M }, (_, j) => Array.from({ length: C }, (_, d) => 1000 * i + 100 * c + 10 * j + d))));
  const flat = Float64Array.from(nested.flat(3));
  for (let i = 0; i < N; i++) for (let c = 0; c < C; c++) for (let j = 0; j < M; j++) for (let d = 0; d < C; d++) assert.equal(flat[(i * C + c) * (M * C) + j * C + d], nested[i]![c]![j]![d]);
  const labels = Int32Array.from([3, 0, 2, 1, 1]);
  assert.deepEqual(decode(targets(labels, C), C), labels);
  const bin = Int32Array.from([1, 0, 0, 1]);
  assert.deepEqual([...targets(bin, 1)], [1, -1, -1, 1]);
  assert.deepEqual(decode(targets(bin, 1), 1), bin);
});

test('§6.14 aggregation: per seed the best dev run (first on ties), mean and population std of test', () => {
  const runs = [
    { seed: 13, dev: 0.5, test: 0.6 },
    { seed: 13, dev: 0.7, test: 0.65 },
    { seed: 13, dev: 0.7, test: 0.9 }, // tie on dev: the first one wins
    { seed: 21, dev: 0.8, test: 0.7 },
    { seed: 21, dev: 0.6, test: 0.95 },
  ];
  const a = aggregateBySeed(runs);
  assert.deepEqual(a.perSeed.map((r) => r.test), [0.65, 0.7]);
  assert.ok(Math.abs(a.mean - 0.675) < 1e-15);
  assert.ok(Math.abs(a.std - 0.025) < 1e-15);
});

test('grid search picks the setting with the best dev score and reports its test score', () => {
  const dev = rbfProblem(10, 8, 1, 5);
  const test = { ...dev, m: 6, trainEval: rbfProblem(10, 6, 1, 5).trainEval, f0Eval: new Float64Array(6), labelsEval: Int32Array.from([0, 1, 0, 1, 1, 0]) };
  const grid = [{ reg: 0 }, { reg: 0.1 }, { reg: 10 }];
  const g = gridSearch('lstsq', dev, test, grid);
  const scores = grid.map((o) => solve('lstsq', dev, o).value);
  const bestIdx = scores.indexOf(Math.max(...scores));
  assert.deepEqual(g.best, grid[bestIdx]);
  assert.equal(g.test.value, solve('lstsq', test, grid[bestIdx]!).value);
});

/** Brute force for min ½aᵀQa + pᵀa, yᵀa = 0, 0 ≤ a ≤ C: every active set (0, C or free), the best feasible point. */
function bruteQp(n: number, Q: (i: number, j: number) => number, p: Float64Array, y: Int8Array, C: number): { a: Float64Array; obj: number } {
  let best: { a: Float64Array; obj: number } | null = null;
  const total = 3 ** n;
  for (let code = 0; code < total; code++) {
    const state = Array.from({ length: n }, (_, i) => Math.floor(code / 3 ** i) % 3); // 0: at 0, 1: at C, 2: free
    const free = state.flatMap((s, i) => (s === 2 ? [i] : []));
    const a = Float64Array.from(state, (s) => (s === 1 ? C : 0));
    if (free.length > 0) {
      // [Q_FF y_F; y_Fᵀ 0] [a_F; ν] = [−p_F − Q_FB a_B; −y_Bᵀ a_B]
      const k = free.length + 1;
      const A = new Float64Array(k * k);
      const b = new Float64Array(k);
      free.forEach((i, r) => {
        free.forEach((j, c) => (A[r * k + c] = Q(i, j)));
        A[r * k + free.length] = y[i]!;
        A[free.length * k + r] = y[i]!;
        let s = -p[i]!;
        for (let j = 0; j < n; j++) if (state[j] === 1) s -= Q(i, j) * C;
        b[r] = s;
      });
      let s = 0;
      for (let j = 0; j < n; j++) if (state[j] === 1) s -= y[j]! * C;
      b[free.length] = s;
      const x = lstsq(A, b, k, k, 1).x;
      free.forEach((i, r) => (a[i] = x[r]!));
    }
    let eq = 0;
    for (let i = 0; i < n; i++) eq += y[i]! * a[i]!;
    if (Math.abs(eq) > 1e-9 || a.some((v) => v < -1e-9 || v > C + 1e-9)) continue;
    let obj = 0;
    for (let i = 0; i < n; i++) {
      obj += p[i]! * a[i]!;
      for (let j = 0; j < n; j++) obj += 0.5 * a[i]! * Q(i, j) * a[j]!;
    }
    if (!best || obj < best.obj - 1e-12) best = { a, obj };
  }
  return best!;
}

test('SMO (svc and ε-svr duals) reaches the brute-force QP optimum on tiny problems', () => {
  const p = rbfProblem(6, 1, 1, 9);
  const K = p.trainTrain;
  const y = Int8Array.from(targets(p.labelsTrain, 1));
  for (const Cb of [0.5, 5]) {
    const svc = svcDual(K, 6, y, Cb);
    const bf = bruteQp(6, (i, j) => y[i]! * y[j]! * K[i * 6 + j]!, new Float64Array(6).fill(-1), y, Cb);
    assert.ok(Math.abs(svc.objective - bf.obj) < 1e-8 * (1 + Math.abs(bf.obj)), `svc C=${Cb}: ${svc.objective} vs ${bf.obj}`);
    svc.coef.forEach((v, i) => assert.ok(Math.abs(v - bf.a[i]! * y[i]!) < 1e-5, `coef ${i}`));
  }
  const n = 4;
  const Ks = p.trainTrain.filter((_, k) => Math.floor(k / 6) < n && k % 6 < n);
  const z = Float64Array.from([0.9, -0.4, 0.2, 1.3]);
  const eps = 0.1;
  const svr = svrDual(Ks, n, z, 1, eps);
  const yy = Int8Array.from([1, 1, 1, 1, -1, -1, -1, -1]);
  const pp = Float64Array.from([...z].map((v) => eps - v).concat([...z].map((v) => eps + v)));
  const bf = bruteQp(2 * n, (i, j) => yy[i]! * yy[j]! * Ks[(i % n) * n + (j % n)]!, pp, yy, 1);
  assert.ok(Math.abs(svr.objective - bf.obj) < 1e-8 * (1 + Math.abs(bf.obj)), `svr: ${svr.objective} vs ${bf.obj}`);
  svr.coef.forEach((v, i) => assert.ok(Math.abs(v - (bf.a[i]! - bf.a[i + n]!)) < 1e-5));
  // every solver runs end to end on a binary problem and beats chance on this separable-ish data
  for (const s of ['lstsq', 'logistic', 'svr', 'svc'] as const) assert.ok(solve(s, rbfProblem(30, 40, 1, 2), { reg: 1e-3 }).value > 0.6, s);
});

test('logistic regression: the gradient of C·Σ log(1 + e^{−y(wᵀx+b)}) + ½‖w‖² vanishes at the fit', () => {
  const n = 12;
  const d = 3;
  const X = vec(n * d);
  const y = Int8Array.from({ length: n }, (_, i) => (X[i * d]! + 0.5 * rng.normal() > 0 ? 1 : -1));
  const C = 2;
  const { w, b } = logisticFit(X, n, d, y, C);
  const g = new Float64Array(d + 1);
  for (let i = 0; i < n; i++) {
    let z = b;
    for (let j = 0; j < d; j++) z += w[j]! * X[i * d + j]!;
    const s = -C * y[i]! / (1 + Math.exp(y[i]! * z));
    for (let j = 0; j < d; j++) g[j] = g[j]! + s * X[i * d + j]!;
    g[d] = g[d]! + s;
  }
  for (let j = 0; j < d; j++) g[j] = g[j]! + w[j]!;
  g.forEach((v) => assert.ok(Math.abs(v) < 1e-8, `gradient ${v}`));
  // the SVD behind lstsq reconstructs its input
  const A = vec(5 * 3);
  const s = svd(A, 5, 3);
  for (let i = 0; i < 5; i++) for (let j = 0; j < 3; j++) {
    let v = 0;
    for (let k = 0; k < 3; k++) v += s.u[i * 3 + k]! * s.s[k]! * s.v[j * 3 + k]!;
    assert.ok(Math.abs(v - A[i * 3 + j]!) < 1e-12);
  }
});
