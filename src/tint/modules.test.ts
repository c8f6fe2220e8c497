/**
 * Each TinT module on its own, against the formula it simulates (spec §4 "unit tests"): linear forward,
 * backward and descent exact to 1e-12; descent touches only prefix 0's bias; layer-norm backward error falls
 * ×10 per ×10 in N; ReLU backward exact away from 0; attention backward equals (Aᵀ ⊙ mask)∂o; the forward
 * layer-norm, attention and activation modules; the tanh gate leak.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { activationByName } from './activations.ts';
import { tintLayout, type GateMode, type TintLayout } from './config.ts';
import { buildLayerNormBackward, buildLayerNormDescentBackward, buildLayerNormForward, layerNormBackward, layerNormDescentBackward, layerNormForward } from './layernorm.ts';
import { buildLinearBackward, buildLinearDescent, buildLinearForward, linearBackward, linearDescent, linearForward } from './linear.ts';
import { at, sliceRows, zeros, type Mat } from './matrix.ts';
import { activationBackward, activationForward, buildActivationBackward, buildActivationForward } from './mlp-activation.ts';
import { layerNormPrefix, linearPrefix } from './prefixes.ts';
import { makeContext, type TintContext } from './pieces.ts';
import { attentionBackward, attentionForward, buildAttentionBackward, buildAttentionForward } from './self-attention.ts';
import { smallInner } from './test-helpers.ts';

const inner = smallInner(1).config;
const layout: TintLayout = tintLayout(inner, {});
const { d, P, H, lnMem, attnMem, linMem, actMem } = layout;
const T = 6;
const trainMask = [1, 1, 0, 1, 0, 0];

function ctxFor(gateMode: GateMode = 'hard', restrictPrefixes = true): TintContext {
  return makeContext(layout, { trainMask }, { gateMode, gateScale: 10, lnEps: 1e-5, restrictPrefixes });
}

function gaussian(rows: number, cols: number, rng: Rng, s = 1): Mat {
  const m = zeros(rows, cols);
  for (let i = 0; i < m.data.length; i++) m.data[i] = s * rng.normal();
  return m;
}

/** A TinT matrix: prefix rows = prefix, token rows = random garbage everywhere, then `put` coordinates. */
function tintInput(prefix: Mat, rng: Rng, put: readonly [number, Mat][]): Mat {
  const X = gaussian(P + T, H, rng);
  X.data.set(prefix.data, 0);
  for (const [from, v] of put) for (let t = 0; t < T; t++) X.data.set(v.data.subarray(t * v.cols, (t + 1) * v.cols), (P + t) * H + from);
  return X;
}

/** token rows, coordinates [from, from + w) */
function tokens(X: Mat, from: number, w: number): Mat {
  const out = zeros(T, w);
  for (let t = 0; t < T; t++) out.data.set(X.data.subarray((P + t) * H + from, (P + t) * H + from + w), t * w);
  return out;
}

function assertClose(a: Mat, b: Mat, tol: number, what: string): void {
  assert.equal(a.rows, b.rows);
  assert.equal(a.cols, b.cols);
  for (let i = 0; i < a.data.length; i++) assert.ok(Math.abs(a.data[i]! - b.data[i]!) <= tol, `${what} [${i}]: ${a.data[i]} vs ${b.data[i]}`);
}

/** plain loops: rows of x times Wᵀ plus b */
function affine(x: Mat, W: Mat, b: Float64Array | null): Mat {
  const out = zeros(x.rows, W.rows);
  for (let t = 0; t < x.rows; t++) for (let i = 0; i < W.rows; i++) {
    let s = b ? b[i]! : 0;
    for (let j = 0; j < W.cols; j++) s += at(W, i, j) * at(x, t, j);
    out.data[t * W.rows + i] = s;
  }
  return out;
}

function transposeOf(W: Mat): Mat {
  const out = zeros(W.cols, W.rows);
  for (let i = 0; i < W.rows; i++) for (let j = 0; j < W.cols; j++) out.data[j * W.rows + i] = at(W, i, j);
  return out;
}

function unaffineLayerNorm(x: Mat, eps: number): Mat {
  const out = zeros(x.rows, x.cols);
  for (let t = 0; t < x.rows; t++) {
    let mu = 0;
    for (let c = 0; c < x.cols; c++) mu += at(x, t, c) / x.cols;
    let v = 0;
    for (let c = 0; c < x.cols; c++) v += (at(x, t, c) - mu) ** 2 / x.cols;
    for (let c = 0; c < x.cols; c++) out.data[t * x.cols + c] = (at(x, t, c) - mu) / Math.sqrt(v + eps);
  }
  return out;
}

