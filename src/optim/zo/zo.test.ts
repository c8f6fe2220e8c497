/**
 * The ZO registry: each method's step against its defining formula (an independent whole-tensor
 * re-derivation from fillZ, compared bit for bit), the unbiased estimates against the backprop
 * directional derivative of a tiny GPT-2 on the float64 ref executor, replay bit-exactness through the
 * trajectory file, and the properties the papers claim (conservative never raises the batch loss).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransformerModel } from '../../heads/model.ts';
import { padTargets } from '../../heads/objective.ts';
import { randomWeights, tinyConfig } from '../../models/testing.ts';
import { packBatch } from '../../models/batch.ts';
import { Rng } from '../../util/rng.ts';
import { LmtuneError } from '../../util/errors.ts';
import type { NamedParam } from '../types.ts';
import { fillZ, spsaSampleSeed, type ZDistribution } from '../zstream.ts';
import { conservativeChoice } from './conservative.ts';
import { layerBlocks, BlockMethod } from './block.ts';
import { HizooMethod } from './hizoo.ts';
import type { ZoMethod } from './method.ts';
import { createZoMethod, ZO_METHODS, ZO_METHOD_INFO } from './registry.ts';
import { magnitudeThreshold, SparseMethod } from './sparse.ts';
import { formatZoHeader, formatZoRecord, parseZoTrajectory, replayZoTrajectory, zoTrajectoryHeader } from './trajectory.ts';
import { DEFAULT_ZO_SETTINGS } from './method.ts';

const NAMES = ['h.0.attn.c_attn.weight', 'h.0.ln_1.weight', 'h.1.mlp.c_fc.weight', 'wte.weight'];

function params(seed: number, sizes = [700, 40, 300, 90]): NamedParam[] {
  const rng = new Rng(seed);
  return sizes.map((n, k) => ({ name: NAMES[k]!, data: Float32Array.from({ length: n }, () => (k === 1 ? 1 + 0.05 * rng.normal() : 0.3 * rng.normal())) }));
}
const clone = (ps: readonly NamedParam[]): NamedParam[] => ps.map((p) => ({ name: p.name, data: p.data.slice() }));
const bytesEqual = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** L = Σ a θ²/2 + b θ⁴/4 + c θ: deterministic, so a step and its re-derivation see the same losses */
function quartic(ps: readonly NamedParam[]): () => Promise<number> {
  return async () => {
    let s = 0;
    ps.forEach((p, k) => p.data.forEach((t, i) => {
      const a = 1 + ((i + k) % 5) * 0.3;
      const c = ((i % 7) - 3) * 0.05;
      s += (a * t * t) / 2 + (0.5 * t ** 4) / 4 + c * t;
    }));
    return s;
  };
}

function z(seed: number, p: number, n: number, dist: ZDistribution = 'gaussian'): Float64Array {
  const out = new Float64Array(n);
  fillZ(out, seed, p, 0, dist);
  return out;
}

/** θ_p[i] ← fround(θ + f(p, i)) over whole tensors */
function addEach(ps: NamedParam[], f: (p: number, i: number) => number): void {
  ps.forEach((q, p) => q.data.forEach((t, i) => (q.data[i] = t + f(p, i))));
}

const SEED = 4242;
const LR = 0.01;
const EPS = 1e-3;

test('sign: θ ← ⌊⌊θ + εz⌉ − lr·sign(g)·sign(z)⌉ after ±ε, g = (l₊ − l₋)/2ε', async () => {
  const ps = params(1);
  const ref = clone(ps);
  const m = createZoMethod('sign', ps, { eps: EPS });
  const r = await m.step(SEED, quartic(ps), LR);
  const L = quartic(ref);
  const zs = ref.map((q, p) => z(SEED, p, q.data.length));
  addEach(ref, (p, i) => EPS * zs[p]![i]!);
  const lp = await L();
  addEach(ref, (p, i) => -2 * EPS * zs[p]![i]!);
  const lm = await L();
  const g = (lp - lm) / (2 * EPS);
  ref.forEach((q, p) => q.data.forEach((t, i) => (q.data[i] = Math.fround(t + EPS * zs[p]![i]!) - LR * Math.sign(g) * Math.sign(zs[p]![i]!))));
  assert.deepEqual(r.record.values, [g]);
  assert.equal(r.forwardPasses, 2);
  ps.forEach((q, p) => assert.ok(bytesEqual(q.data, ref[p]!.data), q.name));
});

