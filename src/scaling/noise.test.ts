// Noise diagnostics (spec §3a, §3b, §6.7) on synthetic Gaussian gradients with known mean μ and covariance:
// E[Ĝ] = ‖μ‖², E[N̂_B] = tr Σ_B (Monte Carlo within 3 standard errors), exact algebraic identities between
// the estimators, and the κ_max bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fillGaussian } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';
import {
  checkBatchChange,
  coordinateSignalFraction,
  defaultNoiseSamples,
  diagnoseBatchChange,
  equilibriumAverage,
  estimateNoise,
  estimateNoiseAsync,
  estimateNoiseTwoBatch,
  estimateNoiseTwoBatchFromGradients,
  lsrMaxKappa,
  type GradientSource,
} from './noise.ts';

const close = (a: number, b: number, rel = 1e-12, what = ''): void => {
  assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-300), `${what}: ${a} vs ${b}`);
};

/**
 * Minibatch gradients of batch B from per-example gradients μ + diag(sd)·z: the minibatch mean has
 * covariance diag(sd²)/B. Deterministic in (seed, k).
 */
function syntheticSource(mu: Float64Array, sd: Float64Array, batch: number, seed: number): GradientSource {
  const z = new Float64Array(mu.length);
  return (k) => {
    fillGaussian(z, seed, 7, k * mu.length);
    const g = new Float32Array(mu.length);
    for (let i = 0; i < mu.length; i++) g[i] = mu[i]! + (sd[i]! / Math.sqrt(batch)) * z[i]!;
    return g;
  };
}

const D = 40;
const mu = Float64Array.from({ length: D }, (_, i) => (i % 2 === 0 ? 0.3 : -0.1) * (1 + i / D));
const sd = Float64Array.from({ length: D }, (_, i) => 1 + (i % 5) * 0.5);
const G = mu.reduce((s, v) => s + v * v, 0);
const tr1 = sd.reduce((s, v) => s + v * v, 0);

test('unbiasedness: over 300 independent estimates, mean Ĝ = ‖μ‖² and mean N̂_B = tr Σ_B within 3 standard errors', () => {
  const B = 16;
  const M = 300;
  const Gs: number[] = [];
  const Ns: number[] = [];
  for (let r = 0; r < M; r++) {
    const e = estimateNoise(syntheticSource(mu, sd, B, 1000 + r), { batch: B, K: 20 });
    Gs.push(e.gradNormSq);
    Ns.push(e.noiseTrace);
  }
  for (const [xs, target, name] of [
    [Gs, G, 'G'],
    [Ns, tr1 / B, 'N_B'],
  ] as const) {
    const m = xs.reduce((s, v) => s + v, 0) / M;
    const sdv = Math.sqrt(xs.reduce((s, v) => s + (v - m) * (v - m), 0) / (M - 1));
    assert.ok(Math.abs(m - target) < (3 * sdv) / Math.sqrt(M), `${name}: ${m} vs ${target} (se ${sdv / Math.sqrt(M)})`);
  }
});

test('N̂_B equals the sum of per-coordinate unbiased sample variances (two-pass, computed independently)', () => {
  const K = 50;
  const src = syntheticSource(mu, sd, 8, 5);
  const e = estimateNoise(src, { batch: 8, K, perCoordinate: true });
  const gs = Array.from({ length: K }, (_, k) => src(k));
  let trace = 0;
  let meanSq = 0;
  for (let i = 0; i < D; i++) {
    const m = gs.reduce((s, g) => s + g[i]!, 0) / K;
    const v = gs.reduce((s, g) => s + (g[i]! - m) ** 2, 0) / (K - 1);
    trace += v;
    meanSq += m * m;
    close(e.coordinates!.variance[i]!, v, 1e-9, `variance[${i}]`);
  }
  close(e.noiseTrace, trace, 1e-9, 'N_B');
  close(e.gradNormSq, meanSq - trace / K, 1e-9, 'G = ‖ḡ‖² − N_B/K');
  close(e.bNoise, (8 * e.noiseTrace) / e.gradNormSq, 1e-12);
});