test('LinearForward: token rows get W x + b and store x; prefix rows unchanged; restrictPrefixes changes nothing', () => {
  const rng = new Rng(100);
  const W = gaussian(d, d, rng);
  const b = Float64Array.from({ length: d }, () => rng.normal());
  const x = gaussian(T, d, rng);
  const prefix = linearPrefix(layout, W, b);
  const X = tintInput(prefix, rng, [[0, x]]);
  const m = buildLinearForward(layout, 10, linMem);
  const Y = linearForward(m, X, ctxFor());
  assertClose(tokens(Y, 0, d), affine(x, W, b), 1e-12, 'Wx+b');
  assertClose(tokens(Y, linMem, d), x, 0, 'memory x');
  assertClose(tokens(Y, d, linMem - d), zeros(T, linMem - d), 0, 'cleared coordinates');
  assertClose(sliceRows(Y, 0, P), prefix, 0, 'prefix rows');
  assertClose(linearForward(m, X, ctxFor('hard', false)), Y, 1e-12, 'unrestricted attention');
});

test('the tanh gate leaks exactly 1 − tanh(10) on both sides', () => {
  const rng = new Rng(101);
  const W = gaussian(d, d, rng);
  const b = Float64Array.from({ length: d }, () => rng.normal());
  const X = tintInput(linearPrefix(layout, W, b), rng, [[0, gaussian(T, d, rng)]]);
  const m = buildLinearForward(layout, 10, null);
  const hard = linearForward(m, X, ctxFor('hard'));
  const soft = linearForward(m, X, ctxFor('tanh'));
  const g = Math.tanh(10);
  for (let i = 0; i < hard.data.length; i++) assert.ok(Math.abs(soft.data[i]! - g * hard.data[i]!) <= 1e-14 * Math.max(1, Math.abs(hard.data[i]!)));
});

test('LinearBackward: token rows get Wᵀ ∂y and keep their memory', () => {
  const rng = new Rng(102);
  const W = gaussian(d, d, rng);
  const dy = gaussian(T, d, rng);
  const X = tintInput(linearPrefix(layout, W, new Float64Array(d)), rng, [[0, dy]]);
  const Y = linearBackward(buildLinearBackward(layout, 10, linMem), X, ctxFor());
  assertClose(tokens(Y, 0, d), affine(dy, transposeOf(W), null), 1e-12, 'Wᵀ∂y');
  assertClose(tokens(Y, linMem, H - linMem), tokens(X, linMem, H - linMem), 0, 'memory');
  assertClose(tokens(Y, d, linMem - d), zeros(T, linMem - d), 0, 'cleared coordinates');
});

test('LinearDescent: W ← W − η Σ_train ∂y xᵀ, and only prefix 0 holds the updated bias', () => {
  const rng = new Rng(103);
  const W = gaussian(d, d, rng);
  const b = Float64Array.from({ length: d }, () => rng.normal());
  const dy = gaussian(T, d, rng);
  const x = gaussian(T, d, rng);
  const lr = 0.3;
  const X = tintInput(linearPrefix(layout, W, b), rng, [[0, dy], [linMem, x]]);
  const Y = linearDescent(buildLinearDescent(layout, 10, linMem, lr, false), X, ctxFor());
  const W2 = zeros(d, d);
  const b2 = b.slice();
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let t = 0; t < T; t++) if (trainMask[t] === 1) s += at(dy, t, i) * at(x, t, j);
      W2.data[i * d + j] = at(W, i, j) - lr * s;
    }
    for (let t = 0; t < T; t++) if (trainMask[t] === 1) b2[i]! -= lr * at(dy, t, i);
  }
  const expected = linearPrefix(layout, W2, b2);
  // the bias is replicated in every prefix row, but only prefix 0's copy is read and updated
  for (let p = 1; p < P; p++) expected.data.set(b, p * H + layout.S * d);
  assertClose(sliceRows(Y, 0, P), expected, 1e-12, 'updated prefixes');
  // the layer-norm descent (bias only) leaves W alone
  const Yb = linearDescent(buildLinearDescent(layout, 10, linMem, lr, true), X, ctxFor());
  const expectedB = linearPrefix(layout, W, b2);
  for (let p = 1; p < P; p++) expectedB.data.set(b, p * H + layout.S * d);
  assertClose(sliceRows(Yb, 0, P), expectedB, 1e-12, 'bias-only update');
});