test('conservative: 5 passes, keeps the best of θ, θ − lr·g·z, θ + lr·g·z, and never keeps a higher batch loss', async () => {
  assert.equal(conservativeChoice(1, 2, 3), 0);
  assert.equal(conservativeChoice(1, 0.5, 0.7), 1);
  assert.equal(conservativeChoice(1, 2, 0.5), 2);
  for (const lr of [1e-3, 0.05, 3]) {
    const ps = params(2);
    const ref = clone(ps);
    const L = quartic(ps);
    const before = await L();
    const m = createZoMethod('conservative', ps, { eps: EPS });
    const r = await m.step(SEED, L, lr);
    assert.equal(r.forwardPasses, 5);
    // the kept point's measured loss is never above l₀; getting back to it by in-place moves rounds
    // (like MeZO's restore), so the weights' loss afterwards matches it to float32 rounding only
    assert.ok(r.loss <= before, `lr ${lr}: kept ${r.loss} > l₀ ${before}`);
    const after = await L();
    assert.ok(Math.abs(after - r.loss) <= 1e-6 * Math.abs(before), `lr ${lr}: ${r.loss} vs ${after} after the moves`);
    // re-derivation
    const RL = quartic(ref);
    const zs = ref.map((q, p) => z(SEED, p, q.data.length));
    const l0 = await RL();
    addEach(ref, (p, i) => EPS * zs[p]![i]!);
    const lp = await RL();
    addEach(ref, (p, i) => -2 * EPS * zs[p]![i]!);
    const lm = await RL();
    addEach(ref, (p, i) => EPS * zs[p]![i]!);
    const g = (lp - lm) / (2 * EPS);
    const move = (s: number): void => addEach(ref, (p, i) => -s * lr * g * zs[p]![i]!);
    move(1);
    const la = await RL();
    move(-2);
    const lb = await RL();
    const choice = la > l0 ? (l0 < lb ? 0 : 2) : la < lb ? 1 : 2;
    if (choice === 0) move(1);
    if (choice === 1) move(2);
    assert.deepEqual(r.record.values, [g, choice]);
    assert.equal(r.loss, [l0, la, lb][choice]);
    ps.forEach((q, p) => assert.ok(bytesEqual(q.data, ref[p]!.data), `${q.name} lr ${lr}`));
  }
});

test('hizoo: perturbs by εz/√H, H ← max((1−α)H + α·|l₊+l₋−2l₀|/(2ε²)·H·z², 1e-8), θ ← q − lr·g·z/√H_new', async () => {
  const ps = params(3);
  const ref = clone(ps);
  const alpha = 0.3;
  const m = new HizooMethod(ps, { ...DEFAULT_ZO_SETTINGS, eps: EPS, hessianSmooth: alpha });
  const rng = new Rng(9);
  const H0 = ps.map((q) => Float32Array.from({ length: q.data.length }, () => 0.5 + rng.uniform()));
  m.loadState(new Map(ps.map((q, k) => [`hessian:${q.name}`, H0[k]!])), {});
  const r = await m.step(SEED, quartic(ps), LR);
  assert.equal(r.forwardPasses, 3);
  const L = quartic(ref);
  const zs = ref.map((q, p) => z(SEED, p, q.data.length));
  const l0 = await L();
  addEach(ref, (p, i) => (EPS * zs[p]![i]!) / Math.sqrt(H0[p]![i]!));
  const lp = await L();
  addEach(ref, (p, i) => (-2 * EPS * zs[p]![i]!) / Math.sqrt(H0[p]![i]!));
  const lm = await L();
  const g = (lp - lm) / (2 * EPS);
  const c = Math.abs(lp + lm - 2 * l0) / (2 * EPS * EPS);
  assert.deepEqual(r.record.values, [g, c]);
  ref.forEach((q, p) => q.data.forEach((t, i) => {
    const zi = zs[p]![i]!;
    const h0 = H0[p]![i]!;
    const h1 = Math.fround(Math.max((1 - alpha) * h0 + alpha * c * h0 * zi * zi, 1e-8));
    const want = Math.fround(Math.fround(t + (EPS * zi) / Math.sqrt(h0)) - (LR * g * zi) / Math.sqrt(h1));
    assert.ok(Object.is(ps[p]!.data[i], want), `${q.name}[${i}]`);
    assert.ok(Object.is(m.hessian(p)[i], h1), `H ${q.name}[${i}]`);
  }));
  assert.equal(m.stateBytes(), 4 * 1130);
});

