// SVAG (spec §2.2, §2.5, §6.1, §6.2): coefficient identities, a = 1 is plain SGD bit for bit, the
// estimator is unbiased with covariance a·Σ (Monte Carlo within 3 standard errors), and the
// hyperparameter translation keeps the SDE invariants.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';
import type { AdamConfig, OptimizerConfig, RmspropConfig, SgdConfig, SgdmConfig } from './config.ts';
import { effectiveLr, scaleBatch, sdeTime } from './rules.ts';
import { simulateOptimizer } from './simulate.ts';
import { amplificationFromPaperEll, effectiveSteps, svagCoefficients, svagCombine, svagConfig, svagDiagnostic, VarianceAmplifiedGradient } from './svag.ts';

const close = (a: number, b: number, rel = 1e-12, what = ''): void => {
  assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-300), `${what}: ${a} vs ${b}`);
};

test('coefficients: a = 1 gives exactly [1, 0]; c1 + c2 = 1, c1² + c2² = a, c1·c2 = (1 − a)/2', () => {
  assert.deepEqual(svagCoefficients(1), [1, 0]);
  for (const a of [1, 1.5, 2, 4, 16, 1000]) {
    const [c1, c2] = svagCoefficients(a);
    close(c1 + c2, 1, 1e-12, 'sum');
    close(c1 * c1 + c2 * c2, a, 1e-12, 'squares');
    close(c1 * c2, (1 - a) / 2, 1e-12, 'product');
  }
  assert.throws(() => svagCoefficients(0.5), LmtuneError);
});

test('a = 1 is plain SGD exactly: combine returns g1 bit for bit, and the simulated SVAG run equals the SGD run', () => {
  const g1 = Float32Array.from([1.5, -2.25, 3e-8, 7]);
  const g2 = Float32Array.from([Number.NaN, Infinity, 1, 2]);
  assert.deepEqual(Array.from(svagCombine(g1, g2, 1)), Array.from(g1));
  const v = new VarianceAmplifiedGradient(1);
  assert.equal(v.minibatchesPerStep, 1);
  const sgd: SgdConfig = { optimizer: 'sgd', batch: 8, lr: 0.1, steps: 50 };
  const s = svagConfig(sgd, 1);
  assert.deepEqual(s.config, sgd);
  const q = { curvature: 1, noise: 1, x0: 1 };
  const a = simulateOptimizer(sgd, q, { replicas: 64, seed: 3, stream: 1 });
  const b = simulateOptimizer(s.config, q, { replicas: 64, seed: 3, stream: 1 });
  assert.deepEqual(Array.from(b.variance), Array.from(a.variance));
  assert.deepEqual(Array.from(b.mean), Array.from(a.mean));
});

