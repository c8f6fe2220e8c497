// Checks the batch-size scaling rules against the spec's hand arithmetic (§2.4 worked example, §6.3
// properties) and the SGDM ↔ SGD equivalences of §2.6 / §6.4.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LmtuneError } from '../util/errors.ts';
import type { AdamConfig, OptimizerConfig, RmspropConfig, SgdConfig, SgdmConfig } from './config.ts';
import {
  effectiveLr,
  scaleBatch,
  scaleToBatch,
  sdeInvariants,
  sdeTime,
  sgdAsSgdm,
  sgdmAsSgd,
  sgdmEffectiveLr,
  sgdmLrFromEffective,
  sgdmToForm,
  type RuleOptions,
} from './rules.ts';

const close = (a: number, b: number, rel = 1e-12, what = ''): void => {
  assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-300), `${what}: ${a} vs ${b}`);
};

/** Compares every numeric field (and arrays of numbers) of two configs. */
function sameConfig(a: OptimizerConfig, b: OptimizerConfig, rel = 1e-12): void {
  const ka = Object.keys(a).sort();
  assert.deepEqual(ka, Object.keys(b).sort());
  for (const k of ka) {
    const va = (a as unknown as Record<string, unknown>)[k];
    const vb = (b as unknown as Record<string, unknown>)[k];
    if (typeof va === 'number') close(va, vb as number, rel, k);
    else if (Array.isArray(va)) (va as number[]).forEach((v, i) => close(v, (vb as number[])[i]!, rel, `${k}[${i}]`));
    else assert.equal(va, vb, k);
  }
}

const adam: AdamConfig = { optimizer: 'adam', batch: 256, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, epsPlacement: 'outsideSqrt' };

const zoo: OptimizerConfig[] = [
  { optimizer: 'sgd', batch: 128, lr: 0.8, steps: 1000, milestones: [500, 750], weightDecay: 5e-4 },
  { optimizer: 'sgd', batch: 64, lr: 0.1, steps: 640, weightDecay: 0.01, wdMode: 'decoupledTimesLr' },
  { optimizer: 'sgd', batch: 64, lr: 0.1, steps: 640, weightDecay: 1e-3, wdMode: 'decoupledAbsolute' },
  { optimizer: 'sgdm', batch: 512, lr: 0.02, momentum: 0.9, form: 'pytorch', steps: 900, weightDecay: 1e-2, wdMode: 'decoupledTimesLr' },
  { optimizer: 'sgdm', batch: 512, lr: 0.2, momentum: 0.9, form: 'ema', steps: 900, warmupSteps: 90 },
  { optimizer: 'sgdm', batch: 32, lr: 0.05, momentum: 0.95, form: 'pytorch', dampening: 0.5, steps: 100 },
  { optimizer: 'rmsprop', batch: 32, lr: 1e-3, beta2: 0.999, eps: 1e-8, epsPlacement: 'outsideSqrt', steps: 4000 },
  { optimizer: 'rmsprop', batch: 32, lr: 1e-3, beta2: 0.999, eps: 1e-8, epsPlacement: 'insideSqrt', steps: 4000, weightDecay: 1e-4 },
  { ...adam, steps: 10000, warmupSteps: 1000 },
  { optimizer: 'adamw', batch: 256, lr: 1e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, epsPlacement: 'outsideSqrt', weightDecay: 0.1, steps: 20000 },
  { optimizer: 'adamw', batch: 256, lr: 1e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, epsPlacement: 'insideSqrt', weightDecay: 1e-4, wdMode: 'decoupledAbsolute', steps: 20000 },
];

test('spec §2.4 worked example: Adam at B=256 → κ=4 gives (2e-3, 0.6, 0.996, 5e-9); power β1 = 0.9^4 = 0.6561', () => {
  const r = scaleToBatch(adam, 1024);
  const c = r.config as AdamConfig;
  close(c.lr, 2e-3);
  close(c.beta1, 0.6);
  close(c.beta2, 0.996);
  close(c.eps, 5e-9);
  assert.equal(c.batch, 1024);
  assert.equal(r.rule, 'square-root');
  // 1 − β1' = 0.4 > 0.1: the regime warning fires
  assert.ok(r.warnings.some((w) => w.includes('beta1')));
  const p = scaleBatch(adam, 4, { betaMap: 'power' }).config as AdamConfig;
  close(p.beta1, 0.6561);
  close(p.beta2, 0.996005996001); // 0.999^4 expanded by hand
});

