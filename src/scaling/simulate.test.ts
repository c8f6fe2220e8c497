// Simulators against closed forms (spec §6.5, §6.6). Monte Carlo tolerances: the sample variance of R
// Gaussian replicas has standard error V·√(2/(R−1)). This file makes ~25 such checks, so each uses 4
// standard errors (family-wise false-failure rate ≈ 25 × 6e-5 ≈ 0.2%, against ≈ 7% at 3 per check).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AdamConfig, RmspropConfig, SgdConfig, SgdmConfig } from './config.ts';
import { discreteStationaryVariance, sdeStationaryVariance, sgdMoments, ouMoments } from './quadratic.ts';
import { scaleBatch, sgdmToForm } from './rules.ts';
import { simulateOptimizer, simulateSde } from './simulate.ts';
import { svagConfig } from './svag.ts';

const q = { curvature: 1, noise: 1, x0: 0 };
const se = (V: number, R: number): number => V * Math.sqrt(2 / (R - 1));
const within = (sim: number, exact: number, R: number, what: string, k = 4): void => {
  assert.ok(Math.abs(sim - exact) < k * se(exact, R), `${what}: simulated ${sim} vs closed form ${exact} (se ${se(exact, R)})`);
};

test('SGD under the LSR (η = 0.1, B = 8, h = s = 1): stationary variance matches ηs²/(B(2h − ηh²)) for κ = 1, 2, 4, 8', () => {
  const R = 20000;
  const sgd: SgdConfig = { optimizer: 'sgd', batch: 8, lr: 0.1 };
  [1, 2, 4, 8].forEach((k, i) => {
    const cfg = scaleBatch(sgd, k).config;
    const tr = simulateOptimizer(cfg, q, { replicas: R, seed: 1, stream: i, horizon: 8, points: 2 });
    within(tr.variance.at(-1)!, discreteStationaryVariance(cfg, q), R, `κ=${k}`);
  });
});

test('SVAG approaches the SDE as ℓ grows: at ηh = 1 the gap to the SDE is 1/(2ℓ − 1) (simulated, ℓ = 1, 2, 4, 8)', () => {
  const R = 40000;
  const sgd: SgdConfig = { optimizer: 'sgd', batch: 4, lr: 1 };
  const sde = sdeStationaryVariance(sgd, q);
  let prev = Infinity;
  [1, 2, 4, 8].forEach((l, i) => {
    const cfg = svagConfig(sgd, l).config;
    const v = simulateOptimizer(cfg, q, { replicas: R, seed: 2, stream: i, horizon: 8, points: 2 }).variance.at(-1)!;
    within(v, discreteStationaryVariance(cfg, q), R, `ℓ=${l}`);
    const gap = v / sde - 1;
    assert.ok(Math.abs(gap - 1 / (2 * l - 1)) < 4 * Math.SQRT2 * (1 + gap) / Math.sqrt(R - 1), `ℓ=${l}: gap ${gap} vs ${1 / (2 * l - 1)}`);
    assert.ok(gap < prev, 'monotone approach');
    prev = gap;
  });
  // the spec's ℓ = 16 number at η = 0.1: 0.00627 (exact) against the SDE's 0.00625
  const l16 = svagConfig({ optimizer: 'sgd', batch: 8, lr: 0.1 }, 16).config;
  within(simulateOptimizer(l16, q, { replicas: 20000, seed: 2, stream: 9, horizon: 5, points: 2 }).variance.at(-1)!, 0.006269592476489028, 20000, 'ℓ=16');
});

test('Euler–Maruyama for the SGD SDE: moments at T match the exact EM recursion, which tends to the exact OU law', () => {
  const R = 20000;
  const sgd: SgdConfig = { optimizer: 'sgd', batch: 8, lr: 0.1 };
  const x0 = 1;
  const tr = simulateSde(sgd, { ...q, x0 }, { replicas: R, seed: 3, horizon: 1, points: 2, substeps: 8 });
  const dt = 0.1 / 8;
  const n = Math.round(1 / dt);
  // EM on dX = −hX dt + √(ηs²/B) dW is SGD with lr dt and noise variance (η s²/B)/dt
  const em = sgdMoments(dt, 1, 0.1 / 8 / dt, x0, n);
  within(tr.variance.at(-1)!, em.variance, R, 'EM variance');
  const sdMean = Math.sqrt(em.variance / R);
  assert.ok(Math.abs(tr.mean.at(-1)! - em.mean) < 4 * sdMean, `EM mean ${tr.mean.at(-1)} vs ${em.mean}`);
  const ou = ouMoments(1, 0.1 / 8, x0, 1);
  assert.ok(Math.abs(em.variance / ou.variance - 1) < dt, 'EM bias is O(dt)');
  assert.ok(Math.abs(em.mean / ou.mean - 1) < dt, 'EM mean bias is O(dt)');
});