test('LayerNormForward: γ ⊙ LN(x) + β, memory [x̂ | x]', () => {
  const rng = new Rng(104);
  const ln = { gamma: Float64Array.from({ length: d }, () => 1 + 0.1 * rng.normal()), beta: Float64Array.from({ length: d }, () => rng.normal()) };
  const x = gaussian(T, d, rng, 2);
  const X = tintInput(layerNormPrefix(layout, ln), rng, [[0, x]]);
  const Y = layerNormForward(buildLayerNormForward(layout, 10, lnMem), X, ctxFor());
  const xhat = unaffineLayerNorm(x, 1e-5);
  const expected = zeros(T, d);
  for (let i = 0; i < expected.data.length; i++) expected.data[i] = ln.gamma[i % d]! * xhat.data[i]! + ln.beta[i % d]!;
  assertClose(tokens(Y, 0, d), expected, 1e-12, 'LN output');
  assertClose(tokens(Y, lnMem, d), xhat, 1e-12, 'memory x̂');
  assertClose(tokens(Y, lnMem + d, d), x, 0, 'memory x');
});

test('LayerNormBackward: error against Jᵀ(γ ⊙ ∂y) falls ×10 per ×10 in N', () => {
  const rng = new Rng(105);
  const ln = { gamma: Float64Array.from({ length: d }, () => 1 + 0.1 * rng.normal()), beta: new Float64Array(d) };
  const x = gaussian(T, d, rng, 2);
  const dy = gaussian(T, d, rng);
  const xhat = unaffineLayerNorm(x, 1e-5);
  const X = tintInput(layerNormPrefix(layout, ln), rng, [[0, dy], [lnMem, xhat], [lnMem + d, x]]);
  // exact: ∂x = rstd·(u − mean(u) − x̂·mean(u ⊙ x̂)), u = γ ⊙ ∂y
  const exact = zeros(T, d);
  for (let t = 0; t < T; t++) {
    let mu = 0;
    let v = 0;
    let mux = 0;
    for (let c = 0; c < d; c++) mu += at(x, t, c) / d;
    for (let c = 0; c < d; c++) v += (at(x, t, c) - mu) ** 2 / d;
    const u = Array.from({ length: d }, (_, c) => ln.gamma[c]! * at(dy, t, c));
    const mean = u.reduce((s, a) => s + a, 0) / d;
    for (let c = 0; c < d; c++) mux += (u[c]! * at(xhat, t, c)) / d;
    for (let c = 0; c < d; c++) exact.data[t * d + c] = (u[c]! - mean - at(xhat, t, c) * mux) / Math.sqrt(v + 1e-5);
  }
  const errors = [1e2, 1e3, 1e4].map((N) => {
    const Y = layerNormBackward(buildLayerNormBackward(layout, 10, lnMem, N), X, ctxFor());
    let e = 0;
    const got = tokens(Y, 0, d);
    for (let i = 0; i < got.data.length; i++) e = Math.max(e, Math.abs(got.data[i]! - exact.data[i]!));
    return e;
  });
  for (let i = 1; i < errors.length; i++) {
    const ratio = errors[i - 1]! / errors[i]!;
    assert.ok(ratio > 8 && ratio < 12, `ratio ${ratio} (errors ${errors.join(', ')})`);
  }
  // descent half: β ← β − η Σ_train ∂y, γ untouched
  const Y = layerNormDescentBackward(buildLayerNormDescentBackward(layout, 10, lnMem, 1e3, 0.5), X, ctxFor());
  const beta = ln.beta.map((v, c) => v - 0.5 * trainMask.reduce((s, m, t) => s + m * at(dy, t, c), 0));
  const expected = layerNormPrefix(layout, { gamma: ln.gamma, beta });
  for (let p = 1; p < P; p++) expected.data.set(ln.beta, p * H + layout.S * d);
  assertClose(sliceRows(Y, 0, P), expected, 1e-12, 'LN descent');
});

test('ActivationForward / ActivationBackward (ReLU): exact away from 0, off inside the band |z| < |∂|/N', () => {
  const rng = new Rng(106);
  const relu = activationByName('relu');
  const N = 1000;
  const z = gaussian(T, d, rng);
  for (let i = 0; i < z.data.length; i++) z.data[i] = Math.sign(z.data[i]!) * (0.1 + Math.abs(z.data[i]!));
  const g = gaussian(T, d, rng);
  const fwd = activationForward(buildActivationForward(layout, 10, relu, actMem), tintInput(zeros(P, H), rng, [[0, z]]), ctxFor());
  assertClose(tokens(fwd, 0, d), { rows: T, cols: d, data: z.data.map(relu.f) }, 0, 'relu(z)');
  assertClose(tokens(fwd, actMem, d), z, 0, 'memory z');

  const back = buildActivationBackward(layout, relu, actMem, N);
  const X = tintInput(zeros(P, H), rng, [[0, g], [actMem, z]]);
  const expected = { rows: T, cols: d, data: z.data.map((zi, i) => (zi > 0 ? g.data[i]! : 0)) };
  assertClose(tokens(activationBackward(back, X), 0, d), expected, 1e-10, 'relu backward');
  // inside the band: z = −∂/(2N) with ∂ > 0 gives ∂/2 instead of 0
  const zb = { rows: T, cols: d, data: g.data.map((gi) => -Math.abs(gi) / (2 * N)) };
  const gb = { rows: T, cols: d, data: g.data.map(Math.abs) };
  const Xb = tintInput(zeros(P, H), rng, [[0, gb], [actMem, zb]]);
  assertClose(tokens(activationBackward(back, Xb), 0, d), { rows: T, cols: d, data: gb.data.map((v) => v / 2) }, 1e-10, 'band');
});

