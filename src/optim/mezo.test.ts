/**
 * MeZO core: the ±ε restore (with the bound we claim), the exact float sequence of a step, the projected
 * gradient against the analytic directional derivative, n-SPSA, unbiasedness, ZO momentum / ZO-Adam
 * against the first-order optimizers, a non-differentiable objective, failure handling, and threads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Adam } from './adam.ts';
import { MezoOptimizer, type MezoOptions } from './mezo.ts';
import { perturb } from './perturb.ts';
import { SgdMomentum } from './sgd-momentum.ts';
import type { NamedParam } from './types.ts';
import { fillZ, spsaSampleSeed, type ZDistribution } from './zstream.ts';
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';

/** Spacing of float32 numbers at |x| (the gap to the next float32 away from zero). */
function ulp32(x: number): number {
  const a = Math.abs(Math.fround(x));
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

function zOf(seed: number, stream: number, n: number, dist: ZDistribution = 'gaussian'): Float64Array {
  const z = new Float64Array(n);
  fillZ(z, seed, stream, 0, dist);
  return z;
}

function gpt2LikeParams(seed: number, sizes = [3000, 700, 700]): NamedParam[] {
  const rng = new Rng(seed);
  const names = ['h.0.attn.c_attn.weight', 'h.0.ln_1.weight', 'h.0.attn.c_attn.bias'];
  return sizes.map((n, k) => {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = k === 0 ? 0.02 * rng.normal() : k === 1 ? 1 + 0.05 * rng.normal() : 1e-3 * rng.normal();
    return { name: names[k % 3]! + (k >= 3 ? `.${k}` : ''), data };
  });
}

const clone = (ps: NamedParam[]): NamedParam[] => ps.map((p) => ({ name: p.name, data: p.data.slice() }));

test('perturb is θ ← fround(θ + s·z) element by element, with z from the stream (param index = stream)', () => {
  const ps = gpt2LikeParams(1);
  const before = clone(ps);
  perturb(ps, 77, 1e-3);
  ps.forEach((p, k) => {
    const z = zOf(77, k, p.data.length);
    p.data.forEach((v, i) => assert.ok(Object.is(v, Math.fround(before[k]!.data[i]! + 1e-3 * z[i]!)), `${p.name}[${i}]`));
  });
});

test('restore after +ε, −2ε, +ε: NOT bit-exact and not always within 1 ulp of θ, but within ½(ulp θ₁ + ulp θ₂ + ulp θ₃)', () => {
  for (const eps of [1e-3, 1e-1]) {
    const ps = gpt2LikeParams(2);
    const orig = clone(ps);
    perturb(ps, 5, eps);
    const t1 = clone(ps);
    perturb(ps, 5, -2 * eps);
    const t2 = clone(ps);
    perturb(ps, 5, eps);
    let exact = 0;
    let within1 = 0;
    let total = 0;
    ps.forEach((p, k) => {
      p.data.forEach((v, i) => {
        const err = Math.abs(v - orig[k]!.data[i]!);
        // each of the three adds rounds once to float32 (half an ulp of its result); the float64
        // intermediate adds at most 2^-20 of that
        const bound = 0.5 * (ulp32(t1[k]!.data[i]!) + ulp32(t2[k]!.data[i]!) + ulp32(v)) * (1 + 2 ** -20);
        assert.ok(err <= bound, `${p.name}[${i}] eps ${eps}: error ${err} > bound ${bound}`);
        if (err === 0) exact++;
        if (err <= ulp32(orig[k]!.data[i]!)) within1++;
        total++;
      });
    });
    // the claims we do NOT make, shown false on GPT-2-like weights (tiny biases with ε|z| ≫ |θ|)
    assert.ok(exact < total, 'unexpectedly bit-exact');
    assert.ok(within1 < total, 'unexpectedly within 1 ulp everywhere');
    assert.ok(exact > 0.1 * total, `only ${exact}/${total} exact`);
  }
  // where |εz| ≪ |θ| (norm weights ≈ 1, ε = 1e-3) every element comes back within one ulp of θ
  const ln = gpt2LikeParams(3)[1]!;
  const o = ln.data.slice();
  for (const s of [1e-3, -2e-3, 1e-3]) perturb([ln], 8, s);
  ln.data.forEach((v, i) => assert.ok(Math.abs(v - o[i]!) <= ulp32(o[i]!), `ln[${i}]`));
});

test('one ZO-SGD step performs exactly the documented float32 sequence (weight decay skips the bias and the norm)', async () => {
  const ps = gpt2LikeParams(4);
  const before = clone(ps);
  const eps = 1e-3;
  const lr = 1e-2;
  const wd = 0.1;
  const opt = new MezoOptimizer(ps, { eps, weightDecay: wd });
  const losses = [2.5, 2.25];
  let calls = 0;
  const res = await opt.step(123, async () => losses[calls++]!, lr);
  assert.equal(calls, 2);
  const g = (2.5 - 2.25) / (2 * eps);
  assert.equal(res.projectedGrad, g);
  assert.equal(res.lossPlus, 2.5);
  assert.equal(res.lossMinus, 2.25);
  assert.deepEqual(res.samples.map((s) => s.seed), [123]);
  ps.forEach((p, k) => {
    const z = zOf(123, k, p.data.length);
    const w = k === 0 ? wd : 0; // c_attn.weight decays; ln_1.weight and the bias do not
    p.data.forEach((v, i) => {
      const a = Math.fround(before[k]!.data[i]! + eps * z[i]!);
      const b = Math.fround(a + -2 * eps * z[i]!);
      const q = Math.fround(b + eps * z[i]!);
      assert.ok(Object.is(v, Math.fround(q - lr * (g * z[i]! + w * q))), `${p.name}[${i}]`);
    });
  });
});

// L(θ) = Σ_i a_i θ_i²/2 + b_i θ_i⁴/4 + c_i θ_i over all tensors: ∇L = aθ + bθ³ + c, and the central
// difference equals ⟨∇L, z⟩ + ε²·Σ b θ z³ exactly (the quartic has no higher odd terms).
function quarticProblem(ps: NamedParam[]): { loss: () => number; grad: (k: number, i: number) => number; coef: (k: number, i: number) => [number, number, number] } {
  const coef = (k: number, i: number): [number, number, number] => [1 + ((i * 7 + k) % 5) * 0.3, 0.5 + ((i + 2 * k) % 3) * 0.25, ((i % 11) - 5) * 0.1];
  const orig = clone(ps);
  const loss = (): number => {
    let s = 0;
    ps.forEach((p, k) => p.data.forEach((t, i) => {
      const [a, b, c] = coef(k, i);
      s += (a * t * t) / 2 + (b * t ** 4) / 4 + c * t;
    }));
    return s;
  };
  const grad = (k: number, i: number): number => {
    const t = orig[k]!.data[i]!;
    const [a, b, c] = coef(k, i);
    return a * t + b * t ** 3 + c;
  };
  return { loss, grad, coef };
}

test('projected gradient = ⟨∇L, z⟩ to finite-difference accuracy (quartic loss; Gaussian and Rademacher; n-SPSA samples)', async () => {
  for (const [dist, eps, n] of [['gaussian', 1e-3, 1], ['rademacher', 1e-3, 1], ['gaussian', 1e-2, 3]] as const) {
    const ps = gpt2LikeParams(6, [400, 50]);
    const orig = clone(ps);
    const prob = quarticProblem(ps);
    const opt = new MezoOptimizer(ps, { eps, distribution: dist, nSpsa: n });
    const res = await opt.step(999, async () => prob.loss(), 0);
    assert.equal(res.samples.length, n);
    for (let j = 0; j < n; j++) {
      const seed = spsaSampleSeed(999, j);
      assert.equal(res.samples[j]!.seed, seed);
      let dir = 0;
      let third = 0;
      let round = 0;
      let gnorm = 0;
      orig.forEach((p, k) => {
        const z = zOf(seed, k, p.data.length, dist);
        p.data.forEach((t, i) => {
          const gi = prob.grad(k, i);
          dir += gi * z[i]!;
          third += prob.coef(k, i)[1] * t * z[i]! ** 3;
          // rounding θ ± εz to float32 moves each loss by up to |∂L/∂θ_i|·½ulp
          round += (Math.abs(gi) * ulp32(Math.abs(t) + eps * Math.abs(z[i]!))) / (2 * eps);
          gnorm += gi * gi;
        });
      });
      const g = res.samples[j]!.projectedGrad;
      const predicted = dir + eps * eps * third;
      assert.ok(Math.abs(g - predicted) <= 1.01 * round + 1e-9, `${dist} n=${n} j=${j}: g ${g} vs ⟨∇L,z⟩ + ε²Σbθz³ = ${predicted} (rounding bound ${round})`);
      assert.ok(Math.abs(g - dir) <= 1e-4 * Math.sqrt(gnorm) * Math.sqrt(ps.reduce((s, p) => s + p.data.length, 0)), `${dist}: g ${g} vs ⟨∇L,z⟩ ${dir}`);
    }
    assert.ok(Math.abs(res.projectedGrad - res.samples.reduce((s, x) => s + x.projectedGrad, 0) / n) < 1e-12);
  }
});

test('n-SPSA update = θ − lr·(Σ_j g_j z_j / n + wd·θ) (float32 rounding)', async () => {
  const ps = gpt2LikeParams(7, [500]);
  const orig = clone(ps);
  const opt = new MezoOptimizer(ps, { eps: 1e-3, nSpsa: 4, weightDecay: 0.05 });
  let c = 0;
  const res = await opt.step(31, async () => 1 + 0.01 * Math.sin(c++), 0.5);
  const zs = res.samples.map((s) => zOf(s.seed, 0, 500));
  ps[0]!.data.forEach((v, i) => {
    const t = orig[0]!.data[i]!;
    const gh = res.samples.reduce((s, x, j) => s + (x.projectedGrad / 4) * zs[j]![i]!, 0);
    const want = t - 0.5 * (gh + 0.05 * t);
    // each of the 4 ±ε cycles may leave up to 1.5 ulp(|θ| + 2ε|z_j|) (restore bound), plus the final rounding
    const tol = zs.reduce((s, z) => s + 1.5 * ulp32(Math.abs(t) + 2e-3 * Math.abs(z[i]!)), 0) + ulp32(want);
    assert.ok(Math.abs(v - want) <= tol, `[${i}] ${v} vs ${want} (tolerance ${tol})`);
  });
});

test('E[g·z] = ∇L (unbiased): Monte Carlo over 3000 seeds within 4 standard errors, Gaussian and Rademacher', async () => {
  for (const dist of ['gaussian', 'rademacher'] as const) {
    const ps: NamedParam[] = [{ name: 'w', data: Float32Array.of(0.5, -1, 2, 0.25, -0.75, 1.5) }];
    const h = [1, 2, 0.5, 3, 1.5, 0.25];
    const grad = [...ps[0]!.data].map((t, i) => h[i]! * t);
    const opt = new MezoOptimizer(ps, { eps: 1e-2, distribution: dist });
    const loss = async (): Promise<number> => ps[0]!.data.reduce((s, t, i) => s + 0.5 * h[i]! * t * t, 0);
    const K = 3000;
    const sum = new Float64Array(6);
    const sum2 = new Float64Array(6);
    for (let k = 0; k < K; k++) {
      const r = await opt.step(10_000 + k, loss, 0);
      const z = zOf(10_000 + k, 0, 6, dist);
      for (let i = 0; i < 6; i++) {
        const e = r.projectedGrad * z[i]!;
        sum[i] += e;
        sum2[i] += e * e;
      }
    }
    for (let i = 0; i < 6; i++) {
      const mean = sum[i]! / K;
      const se = Math.sqrt((sum2[i]! / K - mean * mean) / K);
      assert.ok(Math.abs(mean - grad[i]!) < 4 * se, `${dist}[${i}]: ${mean} vs ${grad[i]} (se ${se})`);
    }
  }
});

test('ZO momentum and ZO-Adam = the first-order SGDM / Adam fed ĝ = g·z at the restored θ (3 steps, float32 rounding)', async () => {
  const cases: [MezoOptions['rule'], () => SgdMomentum | Adam][] = [
    [{ kind: 'momentum', beta: 0.9 }, () => new SgdMomentum({ beta: 0.9, weightDecay: 0.1 })],
    [{ kind: 'momentum', beta: 0.8, form: 'ema' }, () => new SgdMomentum({ beta: 0.8, form: 'ema', weightDecay: 0.1 })],
    [{ kind: 'adam', beta1: 0.9, beta2: 0.99, eps: 1e-6 }, () => new Adam({ beta1: 0.9, beta2: 0.99, eps: 1e-6, weightDecay: 0.1, weightDecayMode: 'decoupled' })],
    [{ kind: 'adam', weightDecayMode: 'coupled' }, () => new Adam({ weightDecay: 0.1 })],
  ];
  for (const [rule, make] of cases) {
    const ps = gpt2LikeParams(8, [300, 40]);
    const ref = clone(ps);
    const opt = new MezoOptimizer(ps, { eps: 1e-3, weightDecay: 0.1, rule });
    const fo = make();
    for (let t = 0; t < 3; t++) {
      let c = 0;
      // g = 0.05·(±1): updates ~1e-4 per step, small against |θ| so float32 rounding stays ~1e-7 relative
      const res = await opt.step(500 + t, async () => [3, 3 - (t % 2 ? -1e-4 : 1e-4)][c++]!, 1e-3);
      const grads = new Map<string, Float32Array>();
      ref.forEach((p, k) => {
        const z = zOf(500 + t, k, p.data.length);
        // the restored θ the ZO update starts from
        for (let i = 0; i < p.data.length; i++) {
          const a = Math.fround(p.data[i]! + 1e-3 * z[i]!);
          p.data[i] = Math.fround(Math.fround(a - 2e-3 * z[i]!) + 1e-3 * z[i]!);
        }
        grads.set(p.name, Float32Array.from(z, (zi) => res.projectedGrad * zi));
      });
      fo.step(ref, grads, 1e-3);
    }
    let moved = 0;
    const start = gpt2LikeParams(8, [300, 40]);
    ps.forEach((p, k) => p.data.forEach((v, i) => {
      const w = ref[k]!.data[i]!;
      assert.ok(Math.abs(v - w) <= 1e-6 * Math.abs(w) + 1e-10, `${rule!.kind} ${p.name}[${i}]: ${v} vs ${w}`);
      moved = Math.max(moved, Math.abs(v - start[k]!.data[i]!));
    }));
    assert.ok(moved > 1e-5, `${rule!.kind}: the updates are too small to test (${moved})`);
    const slots = rule!.kind === 'adam' ? 2 : 1;
    assert.equal(opt.stateBytes(), 4 * slots * 340);
    assert.equal(opt.stateTensors().size, 2 * slots);
  }
  assert.equal(new MezoOptimizer(gpt2LikeParams(1), { eps: 1e-3 }).stateBytes(), 0);
});

test('a non-differentiable objective (−accuracy of a linear classifier) is optimized; g = (acc₋ − acc₊)/(2ε)', async () => {
  // 2-D points labelled by the sign of x·(1, −2) + 0.3; the classifier starts pointing the wrong way
  const rng = new Rng(11);
  const pts = Array.from({ length: 200 }, () => [rng.normal(), rng.normal()] as [number, number]);
  const labels = pts.map(([a, b]) => (a - 2 * b + 0.3 > 0 ? 1 : -1));
  const ps: NamedParam[] = [
    { name: 'clf.weight', data: Float32Array.of(-1, 0.5) },
    { name: 'clf.bias', data: Float32Array.of(0) },
  ];
  const accuracy = (w: ArrayLike<number>, b: number): number => pts.reduce((s, [x, y], i) => s + (Math.sign(w[0]! * x + w[1]! * y + b) === labels[i] ? 1 : 0), 0) / pts.length;
  const negAcc = async (): Promise<number> => -accuracy(ps[0]!.data, ps[1]!.data[0]!);
  const start = -(await negAcc());
  const opt = new MezoOptimizer(ps, { eps: 0.2, nSpsa: 2 });
  for (let t = 0; t < 150; t++) {
    const w = ps[0]!.data.slice();
    const b = ps[1]!.data[0]!;
    const r = await opt.step(t, negAcc, 0.5);
    if (t < 5) {
      const z = zOf(r.samples[0]!.seed, 0, 2);
      const zb = zOf(r.samples[0]!.seed, 1, 1)[0]!;
      const plus = accuracy([Math.fround(w[0]! + 0.2 * z[0]!), Math.fround(w[1]! + 0.2 * z[1]!)], Math.fround(b + 0.2 * zb));
      assert.equal(r.samples[0]!.lossPlus, -plus);
    }
    for (const s of r.samples) assert.equal(s.projectedGrad, (s.lossPlus - s.lossMinus) / 0.4);
  }
  const end = -(await negAcc());
  assert.ok(start < 0.3 && end > 0.9, `accuracy ${start} → ${end}`);
});

test('a NaN loss or a throwing lossAt puts the weights back (within the restore bound) and raises', async () => {
  const ps = gpt2LikeParams(9, [200]);
  const orig = clone(ps);
  const opt = new MezoOptimizer(ps, { eps: 1e-3 });
  let c = 0;
  await assert.rejects(opt.step(1, async () => (c++ === 0 ? 1 : Number.NaN), 0.1), (e: unknown) => e instanceof LmtuneError && e.code === 'NUMERIC' && e.message.includes('seed 1'));
  await assert.rejects(opt.step(2, async () => {
    throw new Error('engine failed');
  }, 0.1), /engine failed/);
  ps[0]!.data.forEach((v, i) => assert.ok(Math.abs(v - orig[0]!.data[i]!) <= 4 * ulp32(Math.abs(v) + 1e-2), `[${i}]`));
});

test('bad options are CONFIG errors', () => {
  const cfg = (f: () => unknown): void => assert.throws(f, (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG');
  cfg(() => new MezoOptimizer(gpt2LikeParams(1), { eps: 0 }));
  cfg(() => new MezoOptimizer(gpt2LikeParams(1), { eps: 1e-3, nSpsa: 0 }));
  cfg(() => new MezoOptimizer([{ name: 'a', data: new Float32Array(1) }, { name: 'a', data: new Float32Array(1) }], { eps: 1e-3 }));
  cfg(() => new MezoOptimizer(gpt2LikeParams(1), { eps: 1e-3, rule: { kind: 'momentum', beta: 1.5 } }));
});