test('SGDM: simulated stationary variance matches the Lyapunov closed form (plain, Nesterov, dampening); PyTorch and EMA forms give identical runs', () => {
  const R = 20000;
  const base: SgdmConfig = { optimizer: 'sgdm', batch: 8, lr: 0.05, momentum: 0.9, form: 'pytorch' };
  const variants: SgdmConfig[] = [base, { ...base, nesterov: true }, { ...base, dampening: 0.5 }];
  variants.forEach((cfg, i) => {
    const tr = simulateOptimizer(cfg, q, { replicas: R, seed: 4, stream: i, horizon: 20, points: 2 });
    within(tr.variance.at(-1)!, discreteStationaryVariance(cfg, q), R, `variant ${i}`);
  });
  const a = simulateOptimizer(base, { ...q, x0: 1 }, { replicas: 256, seed: 4, stream: 7, horizon: 3, points: 7 });
  const b = simulateOptimizer(sgdmToForm(base, 'ema'), { ...q, x0: 1 }, { replicas: 256, seed: 4, stream: 7, horizon: 3, points: 7 });
  a.variance.forEach((v, i) => assert.ok(Math.abs(v - b.variance[i]!) <= 1e-12 * Math.max(v, 1e-300) + 1e-300, `record ${i}`));
  a.mean.forEach((m, i) => assert.ok(Math.abs(m - b.mean[i]!) <= 1e-12, `mean ${i}`));
});

test('spec §6.6 RMSprop toy (η = 0.02, β = 0.999, ε = 1e-3, B = 4, T = 2): SRSR keeps Var(x_T) within 15% at κ = 4, the naive rule is off by > 100% at κ = 16', () => {
  const R = 3000;
  const rms: RmspropConfig = { optimizer: 'rmsprop', batch: 4, lr: 0.02, beta2: 0.999, eps: 1e-3, epsPlacement: 'outsideSqrt' };
  const run = (cfg: RmspropConfig, horizon: number, stream: number): number =>
    simulateOptimizer(cfg, q, { replicas: R, seed: 5, stream, horizon, points: 2 }).variance.at(-1)!;
  const v1 = run(rms, 2, 0);
  // the constant-preconditioner closed form (docs/scaling.md) for the baseline: 0.005040
  within(v1, discreteStationaryVariance(rms, q), R, 'κ=1 vs closed form');
  const v4 = run(scaleBatch(rms, 4).config as RmspropConfig, 2, 1);
  assert.ok(Math.abs(v4 / v1 - 1) < 0.15, `SRSR κ=4: ${v4} vs ${v1}`);
  // naive: lr × κ, β and ε fixed, same number of examples (K/κ steps)
  const naive16: RmspropConfig = { ...rms, batch: 64, lr: 0.32 };
  const vn = run(naive16, 2 * 16, 2);
  assert.ok(vn / v1 - 1 > 1, `naive κ=16: ${vn} vs ${v1}`);
});