test('bNoise = B·N̂_B/Ĝ recovers tr Σ₁/‖μ‖² (within 5% with K = 2000)', () => {
  const e = estimateNoise(syntheticSource(mu, sd, 32, 11), { batch: 32, K: 2000 });
  close(e.bNoise, tr1 / G, 0.05, 'bNoise');
  close(e.noiseTracePerExample, tr1, 0.05, 'tr Σ₁');
});

test('two-batch estimator: exact on exact expectations; from K small batches it equals the K-gradient estimator', () => {
  const Bs = 8;
  const Bb = 128;
  const t = estimateNoiseTwoBatch(G + tr1 / Bs, Bs, G + tr1 / Bb, Bb);
  close(t.gradNormSq, G, 1e-12);
  close(t.noiseTracePerExample, tr1, 1e-12);
  close(t.bSimple, tr1 / G, 1e-12);
  const src = syntheticSource(mu, sd, Bs, 21);
  const a = estimateNoise(src, { batch: Bs, K: 64 });
  const b = estimateNoiseTwoBatchFromGradients(src, 64, Bs);
  close(b.gradNormSq, a.gradNormSq, 1e-9);
  close(b.noiseTracePerExample, a.noiseTracePerExample, 1e-9);
  assert.throws(() => estimateNoiseTwoBatch(1, 8, 1, 8), LmtuneError);
});

test('κ_max = (C² − 1)·N_B/G: N_B/G at C = √2, 3·N_B/G at C = 2; no signal means no bound', () => {
  close(lsrMaxKappa(0.5, 4), 8, 1e-12);
  close(lsrMaxKappa(0.5, 4, 2), 24, 1e-12);
  assert.equal(lsrMaxKappa(-0.1, 4), Infinity);
  assert.throws(() => lsrMaxKappa(1, 1, 1), LmtuneError);
});

test('checkBatchChange: inside and outside the regime, with the reason; per-coordinate signal share', () => {
  // half the coordinates carry a large mean, half none
  const m2 = Float64Array.from({ length: D }, (_, i) => (i < D / 2 ? 3 : 0));
  const s2 = new Float64Array(D).fill(1);
  const e = estimateNoise(syntheticSource(m2, s2, 4, 3), { batch: 4, K: 400, perCoordinate: true });
  // exact: G = 20·9 = 180, N_4 = 40/4 = 10 → κ_max ≈ 0.056
  close(e.gradNormSq, 180, 0.05);
  const inside = checkBatchChange(e, 0.01);
  assert.equal(inside.withinRegime, true);
  const outside = checkBatchChange(e, 2);
  assert.equal(outside.withinRegime, false);
  assert.match(outside.reason, /κ_max/);
  close(outside.batchMax, outside.kappaMax * 4, 1e-12);
  assert.equal(coordinateSignalFraction(e, 1), 0.5);
});

test('async estimator (for model gradients) gives the same numbers; equilibrium averaging; diagnose', async () => {
  const src = syntheticSource(mu, sd, 16, 9);
  const a = estimateNoise(src, { batch: 16, K: 30 });
  const b = await estimateNoiseAsync(async (k) => src(k), { batch: 16, K: 30 });
  assert.deepEqual(b, a);
  const avg = equilibriumAverage([a, { ...a, gradNormSq: a.gradNormSq + 2, noiseTrace: a.noiseTrace - 2 }]);
  close(avg.gradNormSq, a.gradNormSq + 1);
  close(avg.noiseTrace, a.noiseTrace - 1);
  const d = await diagnoseBatchChange(src, { batch: 16, toBatch: 64, K: 30 });
  assert.deepEqual(d.estimate, a);
  assert.equal(d.check.kappa, 4);
  assert.equal(defaultNoiseSamples(16), 800);
  assert.equal(defaultNoiseSamples(128), 200);
});

test('bad inputs: K < 2, mismatched lengths, non-finite entries', () => {
  const src = syntheticSource(mu, sd, 16, 9);
  assert.throws(() => estimateNoise(src, { batch: 16, K: 1 }), LmtuneError);
  assert.throws(() => estimateNoise((k) => new Float32Array(k === 0 ? 3 : 4), { batch: 16, K: 3 }), /length 4, expected 3/);
  assert.throws(() => estimateNoise(() => Float32Array.from([1, Number.NaN]), { batch: 16, K: 3 }), (e: unknown) => e instanceof LmtuneError && e.code === 'NUMERIC');
});