test('sparse masks: magnitude (per-tensor quantile of |θ|), random and layer have density ρ; unmasked entries never change', async () => {
  for (const mask of ['magnitude', 'random', 'layer'] as const) {
    const sizes = mask === 'layer' ? Array.from({ length: 40 }, () => 50) : [4000, 40, 3000, 900];
    const ps = params(4, sizes).map((p, k) => ({ name: `h.${k}.w`, data: p.data }));
    const ref = clone(ps);
    const m = createZoMethod(`sparse-${mask}`, ps, { eps: EPS, density: 0.25 }) as SparseMethod;
    const r = await m.step(SEED, quartic(ps), LR);
    const d = m.maskDensity();
    assert.ok(Math.abs(d - 0.25) < (mask === 'layer' ? 0.15 : 0.02), `${mask}: density ${d}`);
    const L = quartic(ref);
    const zs = ref.map((q, p) => z(SEED, p, q.data.length));
    const inM = (p: number, i: number): boolean => m.inMask(p, i);
    if (mask === 'magnitude') {
      ref.forEach((q, p) => {
        const t = magnitudeThreshold(q.data, 0.25);
        q.data.forEach((v, i) => assert.equal(inM(p, i), Math.abs(v) <= t, `${q.name}[${i}]`));
      });
    }
    addEach(ref, (p, i) => (inM(p, i) ? EPS * zs[p]![i]! : 0));
    const lp = await L();
    addEach(ref, (p, i) => (inM(p, i) ? -2 * EPS * zs[p]![i]! : 0));
    const lm = await L();
    const g = (lp - lm) / (2 * EPS);
    assert.deepEqual(r.record.values, [g]);
    ref.forEach((q, p) => q.data.forEach((t, i) => {
      const want = inM(p, i) ? Math.fround(Math.fround(t + EPS * zs[p]![i]!) - LR * g * zs[p]![i]!) : t;
      assert.ok(Object.is(ps[p]!.data[i], want), `${mask} ${q.name}[${i}]`);
    }));
  }
});

test('fzoo: N Rademacher one-sided differences around l₀, step divided by the std σ of the N losses', async () => {
  const ps = params(5);
  const ref = clone(ps);
  const N = 4;
  const m = createZoMethod('fzoo', ps, { eps: EPS, samples: N });
  const r = await m.step(SEED, quartic(ps), LR);
  assert.equal(r.forwardPasses, N + 1);
  const L = quartic(ref);
  const l0 = await L();
  const us = Array.from({ length: N }, (_, j) => ref.map((q, p) => z(spsaSampleSeed(SEED, j), p, q.data.length, 'rademacher')));
  const ls: number[] = [];
  for (let j = 0; j < N; j++) {
    addEach(ref, (p, i) => EPS * us[j]![p]![i]!);
    ls.push(await L());
    addEach(ref, (p, i) => -EPS * us[j]![p]![i]!);
  }
  const mean = ls.reduce((a, b) => a + b) / N;
  const sigma = Math.sqrt(ls.reduce((a, l) => a + (l - mean) ** 2, 0) / N);
  const cs = ls.map((l) => (l - l0) / (N * sigma));
  assert.deepEqual(r.record.values, [sigma, ...cs]);
  addEach(ref, (p, i) => -LR * cs.reduce((a, c, j) => a + c * us[j]![p]![i]!, 0));
  ps.forEach((q, p) => assert.ok(bytesEqual(q.data, ref[p]!.data), q.name));
  assert.equal(createZoMethod('fzoo', params(5)).passesPerStep(), 9, 'N defaults to 8');
});

