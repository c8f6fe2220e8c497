/**
 * The kernel identities of spec §6, items 1–9, on float64 reference models (toy.ts) whose Jacobians are
 * analytic: each kernel is checked against an independent brute-force loop over the full Jacobians.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { RademacherProjection } from '../projection/rademacher.ts';
import { binarySource, computeKernels, type KernelState } from './accumulate.ts';
import { OrtGemm, type KernelFormula } from './formula.ts';
import { symmetricEigenvalues, svd } from './linalg.ts';
import { linearModel, mlpModel, toySource, type ToyModel } from './toy.ts';

const rng = new Rng(7);
const vec = (n: number, s = 1): Float64Array => Float64Array.from({ length: n }, () => s * rng.normal());
const D = 5;
const H = 7;
const C = 3;
const mlp = mlpModel(D, H, C);
const theta = vec(mlp.params, 0.7);
const train = Array.from({ length: 6 }, () => vec(D));
const evalSet = Array.from({ length: 4 }, () => vec(D));

function sgn(x: number): number {
  return x > 0 ? 1 : x < 0 ? -1 : 0;
}

/** brute force: K[(i,c),(j,c')] = ⟨op_out g_c(x_i), op_in g_c'(x_j)⟩ from the full Jacobians */
function bruteKernel(m: ToyModel, th: Float64Array, xs: Float64Array[], ys: Float64Array[], f: KernelFormula): Float64Array {
  const P = m.params;
  const Cm = m.classes;
  const out = new Float64Array(xs.length * Cm * ys.length * Cm);
  const ld = ys.length * Cm;
  xs.forEach((x, i) => {
    const Jx = m.jacobian(th, x);
    ys.forEach((y, j) => {
      const Jy = m.jacobian(th, y);
      for (let c = 0; c < Cm; c++) {
        for (let d = 0; d < Cm; d++) {
          let s = 0;
          for (let k = 0; k < P; k++) {
            const a = Jx[c * P + k]!;
            const b = Jy[d * P + k]!;
            s += (f === 'sgd' ? a : sgn(a)) * (f === 'signgd' ? sgn(b) : b);
          }
          out[(i * Cm + c) * ld + j * Cm + d] = s;
        }
      }
    });
  });
  return out;
}

function maxRelDiff(a: Float64Array, b: Float64Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return m / Math.max(scale, 1e-300);
}

test('§6.1/6.6 every formula equals the brute-force kernel for any parameter and example blocking', async () => {
  const P = mlp.params;
  for (const formula of ['sgd', 'signgd', 'asymmetric-signgd'] as const) {
    const brute = bruteKernel(mlp, theta, train, train, formula);
    const bruteTE = bruteKernel(mlp, theta, train, evalSet, formula);
    const bruteET = bruteKernel(mlp, theta, evalSet, train, formula);
    for (const [blocks, batch] of [[[P], 8], [[1, 20, P - 21], 1], [[13, 13, P - 26], 4], [Array.from({ length: P }, () => 1), 3]] as const) {
      const k = await computeKernels(toySource(mlp, theta, { train, eval: evalSet }, blocks), { formula, batch });
      const tol = formula === 'signgd' ? 0 : 1e-13; // SignGD kernels are sums of ±1 terms: exact
      assert.ok(maxRelDiff(k.kernels.train_train!, brute) <= tol, `${formula} train_train blocks ${blocks.length} batch ${batch}`);
      assert.ok(maxRelDiff(k.kernels.train_eval!, bruteTE) <= tol, `${formula} train_eval`);
      if (formula === 'asymmetric-signgd') assert.ok(maxRelDiff(k.kernels.eval_train!, bruteET) <= tol, 'flipped kernel');
      else assert.equal(k.kernels.eval_train, undefined);
      // f₀ is the model output at θ
      train.forEach((x, i) => mlp.forward(theta, x).forEach((v, c) => assert.equal(k.f0.train![i * C + c], v)));
    }
  }
});