/** Softmax attention of the inner model from given q, k (per head, causal), as [T, T] per head. */
function innerProbs(q: Mat, k: Mat): Mat[] {
  const { nHeads } = inner;
  const dh = d / nHeads;
  return Array.from({ length: nHeads }, (_, h) => {
    const A = zeros(T, T);
    for (let i = 0; i < T; i++) {
      const s = Array.from({ length: i + 1 }, (_, j) => {
        let dot = 0;
        for (let e = 0; e < dh; e++) dot += at(q, i, h * dh + e) * at(k, j, h * dh + e);
        return dot / Math.sqrt(dh);
      });
      const mx = Math.max(...s);
      const z = s.reduce((a, v) => a + Math.exp(v - mx), 0);
      s.forEach((v, j) => (A.data[i * T + j] = Math.exp(v - mx) / z));
    }
    return A;
  });
}

test('AttentionForward: causal softmax attention of the inner heads, memory [Qx | Kx | x]', () => {
  const rng = new Rng(107);
  const [Wq, Wk, Wv] = [gaussian(d, d, rng, 0.5), gaussian(d, d, rng, 0.5), gaussian(d, d, rng, 0.5)];
  const [bq, bk, bv] = [0, 1, 2].map(() => Float64Array.from({ length: d }, () => 0.1 * rng.normal()));
  const x = gaussian(T, d, rng);
  const X = tintInput(linearPrefix(layout, Wq!, bq!), rng, [[0, x]]);
  const Y = attentionForward(buildAttentionForward(layout, 10, attnMem), X, linearPrefix(layout, Wk!, bk!), linearPrefix(layout, Wv!, bv!), ctxFor());
  const q = affine(x, Wq!, bq!);
  const k = affine(x, Wk!, bk!);
  const v = affine(x, Wv!, bv!);
  const dh = d / inner.nHeads;
  const expected = zeros(T, d);
  innerProbs(q, k).forEach((A, h) => {
    for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) for (let e = 0; e < dh; e++) expected.data[i * d + h * dh + e]! += at(A, i, j) * at(v, j, h * dh + e);
  });
  assertClose(tokens(Y, 0, d), expected, 1e-12, 'attention output');
  assertClose(tokens(Y, attnMem, d), q, 1e-12, 'memory Qx');
  assertClose(tokens(Y, attnMem + d, d), k, 1e-12, 'memory Kx');
  assertClose(tokens(Y, attnMem + 2 * d, d), x, 0, 'memory x');
});

test('AttentionBackward: ∂v = (Aᵀ ⊙ mask) ∂o with mask j = i or (j > i and j trains)', () => {
  const rng = new Rng(108);
  const q = gaussian(T, d, rng);
  const k = gaussian(T, d, rng);
  const x = gaussian(T, d, rng);
  const dOut = gaussian(T, d, rng);
  const X = tintInput(zeros(P, H), rng, [[0, dOut], [attnMem, q], [attnMem + d, k], [attnMem + 2 * d, x]]);
  const Y = attentionBackward(buildAttentionBackward(layout, 10, attnMem), X, ctxFor());
  const dh = d / inner.nHeads;
  const expected = zeros(T, d);
  innerProbs(q, k).forEach((A, h) => {
    for (let i = 0; i < T; i++) {
      for (let j = i; j < T; j++) {
        if (j > i && trainMask[j] !== 1) continue;
        for (let e = 0; e < dh; e++) expected.data[i * d + h * dh + e]! += at(A, j, i) * at(dOut, j, h * dh + e);
      }
    }
  });
  assertClose(tokens(Y, 0, d), expected, 1e-12, '∂v');
  assertClose(tokens(Y, attnMem, 3 * d), tokens(X, attnMem, 3 * d), 0, 'memory kept');
});