test('block: one two-point estimate per layer block (h.0, h.1, rest), each with its own z_b', async () => {
  assert.deepEqual(layerBlocks(NAMES), [0, 0, 1, 2]);
  const ps = params(6);
  const ref = clone(ps);
  const m = createZoMethod('block', ps, { eps: EPS }) as BlockMethod;
  const r = await m.step(SEED, quartic(ps), LR);
  assert.equal(r.forwardPasses, 6);
  const L = quartic(ref);
  const gs: number[] = [];
  for (let b = 0; b < 3; b++) {
    const sb = spsaSampleSeed(SEED, b);
    const zs = ref.map((q, p) => z(sb, p, q.data.length));
    const on = (p: number): number => (m.blockOf[p] === b ? 1 : 0);
    addEach(ref, (p, i) => (on(p) ? EPS * zs[p]![i]! : 0));
    const lp = await L();
    addEach(ref, (p, i) => (on(p) ? -2 * EPS * zs[p]![i]! : 0));
    const lm = await L();
    addEach(ref, (p, i) => (on(p) ? EPS * zs[p]![i]! : 0));
    gs.push((lp - lm) / (2 * EPS));
  }
  assert.deepEqual(r.record.values, gs);
  for (let b = 0; b < 3; b++) {
    const zs = ref.map((q, p) => z(spsaSampleSeed(SEED, b), p, q.data.length));
    addEach(ref, (p, i) => (m.blockOf[p] === b ? -LR * gs[b]! * zs[p]![i]! : 0));
  }
  ps.forEach((q, p) => assert.ok(bytesEqual(q.data, ref[p]!.data), q.name));
});

test('unbiased estimates = the backprop directional derivative (tiny GPT-2, float64 ref executor)', async () => {
  const raw = tinyConfig('gpt2');
  const model = TransformerModel.fromWeights(raw, randomWeights(raw, 4), null, { backend: 'ref' });
  const batch = packBatch([[3, 14, 15, 9, 26], [5, 35, 8]], { side: 'right', padId: 0, seq: 8, batch: 2 });
  const targets = padTargets([0, 1, 2, 3, 8, 9], [14, 15, 9, 26, 35, 8], 8);
  const req = { batch, targets, objective: { kind: 'token' as const, weight: new Float32Array(8).fill(1 / 6) } };
  const names = model.trainableNames();
  const { grads } = await model.loss(req, names);
  const ps: NamedParam[] = names.map((name) => ({ name, data: model.tensor(name) }));
  const init = clone(ps);
  const lossAt = async (): Promise<number> => (await model.loss(req)).loss;
  /** ⟨∇L, d⟩ for a direction given per element */
  const dot = (d: (p: number, i: number) => number): number => ps.reduce((s, q, p) => s + grads!.get(q.name)!.reduce((a, gi, i) => a + gi * d(p, i), 0), 0);
  const zs = (seed: number, dist: ZDistribution = 'gaussian'): Float64Array[] => ps.map((q, p) => z(seed, p, q.data.length, dist));
  const close = (got: number, want: number, tol: number, what: string): void => assert.ok(Math.abs(got - want) <= tol * Math.abs(want), `${what}: ${got} vs ⟨∇L,·⟩ ${want} (rel ${Math.abs(got - want) / Math.abs(want)})`);
  const reset = (): void => ps.forEach((q, p) => q.data.set(init[p]!.data));
  const run = async (m: ZoMethod): Promise<number[]> => {
    const r = await m.step(SEED, lossAt, 0);
    return r.record.values;
  };
  const z0 = zs(SEED);
  for (const name of ['sgd', 'conservative'] as const) {
    close((await run(createZoMethod(name, ps, { eps: EPS })))[0]!, dot((p, i) => z0[p]![i]!), 1e-3, name);
    reset();
  }
  // HiZOO with a non-trivial H: the direction is z/√H
  const hz = new HizooMethod(ps, { ...DEFAULT_ZO_SETTINGS, eps: EPS });
  const rng = new Rng(3);
  const H = ps.map((q) => Float32Array.from({ length: q.data.length }, () => 0.25 + rng.uniform()));
  hz.loadState(new Map(ps.map((q, k) => [`hessian:${q.name}`, H[k]!])), {});
  close((await run(hz))[0]!, dot((p, i) => z0[p]![i]! / Math.sqrt(H[p]![i]!)), 1e-3, 'hizoo');
  reset();
  for (const mask of ['magnitude', 'random', 'layer'] as const) {
    const m = createZoMethod(`sparse-${mask}`, ps, { eps: EPS, density: 0.5 }) as SparseMethod;
    const g = (await run(m))[0]!;
    close(g, dot((p, i) => (m.inMask(p, i) ? z0[p]![i]! : 0)), 1e-3, `sparse-${mask}`);
    reset();
  }
  const blk = createZoMethod('block', ps, { eps: EPS }) as BlockMethod;
  const gb = await run(blk);
  gb.forEach((g, b) => {
    const zb = zs(spsaSampleSeed(SEED, b));
    close(g, dot((p, i) => (blk.blockOf[p] === b ? zb[p]![i]! : 0)), 1e-3, `block ${b}`);
  });
  reset();
  // FZOO is one-sided: (l_j − l₀)/ε = ⟨∇L, u_j⟩ + O(ε); recover l_j − l₀ = c_j·N·σ
  const fz = await run(createZoMethod('fzoo', ps, { eps: 1e-4, samples: 3 }));
  const [sigma, ...cs] = fz;
  cs.forEach((c, j) => {
    const u = zs(spsaSampleSeed(SEED, j), 'rademacher');
    close((c * 3 * sigma!) / 1e-4, dot((p, i) => u[p]![i]!), 2e-2, `fzoo u_${j}`);
  });
});

