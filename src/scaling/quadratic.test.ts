// Closed forms on the noisy quadratic (spec §6.5), each checked against an independent derivation:
// the heavy-ball formula against the Lyapunov solver, the variance recursion against its sum, the
// spec's relative errors against the rules, the (x, m) SDE Lyapunov solution against a generic solve.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AdamConfig, SgdConfig, SgdmConfig } from './config.ts';
import {
  adaptiveDiscreteStationaryVarianceApprox,
  adaptiveSdeScales,
  adaptiveSdeStationaryVariance,
  discreteLyapunov2,
  discreteStationaryVariance,
  heavyBallStationaryVariance,
  sdeStationaryVariance,
  sgdMoments,
  sgdStationaryVariance,
  sgdmStationaryVariance,
} from './quadratic.ts';
import { scaleBatch, sgdmToForm } from './rules.ts';
import { svagConfig } from './svag.ts';

const close = (a: number, b: number, rel = 1e-12, what = ''): void => {
  assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-300), `${what}: ${a} vs ${b}`);
};
const q = { curvature: 1, noise: 1, x0: 0 };

test('spec §6.5: LSR relative error κηh/(2 − κηh) = 0.053, 0.111, 0.25, 0.667 for κ = 1, 2, 4, 8 (η = 0.1, B = 8)', () => {
  const sgd: SgdConfig = { optimizer: 'sgd', batch: 8, lr: 0.1 };
  const sde = sdeStationaryVariance(sgd, q);
  close(sde, 0.1 / 16, 1e-12, 'SDE ηs²/(2hB)');
  const expected = [0.053, 0.111, 0.25, 0.667];
  [1, 2, 4, 8].forEach((k, i) => {
    const cfg = scaleBatch(sgd, k).config;
    close(sdeStationaryVariance(cfg, q), sde, 1e-12, 'LSR keeps the SDE');
    const rel = discreteStationaryVariance(cfg, q) / sde - 1;
    assert.equal(Number(rel.toFixed(3)), expected[i], `κ=${k}`);
    close(rel, (k * 0.1) / (2 - k * 0.1), 1e-12);
  });
  close(discreteStationaryVariance(scaleBatch(sgd, 4).config, q), 0.0078125, 1e-12, 'κ = 4 exact 0.00781');
});

test('spec §6.5: SVAG relative error ηh/(2ℓ − ηh) = 0.026, 0.0127, 0.0031 for ℓ = 2, 4, 16 (O(1/ℓ))', () => {
  const sgd: SgdConfig = { optimizer: 'sgd', batch: 8, lr: 0.1 };
  const sde = sdeStationaryVariance(sgd, q);
  const expected: [number, number, number][] = [
    [2, 0.026, 3],
    [4, 0.0127, 4],
    [16, 0.0031, 4],
  ];
  for (const [l, e, digits] of expected) {
    const rel = discreteStationaryVariance(svagConfig(sgd, l).config, q) / sde - 1;
    assert.equal(Number(rel.toFixed(digits)), e, `ℓ=${l}`);
    close(rel, 0.1 / (2 * l - 0.1), 1e-12);
  }
  close(discreteStationaryVariance(svagConfig(sgd, 16).config, q), 0.00627, 1e-3, 'ℓ = 16 exact 0.00627');
});

test('heavy-ball closed form equals the exact Lyapunov solution; β = 0 reduces to SGD; EMA form gives the same', () => {
  for (const [g, b] of [
    [0.05, 0.9],
    [0.3, 0.5],
    [0.01, 0.99],
  ] as const) {
    const cfg: SgdmConfig = { optimizer: 'sgdm', batch: 8, lr: g, momentum: b, form: 'pytorch' };
    const nv = 1 / 8;
    close(sgdmStationaryVariance(cfg, q), heavyBallStationaryVariance(g, b, 1, nv), 1e-10, `γ=${g} β=${b}`);
    close(sgdmStationaryVariance(sgdmToForm(cfg, 'ema'), q), sgdmStationaryVariance(cfg, q), 1e-10, 'EMA form');
  }
  close(sgdmStationaryVariance({ optimizer: 'sgdm', batch: 4, lr: 0.2, momentum: 0, form: 'pytorch' }, q), sgdStationaryVariance(0.2, 1, 0.25), 1e-12);
  // P3: SGDM(γ, β) → SGD(η = γ/(1−β)) as η → 0: the stationary variances agree to O(η)
  const ratio = (eta: number): number =>
    sgdmStationaryVariance({ optimizer: 'sgdm', batch: 8, lr: eta * 0.1, momentum: 0.9, form: 'pytorch' }, q) / sgdStationaryVariance(eta, 1, 1 / 8);
  assert.ok(Math.abs(ratio(0.01) - 1) < Math.abs(ratio(0.1) - 1) / 5, `${ratio(0.01)} ${ratio(0.1)}`);
});