test('Adam: stationary variance matches the closed-form approximation; SRSR (κ = 4) and SVAG (a = 4) keep it; the SDE by Euler–Maruyama matches σ₀²s²/(2hP)', () => {
  const R = 3000;
  const adam: AdamConfig = { optimizer: 'adam', batch: 4, lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-3, epsPlacement: 'outsideSqrt' };
  const opts = { replicas: R, seed: 6, horizon: 0.3, points: 2 };
  const v1 = simulateOptimizer(adam, q, { ...opts, stream: 0 }).variance.at(-1)!;
  within(v1, discreteStationaryVariance(adam, q), R, 'Adam baseline');
  const c4 = scaleBatch(adam, 4).config;
  within(simulateOptimizer(c4, q, { ...opts, stream: 1 }).variance.at(-1)!, discreteStationaryVariance(c4, q), R, 'SRSR κ=4');
  const s4 = svagConfig(adam, 4).config;
  within(simulateOptimizer(s4, q, { ...opts, stream: 2 }).variance.at(-1)!, discreteStationaryVariance(s4, q), R, 'SVAG a=4');
  // all three closed forms within 2% of the SDE's (the rules keep the SDE)
  for (const c of [adam, c4, s4]) assert.ok(Math.abs(discreteStationaryVariance(c, q) / sdeStationaryVariance(adam, q) - 1) < 0.02);
  const em = simulateSde(adam, q, { ...opts, stream: 3, substeps: 2 }).variance.at(-1)!;
  // EM with dt = τ/2 has its own O(dt·h/P) ≈ 0.5% bias: allow it on top of 3 standard errors
  assert.ok(Math.abs(em - sdeStationaryVariance(adam, q)) < 4 * se(em, R) + 0.01 * em, `Adam SDE EM ${em} vs ${sdeStationaryVariance(adam, q)}`);
  const rms: RmspropConfig = { optimizer: 'rmsprop', batch: 4, lr: 0.02, beta2: 0.999, eps: 1e-3, epsPlacement: 'outsideSqrt' };
  const emr = simulateSde(rms, q, { ...opts, stream: 4, substeps: 2, warmSecondMoment: true }).variance.at(-1)!;
  assert.ok(Math.abs(emr - sdeStationaryVariance(rms, q)) < 4 * se(emr, R) + 0.01 * emr, `RMSprop SDE EM ${emr} vs ${sdeStationaryVariance(rms, q)}`);
});

test('AdamW (decoupled ηλ): λ → √κλ keeps the stationary variance, keeping λ fixed does not (spec §2.4 table, checked by simulation)', () => {
  const R = 3000;
  const adamw: AdamConfig = { optimizer: 'adamw', batch: 4, lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-3, epsPlacement: 'outsideSqrt', weightDecay: 1 };
  const rule = scaleBatch(adamw, 4).config;
  const fixed = { ...rule, weightDecay: 1 };
  assert.ok(Math.abs(rule.weightDecay! - 2) < 1e-12);
  // the SDE (closed form) is unchanged by the rule and changed by keeping λ: 0.00277 vs 0.00363
  assert.ok(Math.abs(sdeStationaryVariance(rule, q) / sdeStationaryVariance(adamw, q) - 1) < 1e-12);
  assert.ok(sdeStationaryVariance(fixed, q) / sdeStationaryVariance(adamw, q) - 1 > 0.25);
  const opts = { replicas: R, seed: 8, horizon: 0.3, points: 2 };
  const v = [adamw, rule, fixed].map((c, i) => simulateOptimizer(c, q, { ...opts, stream: i }).variance.at(-1)!);
  assert.ok(Math.abs(v[1]! / v[0]! - 1) < 0.1, `√κ rule: ${v[1]} vs ${v[0]}`);
  assert.ok(v[2]! / v[0]! - 1 > 0.2, `λ fixed: ${v[2]} vs ${v[0]}`);
});

test('simulations are reproducible from (seed, stream) and change with the stream', () => {
  const cfg: SgdConfig = { optimizer: 'sgd', batch: 8, lr: 0.1 };
  const a = simulateOptimizer(cfg, { ...q, x0: 1 }, { replicas: 100, seed: 9, stream: 1, horizon: 1, points: 5 });
  const b = simulateOptimizer(cfg, { ...q, x0: 1 }, { replicas: 100, seed: 9, stream: 1, horizon: 1, points: 5 });
  const c = simulateOptimizer(cfg, { ...q, x0: 1 }, { replicas: 100, seed: 9, stream: 2, horizon: 1, points: 5 });
  assert.deepEqual(Array.from(a.variance), Array.from(b.variance));
  assert.notDeepEqual(Array.from(a.variance), Array.from(c.variance));
  // 10 steps, 5 records: steps round(j·10/4) = 0, 3, 5, 8, 10 at SDE times k·η
  assert.deepEqual(Array.from(a.step), [0, 3, 5, 8, 10]);
  assert.deepEqual(Array.from(a.time), [0, 3, 5, 8, 10].map((k) => k * 0.1));
});