test('§6.1 SGD and SignGD kernels are symmetric and PSD, rank ≤ min(N·C, P)', async () => {
  // few parameters so the rank bound bites: linear model with d = 2, C = 3 → P = 9 < N·C = 18
  const lin = linearModel(2, 3);
  const th = vec(lin.params);
  for (const [m, t] of [[mlp, theta], [lin, th]] as const) {
    for (const formula of ['sgd', 'signgd'] as const) {
      const k = await computeKernels(toySource(m, t, { train }), { formula });
      const n = train.length * m.classes;
      const K = k.kernels.train_train!;
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.equal(K[i * n + j], K[j * n + i]);
      const ev = symmetricEigenvalues(K, n);
      const top = ev[n - 1]!;
      assert.ok(ev[0]! >= -1e-10 * top, `${formula}: min eigenvalue ${ev[0]} of ${top}`);
      const s = svd(K, n, n).s;
      const rank = [...s].filter((v) => v > 1e-9 * s[0]!).length;
      assert.ok(rank <= Math.min(n, m.params), `${formula} rank ${rank}`);
    }
  }
});

test('§6.2 SignGD diagonal = nnz(g), integer entries with |K| ≤ P; §6.3 A-SignGD diagonal = ‖g‖₁, asymmetric', async () => {
  // a ReLU-like zero pattern: set some features to exact zeros so nnz < P
  const xs = train.map((x, i) => Float64Array.from(x, (v, j) => ((i + j) % 3 === 0 ? 0 : v)));
  const lin = linearModel(D, C);
  const th = vec(lin.params);
  const P = lin.params;
  const sg = await computeKernels(toySource(lin, th, { train: xs }), { formula: 'signgd' });
  const as = await computeKernels(toySource(lin, th, { train: xs }), { formula: 'asymmetric-signgd' });
  const n = xs.length * C;
  let asymmetric = false;
  xs.forEach((x, i) => {
    const J = lin.jacobian(th, x);
    for (let c = 0; c < C; c++) {
      const r = i * C + c;
      let nnz = 0;
      let l1 = 0;
      for (let k = 0; k < P; k++) {
        if (J[c * P + k] !== 0) nnz++;
        l1 += Math.abs(J[c * P + k]!);
      }
      assert.equal(sg.kernels.train_train![r * n + r], nnz);
      assert.ok(Math.abs(as.kernels.train_train![r * n + r]! - l1) < 1e-12 * l1);
    }
  });
  for (let i = 0; i < n * n; i++) {
    const v = sg.kernels.train_train![i]!;
    assert.ok(Number.isInteger(v) && Math.abs(v) <= P);
  }
  const K = as.kernels.train_train!;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (Math.abs(K[i * n + j]! - K[j * n + i]!) > 1e-9) asymmetric = true;
  assert.ok(asymmetric, 'the A-SignGD kernel should be asymmetric in general');
});

test('§6.3 with eval = train, the flipped A-SignGD kernel is the train kernel (the reference stores its transpose)', async () => {
  // eval_train[i, j] = ⟨sign g(eval_i), g(train_j)⟩ in [eval, train] order; the reference permutes it to
  // [train, eval], which with eval = train is the transpose of K(train, train)
  const k = await computeKernels(toySource(mlp, theta, { train, eval: train }), { formula: 'asymmetric-signgd', batch: 4 });
  const n = train.length * C;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs(k.kernels.eval_train![i * n + j]! - k.kernels.train_train![i * n + j]!) <= 1e-12 * Math.abs(k.kernels.train_train![i * n + j]!));
  let transposeDiffers = false;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (Math.abs(k.kernels.eval_train![j * n + i]! - k.kernels.train_train![i * n + j]!) > 1e-9) transposeDiffers = true;
  assert.ok(transposeDiffers);
});

test('§6.4 linear model: K = (G + 𝟙𝟙ᵀ) ⊗ I_C, and 2(G + 𝟙𝟙ᵀ) with --binary', async () => {
  const lin = linearModel(D, 2);
  const th = vec(lin.params);
  const N = train.length;
  const G = (i: number, j: number) => train[i]!.reduce((s, v, k) => s + v * train[j]![k]!, 0);
  const k = await computeKernels(toySource(lin, th, { train }), { formula: 'sgd' });
  const n = N * 2;
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      for (let c = 0; c < 2; c++) {
        for (let d = 0; d < 2; d++) {
          const want = c === d ? G(i, j) + 1 : 0;
          assert.ok(Math.abs(k.kernels.train_train![(i * 2 + c) * n + j * 2 + d]! - want) < 1e-12 * (1 + Math.abs(want)));
        }
      }
    }
  }
  const b = await computeKernels(binarySource(toySource(lin, th, { train })), { formula: 'sgd' });
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) assert.ok(Math.abs(b.kernels.train_train![i * N + j]! - 2 * (G(i, j) + 1)) < 1e-12 * (1 + Math.abs(G(i, j))));
  // binary f₀ = f₁ − f₀
  train.forEach((x, i) => {
    const f = lin.forward(th, x);
    assert.equal(b.f0.train![i], f[1]! - f[0]!);
  });
});