test('spec §2.4 κ=16: linear β1 = −0.6 is an error; power β1 = 0.9^16 ≈ 0.185, β2 = 0.984 and ε = 2.5e-9 under linear', () => {
  assert.throws(
    () => scaleBatch(adam, 16),
    (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG' && /beta1/.test(e.message) && /-0\.6/.test(e.message) && /power/.test(e.hint ?? ''),
  );
  const p = scaleBatch(adam, 16, { betaMap: 'power' }).config as AdamConfig;
  close(p.lr, 4e-3);
  close(p.beta1, 0.18530201888518416);
  close(p.eps, 2.5e-9);
  const b2only: RmspropConfig = { optimizer: 'rmsprop', batch: 256, lr: 1e-3, beta2: 0.999, eps: 1e-8, epsPlacement: 'outsideSqrt' };
  close((scaleBatch(b2only, 16).config as RmspropConfig).beta2, 0.984);
  // boundary: κ(1−β) = 1 exactly is an error too
  assert.throws(() => scaleBatch({ ...adam, beta1: 0.5 }, 2), LmtuneError);
});

test('scale(κ=1) is the identity for every optimizer and convention', () => {
  for (const cfg of zoo) for (const betaMap of ['linear', 'power'] as const) sameConfig(scaleBatch(cfg, 1, { betaMap }).config, cfg, 1e-15);
});

test('composition: scale(κ1) then scale(κ2) equals scale(κ1κ2), both β maps and both momentum maps', () => {
  const pairs: [number, number][] = [
    [2, 3],
    [4, 0.5],
    [0.25, 8],
    [1.5, 1.5],
  ];
  for (const cfg of zoo) {
    for (const opts of [{ betaMap: 'linear' }, { betaMap: 'power', momentumMap: 'power' }] as RuleOptions[]) {
      for (const [k1, k2] of pairs) {
        const two = scaleBatch(scaleBatch(cfg, k1, opts).config, k2, opts).config;
        sameConfig(two, scaleBatch(cfg, k1 * k2, opts).config, 1e-12);
      }
    }
  }
});

test('round trip: scale(κ) then scale(1/κ) returns the original config', () => {
  for (const cfg of zoo) for (const k of [4, 0.125, 3]) sameConfig(scaleBatch(scaleBatch(cfg, k).config, 1 / k).config, cfg, 1e-12);
});

test('every reported SDE invariant is equal before and after scaling', () => {
  for (const cfg of zoo) {
    for (const opts of [{}, { betaMap: 'power', momentumMap: 'power' }] as RuleOptions[]) {
      for (const k of [0.5, 2, 5]) {
        const r = scaleBatch(cfg, k, opts);
        assert.ok(r.invariants.length >= 2);
        for (const inv of r.invariants) close(inv.after, inv.before, 1e-12, `${cfg.optimizer} ${inv.name} κ=${k}`);
      }
    }
  }
});

test('invariant values match the hand formulas: Adam c2 = (1−β2)/η², σ₀ ∝ η/√B, horizon = Kη²', () => {
  const inv = sdeInvariants({ ...adam, steps: 10000 });
  close(inv.c2!, 0.001 / 1e-6, 1e-9);
  close(inv.sigma0!, 1e-3 / 16);
  close(inv.eps0!, 1e-11);
  close(inv.horizon!, 0.01);
  const pow = sdeInvariants(adam, { betaMap: 'power' });
  close(pow.c1!, -Math.log(0.9) / 1e-6);
  const sgd = sdeInvariants({ optimizer: 'sgd', batch: 128, lr: 0.8, steps: 100 });
  close(sgd.noise!, 0.8 / 128);
  close(sgd.horizon!, 80);
});

test('LSR for SGD (P1): η → κη, steps/milestones → ÷κ, coupled L2 unchanged', () => {
  const cfg: SgdConfig = { optimizer: 'sgd', batch: 128, lr: 0.8, steps: 1000, milestones: [500, 750], warmupSteps: 100, weightDecay: 5e-4 };
  const r = scaleToBatch(cfg, 512);
  assert.equal(r.rule, 'linear');
  assert.deepEqual(r.config, { optimizer: 'sgd', batch: 512, lr: 3.2, steps: 250, milestones: [125, 187.5], warmupSteps: 25, weightDecay: 5e-4 });
  assert.ok(r.warnings.some((w) => w.includes('milestones')), 'non-integer milestone 187.5 is flagged');
});

test('weight decay conventions (spec §2.4 table): AdamW ηλ → √κλ, absolute → κλ, coupled L2 unchanged; SGD ηλ unchanged', () => {
  const k = 4;
  const w = (cfg: OptimizerConfig): number => scaleBatch(cfg, k).config.weightDecay!;
  const adamw: AdamConfig = { ...adam, optimizer: 'adamw', weightDecay: 0.1 };
  close(w(adamw), 0.2);
  close(w({ ...adamw, wdMode: 'decoupledAbsolute' }), 0.4);
  close(w({ ...adam, weightDecay: 0.1 }), 0.1);
  const sgd: SgdConfig = { optimizer: 'sgd', batch: 64, lr: 0.1, weightDecay: 0.01 };
  close(w({ ...sgd, wdMode: 'decoupledTimesLr' }), 0.01);
  close(w({ ...sgd, wdMode: 'decoupledAbsolute' }), 0.04);
  close(w(sgd), 0.01);
});

test('ε inside the square root scales as ε/κ, outside as ε/√κ', () => {
  const r: RmspropConfig = { optimizer: 'rmsprop', batch: 32, lr: 1e-3, beta2: 0.999, eps: 1e-8, epsPlacement: 'insideSqrt' };
  close((scaleBatch(r, 4).config as RmspropConfig).eps, 2.5e-9);
  close((scaleBatch({ ...r, epsPlacement: 'outsideSqrt' }, 4).config as RmspropConfig).eps, 5e-9);
});

test('SGDM LSR: β kept by default (γ → κγ); power map β → β^κ with η_eff → κη_eff', () => {
  const cfg: SgdmConfig = { optimizer: 'sgdm', batch: 256, lr: 0.1, momentum: 0.9, form: 'pytorch' };
  const keep = scaleBatch(cfg, 4).config as SgdmConfig;
  close(keep.lr, 0.4);
  assert.equal(keep.momentum, 0.9);
  const pow = scaleBatch(cfg, 4, { momentumMap: 'power' }).config as SgdmConfig;
  close(pow.momentum, 0.6561);
  close(pow.lr, 4 * (1 - 0.6561)); // η_eff' = 4·(0.1/0.1) = 4, γ' = η_eff'(1−β')
  close(effectiveLr(pow), 4);
});

test('SGDM ↔ SGD effective learning rate (P3): η = γ(1−d)/(1−β), exact round trip', () => {
  close(sgdmEffectiveLr(0.1, 0.9), 1);
  close(sgdmEffectiveLr(0.1, 0.9, 0.5), 0.5);
  for (const [g, b, d] of [
    [0.01, 0.99, 0],
    [0.3, 0.5, 0.2],
    [1e-4, 0.999, 0.9],
  ] as const) {
    close(sgdmLrFromEffective(sgdmEffectiveLr(g, b, d), b, d), g, 1e-14);
  }
  const sgdm: SgdmConfig = { optimizer: 'sgdm', batch: 64, lr: 0.02, momentum: 0.9, form: 'pytorch', weightDecay: 0.05, wdMode: 'decoupledTimesLr', steps: 10 };
  const sgd = sgdmAsSgd(sgdm);
  close(sgd.lr, 0.2);
  close(sgd.lr * sgd.weightDecay!, 0.02 * 0.05, 1e-14, 'per-step decoupled decay preserved');
  sameConfig(sgdAsSgdm(sgd, 0.9, 'pytorch'), sgdm, 1e-14);
  close(sdeTime(sgdm, 10), sdeTime(sgd, 10));
});

test('PyTorch and EMA momentum forms give identical iterates when η = γ/(1−β) (deterministic gradients)', () => {
  const pt: SgdmConfig = { optimizer: 'sgdm', batch: 1, lr: 0.03, momentum: 0.8, form: 'pytorch' };
  const ema = sgdmToForm(pt, 'ema');
  close(ema.lr, 0.15);
  sameConfig(sgdmToForm(ema, 'pytorch'), pt, 1e-14);
  // independent loops on f(x) = (x − 3)²·h/2 + a quartic bump, so the gradient is not linear
  const grad = (x: number): number => 1.7 * (x - 3) + 0.1 * x * x * x;
  let xa = 5;
  let xb = 5;
  let b = 0;
  let m = 0;
  for (let k = 0; k < 200; k++) {
    b = pt.momentum * b + grad(xa);
    xa -= pt.lr * b;
    m = ema.momentum * m + (1 - ema.momentum) * grad(xb);
    xb -= ema.lr * m;
    close(xa, xb, 1e-12, `step ${k}`);
  }
});

test('invalid inputs raise LmtuneError naming the flag', () => {
  const bad: [OptimizerConfig, RegExp][] = [
    [{ ...adam, batch: 0 }, /--batch/],
    [{ ...adam, lr: -1 }, /--lr/],
    [{ ...adam, beta2: 1 }, /--beta2/],
    [{ ...adam, eps: -1e-8 }, /--eps/],
    [{ optimizer: 'sgdm', batch: 8, lr: 0.1, momentum: 1.2, form: 'pytorch' }, /--momentum/],
  ];
  for (const [cfg, re] of bad) assert.throws(() => scaleBatch(cfg, 2), (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG' && re.test(e.message));
  assert.throws(() => scaleBatch(adam, 0), LmtuneError);
  assert.throws(() => scaleBatch(adam, Number.NaN), LmtuneError);
  assert.throws(() => scaleToBatch(adam, -4), /--to-batch/);
});

test('steps that do not divide by κ are kept exact and flagged with the rounding', () => {
  const r = scaleBatch({ optimizer: 'sgd', batch: 8, lr: 0.1, steps: 1001 }, 2);
  assert.equal(r.config.steps, 500.5);
  assert.ok(r.warnings.some((w) => /round to (500|501)/.test(w)));
});