test('Monte Carlo (1e5 pairs): SVAG gradient has mean μ and covariance a·Σ within 3 standard errors', () => {
  // Σ = L Lᵀ with a non-diagonal L, so the check covers off-diagonal entries
  const mu = [0.5, -1, 2];
  const L = [
    [1, 0, 0],
    [0.6, 0.8, 0],
    [-0.3, 0.5, 1.2],
  ];
  const Sigma = [0, 1, 2].map((i) => [0, 1, 2].map((j) => L[i]!.reduce((s, _, k) => s + L[i]![k]! * L[j]![k]!, 0)));
  const n = 100_000;
  for (const [a, Arr] of [
    [4, Float64Array],
    [16, Float32Array],
  ] as const) {
    const rng = new Rng(`svag-mc-${a}`);
    const sum = [0, 0, 0];
    const sxx = [
      [0, 0, 0],
      [0, 0, 0],
      [0, 0, 0],
    ];
    const draw = (): Float32Array | Float64Array => {
      const z = [rng.normal(), rng.normal(), rng.normal()];
      return Arr.from([0, 1, 2].map((i) => mu[i]! + L[i]![0]! * z[0]! + L[i]![1]! * z[1]! + L[i]![2]! * z[2]!));
    };
    const gv = new VarianceAmplifiedGradient(a);
    for (let t = 0; t < n; t++) {
      const g = gv.combine(draw(), draw());
      for (let i = 0; i < 3; i++) {
        sum[i]! += g[i]!;
        for (let j = 0; j < 3; j++) sxx[i]![j]! += g[i]! * g[j]!;
      }
    }
    for (let i = 0; i < 3; i++) {
      const mean = sum[i]! / n;
      const se = Math.sqrt((a * Sigma[i]![i]!) / n);
      assert.ok(Math.abs(mean - mu[i]!) < 3 * se, `a=${a} mean[${i}] ${mean} vs ${mu[i]} (se ${se})`);
      for (let j = i; j < 3; j++) {
        const cov = (sxx[i]![j]! - (n * (sum[i]! / n) * (sum[j]! / n))) / (n - 1);
        const target = a * Sigma[i]![j]!;
        // Gaussian sample covariance: Var = (S_ii S_jj + S_ij²)/n
        const seCov = Math.sqrt((a * Sigma[i]![i]! * a * Sigma[j]![j]! + target * target) / n);
        assert.ok(Math.abs(cov - target) < 3 * seCov, `a=${a} cov[${i}${j}] ${cov} vs ${target} (se ${seCov})`);
      }
    }
  }
});

test('hyperparameter translation per optimizer (spec §2.2, §2.5, §2.6)', () => {
  const sgd: SgdConfig = { optimizer: 'sgd', batch: 128, lr: 0.8, steps: 1000, milestones: [500], weightDecay: 5e-4 };
  const s = svagConfig(sgd, 4);
  assert.deepEqual(s.config, { optimizer: 'sgd', batch: 128, lr: 0.2, steps: 4000, milestones: [2000], weightDecay: 5e-4, svagAmplification: 4 });
  assert.equal(s.epochsMultiplier, 8); // P1 multiplies max_epochs by 2ℓ

  const sgdm: SgdmConfig = { optimizer: 'sgdm', batch: 512, lr: 0.2, momentum: 0.9, form: 'ema', steps: 100 };
  const m = svagConfig(sgdm, 8).config as SgdmConfig;
  close(m.lr, 0.025);
  assert.equal(m.momentum, 0.9);
  assert.equal(m.steps, 800);

  const rms: RmspropConfig = { optimizer: 'rmsprop', batch: 4, lr: 0.02, beta2: 0.999, eps: 1e-3, epsPlacement: 'outsideSqrt' };
  const r = svagConfig(rms, 4).config as RmspropConfig;
  close(r.lr, 0.01);
  close(1 - r.beta2, 0.001 / 4, 1e-9);
  close(r.eps, 2e-3);
  close((svagConfig({ ...rms, epsPlacement: 'insideSqrt' }, 4).config as RmspropConfig).eps, 4e-3);

  const adam: AdamConfig = { optimizer: 'adam', batch: 256, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, epsPlacement: 'outsideSqrt', steps: 10 };
  const d = svagConfig(adam, 16).config as AdamConfig;
  close(d.lr, 2.5e-4);
  close(1 - d.beta1, 0.1 / 16, 1e-9);
  close(d.eps, 4e-8);
  assert.equal(d.steps, 160);
});