test('SGD moments after k steps equal the summed variance recursion', () => {
  const lr = 0.3;
  const nv = 0.5;
  let V = 0;
  for (let k = 1; k <= 40; k++) {
    V = (1 - lr) ** 2 * V + lr * lr * nv;
    const m = sgdMoments(lr, 1, nv, 2, k);
    close(m.variance, V, 1e-12, `k=${k}`);
    close(m.mean, 2 * 0.7 ** k, 1e-12);
  }
});

test('Adam SDE stationary variance with decoupled decay equals a generic solve of the (x, m) Lyapunov equation', () => {
  const cfg: AdamConfig = { optimizer: 'adamw', batch: 4, lr: 0.02, beta1: 0.9, beta2: 0.999, eps: 1e-3, epsPlacement: 'outsideSqrt', weightDecay: 1 };
  const { sigma0, eps0 } = adaptiveSdeScales(cfg);
  const P = sigma0 * 1 + eps0;
  const tau = 0.02 * 0.02;
  const r = (0.02 * 1) / tau;
  const c1 = 0.1 / tau;
  // A = [[−r, −1/P], [c1 h, −c1]], Q = diag(0, (σ₀c₁s)²); unknowns (S11, S12, S22) of AS + SAᵀ + Q = 0
  const A = [
    [-r, -1 / P],
    [c1, -c1],
  ];
  const M = [
    [2 * A[0]![0]!, 2 * A[0]![1]!, 0],
    [A[1]![0]!, A[0]![0]! + A[1]![1]!, A[0]![1]!],
    [0, 2 * A[1]![0]!, 2 * A[1]![1]!],
  ];
  const y = [0, 0, -((sigma0 * c1) ** 2)];
  const sol = gauss(M, y);
  close(adaptiveSdeStationaryVariance(cfg, q), sol[0]!, 1e-9);
  // without decay, momentum drops out: σ₀²s²/(2hP)
  close(adaptiveSdeStationaryVariance({ ...cfg, weightDecay: 0 }, q), (sigma0 * sigma0) / (2 * P), 1e-12);
});

test('discrete RMSprop/Adam approximation tends to the SDE value as η → 0 (relative gap shrinks ∝ η)', () => {
  const gap = (lr: number): number => {
    const cfg: AdamConfig = { optimizer: 'adam', batch: 4, lr, beta1: 0.9, beta2: 0.999, eps: 1e-3, epsPlacement: 'outsideSqrt' };
    return Math.abs(adaptiveDiscreteStationaryVarianceApprox(cfg, q) / adaptiveSdeStationaryVariance(cfg, q) - 1);
  };
  assert.ok(gap(0.002) < gap(0.02) / 5, `${gap(0.002)} vs ${gap(0.02)}`);
});

test('discrete Lyapunov solver: S = ASAᵀ + Q holds for a non-symmetric A', () => {
  const A = [0.5, -0.3, 0.2, 0.7] as const;
  const Q = [1, 0.2, 0.5] as const;
  const [p, r, w] = discreteLyapunov2(A, Q);
  const S = [
    [p, r],
    [r, w],
  ];
  const M = [
    [A[0], A[1]],
    [A[2], A[3]],
  ];
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 2; j++) {
      let v = 0;
      for (let k = 0; k < 2; k++) for (let l = 0; l < 2; l++) v += M[i]![k]! * S[k]![l]! * M[j]![l]!;
      const qij = i === 0 && j === 0 ? Q[0] : i === 1 && j === 1 ? Q[2] : Q[1];
      close(S[i]![j]!, v + qij, 1e-12, `S[${i}${j}]`);
    }
  }
});

function gauss(M: number[][], y: number[]): number[] {
  const n = y.length;
  const a = M.map((row, i) => [...row, y[i]!]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r]![c]!) > Math.abs(a[piv]![c]!)) piv = r;
    [a[c], a[piv]] = [a[piv]!, a[c]!];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = a[r]![c]! / a[c]![c]!;
      for (let k = c; k <= n; k++) a[r]![k]! -= f * a[c]![k]!;
    }
  }
  return a.map((row, i) => row[n]! / row[i]!);
}

test('SGDM under SVAG with β kept (spec §2.6, inferred from P3) tends to the SGD SDE with η_eff: gap ∝ 1/a', () => {
  const sgdm: SgdmConfig = { optimizer: 'sgdm', batch: 8, lr: 0.05, momentum: 0.9, form: 'pytorch' };
  const sde = sdeStationaryVariance(sgdm, q);
  close(sde, (0.5 * (1 / 8)) / 2, 1e-12, 'SGD SDE with η_eff = 0.5');
  const gap = (a: number): number => discreteStationaryVariance(svagConfig(sgdm, a).config, q) / sde - 1;
  // heavy ball: gap = γh/(2(1+β)a − γh) exactly
  for (const a of [1, 4, 16, 64]) close(gap(a), 0.05 / (2 * 1.9 * a - 0.05), 1e-9, `a=${a}`);
});