test('§6.5 binary reduction for any model: K_bin = K₁₁ − K₁₀ − K₀₁ + K₀₀', async () => {
  const m2 = mlpModel(D, H, 2);
  const th = vec(m2.params, 0.7);
  const full = await computeKernels(toySource(m2, th, { train, eval: evalSet }), { formula: 'sgd' });
  const bin = await computeKernels(binarySource(toySource(m2, th, { train, eval: evalSet }, [10, m2.params - 10])), { formula: 'sgd', batch: 5 });
  const N = train.length;
  const M = evalSet.length;
  const at = (K: Float64Array, cols: number, i: number, c: number, j: number, d: number) => K[(i * 2 + c) * cols * 2 + j * 2 + d]!;
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < M; j++) {
      const K = full.kernels.train_eval!;
      const want = at(K, M, i, 1, j, 1) - at(K, M, i, 1, j, 0) - at(K, M, i, 0, j, 1) + at(K, M, i, 0, j, 0);
      assert.ok(Math.abs(bin.kernels.train_eval![i * M + j]! - want) < 1e-12 * (1 + Math.abs(want)));
    }
  }
  assert.throws(() => binarySource(toySource(mlp, theta, { train })), /two classes/);
});

test('§6.6 the onnxruntime float32 product agrees with float64, and a resumed computation equals an uninterrupted one', async () => {
  const src = toySource(mlp, theta, { train, eval: evalSet }, [30, mlp.params - 30]);
  const exact = await computeKernels(src, { formula: 'sgd' });
  const ort = await computeKernels(src, { formula: 'sgd', gemm: new OrtGemm(1, 64) });
  assert.ok(maxRelDiff(ort.kernels.train_eval!, exact.kernels.train_eval!) < 1e-5);
  const signs = await computeKernels(src, { formula: 'signgd', gemm: new OrtGemm(1, 64) });
  const signsExact = await computeKernels(src, { formula: 'signgd' });
  assert.deepEqual(signs.kernels.train_train, signsExact.kernels.train_train);
  // stop after the first block, keep a copy of the state, resume from it
  let saved: KernelState | null = null;
  await assert.rejects(
    computeKernels(src, {
      formula: 'asymmetric-signgd',
      onBlockDone: (s) => {
        saved = { nextBlock: s.nextBlock, tensors: Object.fromEntries(Object.entries(s.tensors).map(([k, v]) => [k, Float64Array.from(v)])) };
        throw new Error('killed');
      },
    }),
    /killed/,
  );
  const resumed = await computeKernels(src, { formula: 'asymmetric-signgd', state: saved! });
  const whole = await computeKernels(src, { formula: 'asymmetric-signgd' });
  assert.deepEqual(resumed.kernels, whole.kernels);
  assert.deepEqual(resumed.f0, whole.f0);
});

test('JL-projected kernels approach the exact kernel (error ~ 1/√d), the same for any parameter blocking', async () => {
  const lin = linearModel(200, 2);
  const th = vec(lin.params);
  const xs = Array.from({ length: 5 }, () => vec(200));
  const src = toySource(lin, th, { train: xs, eval: xs.slice(0, 2) }, [100, lin.params - 100]);
  const exact = await computeKernels(src, { formula: 'sgd' });
  const errs: number[] = [];
  for (const d of [64, 4096]) {
    const projector = new RademacherProjection({ seed: 3, inDim: lin.params, outDim: d, backend: 'ref' });
    const k = await computeKernels(src, { formula: 'sgd', projector });
    errs.push(frob(k.kernels.train_train!, exact.kernels.train_train!));
    if (d === 64) {
      const other = await computeKernels(toySource(lin, th, { train: xs, eval: xs.slice(0, 2) }, [lin.params]), { formula: 'sgd', projector, batch: 2 });
      assert.ok(maxRelDiff(other.kernels.train_eval!, k.kernels.train_eval!) < 1e-12);
    }
  }
  // 64× more dimensions: 8× less error in expectation; allow a wide margin for one draw
  assert.ok(errs[1]! < errs[0]! / 3, `projection errors ${errs.join(', ')}`);
  assert.ok(errs[1]! < 0.1, `relative error at d = 4096: ${errs[1]}`);
});