test('every method replays bit for bit from its trajectory file (weights and HiZOO state)', async () => {
  {
    for (const name of ZO_METHODS) {
      const ps = params(7);
      const init = clone(ps);
      const settings = { eps: 1e-2, samples: name === 'fzoo' ? 3 : name === 'sgd' ? 2 : 1, hessianSmooth: 0.1, weightDecay: name === 'adam' ? 0.01 : 0 };
      const m = createZoMethod(name, ps, settings);
      let text = formatZoHeader(zoTrajectoryHeader(m, { ...DEFAULT_ZO_SETTINGS, ...settings }));
      const L = quartic(ps);
      for (let k = 0; k < 4; k++) {
        const r = await m.step(100 + k, L, 0.02 / (k + 1));
        text += formatZoRecord({ step: k, ...r.record });
      }
      const t = parseZoTrajectory(text + '{"step":4,"se', `${name}.jsonl`); // with a torn last line
      assert.equal(t.records.length, 4);
      const replayed = await replayZoTrajectory(init, t);
      let moved = false;
      ps.forEach((q, p) => {
        assert.ok(bytesEqual(q.data, init[p]!.data), `${name}: ${q.name} differs after replay`);
        moved ||= !bytesEqual(q.data, params(7)[p]!.data);
      });
      assert.ok(moved, `${name}: the steps did not move the weights`);
      for (const [k, v] of m.stateTensors()) assert.ok(bytesEqual(v, replayed.stateTensors().get(k)!), `${name} state ${k}`);
    }
  }
});

test('registry: every method states paper, passes and memory; bad settings are CONFIG errors', () => {
  for (const n of ZO_METHODS) assert.ok(ZO_METHOD_INFO[n].paper && ZO_METHOD_INFO[n].memory, n);
  const cfg = (f: () => unknown): void => assert.throws(f, (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG');
  cfg(() => createZoMethod('forward-gradient', params(1)));
  cfg(() => createZoMethod('sign', params(1), { weightDecay: 0.1 }));
  cfg(() => createZoMethod('hizoo', params(1), { samples: 4 }));
  cfg(() => createZoMethod('sparse-random', params(1), { density: 0 }));
  assert.equal(createZoMethod('momentum', params(1)).stateBytes(), 4 * 1130);
  assert.equal(createZoMethod('sparse-magnitude', params(1)).stateBytes(), Math.ceil(700 / 8) + 5 + Math.ceil(300 / 8) + Math.ceil(90 / 8));
});