test('SVAG translation keeps every SDE invariant, composes (a1 then a2 = a1·a2), and is the scaling rule at κ = 1/a', () => {
  const cfgs: OptimizerConfig[] = [
    { optimizer: 'sgd', batch: 64, lr: 0.1, steps: 100, weightDecay: 0.01, wdMode: 'decoupledTimesLr' },
    { optimizer: 'sgdm', batch: 64, lr: 0.01, momentum: 0.9, form: 'pytorch', steps: 100 },
    { optimizer: 'rmsprop', batch: 4, lr: 0.02, beta2: 0.999, eps: 1e-3, epsPlacement: 'insideSqrt', steps: 50 },
    { optimizer: 'adamw', batch: 32, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, epsPlacement: 'outsideSqrt', weightDecay: 0.1, steps: 10 },
  ];
  for (const cfg of cfgs) {
    for (const a of [2, 4, 32]) {
      const s = svagConfig(cfg, a);
      // β is stored as β, so 1 − β' carries a relative rounding error of ~1e-16/(1 − β'): 1e-9 for c1, c2
      for (const inv of s.invariants) close(inv.after, inv.before, /^c\d$/.test(inv.name) ? 1e-9 : 1e-12, `${cfg.optimizer} ${inv.name} a=${a}`);
      const twice = svagConfig(svagConfig(cfg, 2).config, a / 2).config;
      for (const [k, v] of Object.entries(s.config)) if (typeof v === 'number') close((twice as unknown as Record<string, number>)[k]!, v, 1e-12, k);
      const rule = scaleBatch(cfg, 1 / a).config;
      for (const k of ['lr', 'beta1', 'beta2', 'eps', 'momentum', 'steps', 'weightDecay']) {
        const v = (s.config as unknown as Record<string, number | undefined>)[k];
        if (v !== undefined) close(v, (rule as unknown as Record<string, number>)[k]!, 1e-12, `${k} vs rule`);
      }
    }
  }
});

test('SDE time lets runs with different a overlay: step a·k of the SVAG run is at the SDE time of step k', () => {
  const cfg: AdamConfig = { optimizer: 'adam', batch: 32, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, epsPlacement: 'outsideSqrt' };
  const s = svagConfig(cfg, 9).config;
  close(sdeTime(s, 9 * 123), sdeTime(cfg, 123));
  close(effectiveSteps(9 * 123, 9), 123);
  const m: SgdmConfig = { optimizer: 'sgdm', batch: 32, lr: 0.01, momentum: 0.9, form: 'pytorch' };
  close(sdeTime(svagConfig(m, 4).config, 400), 100 * effectiveLr(m));
});

test('paper ℓ → covariance amplification: a = ℓ for SGD (P1), a = ℓ² for Adam/RMSprop (η/ℓ, recalled from P2)', () => {
  assert.equal(amplificationFromPaperEll('sgd', 4), 4);
  assert.equal(amplificationFromPaperEll('adam', 4), 16);
  const adam: AdamConfig = { optimizer: 'adam', batch: 32, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, epsPlacement: 'outsideSqrt' };
  close(svagConfig(adam, amplificationFromPaperEll('adam', 4)).config.lr, 1e-3 / 4);
});

test('SVAG convergence test (spec §3d): curves m_a(t) = e^{−t} + c/a converge; a = 1 in or out of the regime', () => {
  const t = Array.from({ length: 51 }, (_, i) => i / 10);
  const family = (c: number, offset1: number): { amplification: number; time: number[]; metric: number[] }[] =>
    [1, 2, 4, 8].map((a) => ({ amplification: a, time: t, metric: t.map((x) => Math.exp(-x) + c / a + (a === 1 ? offset1 : 0)) }));
  // gaps to the a = 8 run are c·|1/a − 1/8|, divided by the range of e^{−t} on [0, 5] (1 − e^{−5})
  const range = 1 - Math.exp(-5);
  const inRegime = svagDiagnostic(family(0.02, 0));
  close(inRegime.gaps[0]!.gap, (0.02 * (1 - 1 / 8)) / range, 1e-9);
  close(inRegime.gapAmongLargest, (0.02 * (1 / 4 - 1 / 8)) / range, 1e-9);
  assert.equal(inRegime.converged, true);
  assert.equal(inRegime.sdeRegime, true);
  const outOfRegime = svagDiagnostic(family(0.02, 0.3));
  assert.equal(outOfRegime.converged, true);
  assert.equal(outOfRegime.sdeRegime, false);
  const notConverged = svagDiagnostic(family(2, 0));
  assert.equal(notConverged.converged, false);
  assert.throws(() => svagDiagnostic(family(0.02, 0).slice(1)), LmtuneError);
});