function frob(a: Float64Array, b: Float64Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i]! - b[i]!) ** 2;
    n += b[i]! ** 2;
  }
  return Math.sqrt(d / n);
}

test('§6.7 the MLP Jacobian matches central finite differences', () => {
  const x = train[0]!;
  const J = mlp.jacobian(theta, x);
  const h = 1e-6;
  for (let k = 0; k < mlp.params; k++) {
    const tp = Float64Array.from(theta);
    const tm = Float64Array.from(theta);
    tp[k] = tp[k]! + h;
    tm[k] = tm[k]! - h;
    const fp = mlp.forward(tp, x);
    const fm = mlp.forward(tm, x);
    for (let c = 0; c < C; c++) assert.ok(Math.abs((fp[c]! - fm[c]!) / (2 * h) - J[c * mlp.params + k]!) < 1e-8, `param ${k} class ${c}`);
  }
});

test('§6.8 one-step identities on a linear model: SGD gives −ηχ·K(ξ, x), SignGD −η·sign(χ)·⟨φ(ξ), sign φ(x)⟩', async () => {
  const lin = linearModel(D, 1);
  const th = vec(lin.params);
  const x = train[0]!;
  const xis = evalSet;
  const chi = -0.8;
  const eta = 0.3;
  const sgdK = await computeKernels(toySource(lin, th, { train: [x], eval: xis }), { formula: 'sgd' });
  const asymK = await computeKernels(toySource(lin, th, { train: [x], eval: xis }), { formula: 'asymmetric-signgd' });
  const g = lin.jacobian(th, x);
  const sgdTheta = th.map((v, k) => v - eta * chi * g[k]!);
  const signTheta = th.map((v, k) => v - eta * sgn(chi * g[k]!));
  xis.forEach((xi, j) => {
    const f0 = lin.forward(th, xi)[0]!;
    const dSgd = lin.forward(sgdTheta, xi)[0]! - f0;
    const dSign = lin.forward(signTheta, xi)[0]! - f0;
    assert.ok(Math.abs(dSgd - -eta * chi * sgdK.kernels.train_eval![j]!) < 1e-12 * (1 + Math.abs(dSgd)));
    assert.ok(Math.abs(dSign - -eta * sgn(chi) * asymK.kernels.train_eval![j]!) < 1e-12 * (1 + Math.abs(dSign)));
  });
});

test('§6.9 linearization: exact for a linear model, error O(‖Δθ‖²) for an MLP', () => {
  const lin = linearModel(D, C);
  const th = vec(lin.params);
  const dir = vec(lin.params);
  const x = evalSet[0]!;
  const lin1 = (m: ToyModel, t: Float64Array, dth: Float64Array): number => {
    const J = m.jacobian(t, x);
    const f0 = m.forward(t, x);
    const f1 = m.forward(t.map((v, k) => v + dth[k]!), x);
    let e = 0;
    for (let c = 0; c < m.classes; c++) {
      let jd = 0;
      for (let k = 0; k < m.params; k++) jd += J[c * m.params + k]! * dth[k]!;
      e = Math.max(e, Math.abs(f1[c]! - f0[c]! - jd));
    }
    return e;
  };
  assert.ok(lin1(lin, th, dir) < 1e-12);
  const md = vec(mlp.params);
  const e1 = lin1(mlp, theta, md.map((v) => v * 1e-2));
  const e2 = lin1(mlp, theta, md.map((v) => v * 5e-3));
  assert.ok(Math.abs(e1 / e2 - 4) < 0.2, `halving Δθ divides the error by ${e1 / e2}, not 4`);
});
