/**
 * First-order optimizers against textbook float64 references on a quadratic, the SGDM form equivalence
 * (specs/sde-scaling-svag-momentum.md §2.6, §6.4), and bitwise state round trips.
 *
 * Tolerance: the optimizers keep x and their state in float32 (one rounding per element per step, relative
 * 6e-8) and see gradients of the float32 x; over 6 steps the iterates stay within 2e-6·(1 + |x|) of the
 * float64 reference.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Adam, adamKernel, adamW } from './adam.ts';
import { decayAllButBiasAndNorm, decayEverything, isBiasOrNorm, mezoReferenceDecayFilter } from './decay.ts';
import { Rmsprop } from './rmsprop.ts';
import { Sgd } from './sgd.ts';
import { emaLrFromPytorch, SgdMomentum } from './sgd-momentum.ts';
import type { NamedParam, Optimizer } from './types.ts';
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';

// L(x) = ½ Σ h_i (x_i − c_i)² over two tensors; the bias is exempt from weight decay by default.
const H: Record<string, number[]> = { 'layer.weight': [2, 0.5, 1, 3, 0.25], 'layer.bias': [1, 4, 0.5] };
const C: Record<string, number[]> = { 'layer.weight': [1, -2, 0.5, 0, 3], 'layer.bias': [-1, 0.25, 2] };
const X0: Record<string, number[]> = { 'layer.weight': [0.3, 0.1, -0.7, 1.2, -0.4], 'layer.bias': [0.5, -0.2, 0.05] };
const NAMES = ['layer.weight', 'layer.bias'];

function grad(name: string, x: ArrayLike<number>): number[] {
  return Array.from(x, (xi, i) => H[name]![i]! * (xi - C[name]![i]!));
}

function makeParams(): NamedParam[] {
  return NAMES.map((name) => ({ name, data: Float32Array.from(X0[name]!) }));
}

function grads32(params: NamedParam[]): Map<string, Float32Array> {
  return new Map(params.map((p) => [p.name, Float32Array.from(grad(p.name, p.data))]));
}

function run(opt: Optimizer, steps: number, lr: (t: number) => number = () => 0.1): NamedParam[] {
  const ps = makeParams();
  for (let t = 0; t < steps; t++) opt.step(ps, grads32(ps), lr(t));
  return ps;
}

/** Textbook float64 reference: `update(name, x, g, t)` mutates x for step t (1-based). */
function reference(steps: number, update: (name: string, x: number[], g: number[], t: number) => void): Record<string, number[]> {
  const xs: Record<string, number[]> = {};
  for (const n of NAMES) xs[n] = [...X0[n]!];
  for (let t = 1; t <= steps; t++) for (const n of NAMES) update(n, xs[n]!, grad(n, xs[n]!), t);
  return xs;
}

function assertClose(ps: NamedParam[], ref: Record<string, number[]>, tol = 2e-6): void {
  for (const p of ps) {
    p.data.forEach((v, i) => {
      const r = ref[p.name]![i]!;
      assert.ok(Math.abs(v - r) <= tol * (1 + Math.abs(r)), `${p.name}[${i}]: ${v} vs reference ${r}`);
    });
  }
}

const decays = (name: string): boolean => !name.includes('bias');

test('SGD with coupled weight decay matches x ← x − lr(g + wd·x), bias not decayed', () => {
  const wd = 0.1;
  const ps = run(new Sgd({ weightDecay: wd }), 6);
  assertClose(ps, reference(6, (n, x, g) => x.forEach((xi, i) => (x[i] = xi - 0.1 * (g[i]! + (decays(n) ? wd : 0) * xi)))));
});

test('SGDM PyTorch form (buffer starts at g; dampening; Nesterov) matches the torch recurrence', () => {
  for (const cfg of [{ nesterov: false, dampening: 0 }, { nesterov: false, dampening: 0.3 }, { nesterov: true, dampening: 0 }]) {
    const beta = 0.9;
    const wd = 0.05;
    const ps = run(new SgdMomentum({ beta, form: 'pytorch', weightDecay: wd, ...cfg }), 6, () => 0.05);
    const buf: Record<string, number[]> = {};
    const ref = reference(6, (n, x, g, t) => {
      const d = g.map((gi, i) => gi + (decays(n) ? wd : 0) * x[i]!);
      buf[n] = t === 1 ? [...d] : buf[n]!.map((b, i) => beta * b + (1 - cfg.dampening) * d[i]!);
      x.forEach((xi, i) => (x[i] = xi - 0.05 * (cfg.nesterov ? d[i]! + beta * buf[n]![i]! : buf[n]![i]!)));
    });
    assertClose(ps, ref);
  }
});

test('SGDM EMA form matches m = βm + (1−β)g, x −= ηm', () => {
  const beta = 0.8;
  const ps = run(new SgdMomentum({ beta, form: 'ema' }), 6, () => 0.3);
  const m: Record<string, number[]> = { 'layer.weight': [0, 0, 0, 0, 0], 'layer.bias': [0, 0, 0] };
  const ref = reference(6, (n, x, g) => {
    m[n] = m[n]!.map((mi, i) => beta * mi + (1 - beta) * g[i]!);
    x.forEach((xi, i) => (x[i] = xi - 0.3 * m[n]![i]!));
  });
  assertClose(ps, ref);
});

test('SGDM PyTorch(γ, β) and EMA(η = γ/(1−β)) give the same iterates to float32 rounding (1e-6 relative, 30 steps)', () => {
  const gamma = 0.02;
  const beta = 0.9;
  const eta = emaLrFromPytorch(gamma, beta);
  assert.equal(eta, gamma / (1 - beta));
  for (const nesterov of [false, true]) {
    const a = run(new SgdMomentum({ beta, form: 'pytorch', nesterov, weightDecay: 0.01 }), 30, () => gamma);
    const b = run(new SgdMomentum({ beta, form: 'ema', nesterov, weightDecay: 0.01 }), 30, () => eta);
    const start = makeParams();
    for (let k = 0; k < a.length; k++) {
      a[k]!.data.forEach((v, i) => {
        const w = b[k]!.data[i]!;
        assert.ok(Math.abs(v - w) <= 1e-6 * (1 + Math.abs(v)), `nesterov=${nesterov} ${a[k]!.name}[${i}]: ${v} vs ${w}`);
        assert.notEqual(v, start[k]!.data[i]); // they moved
      });
    }
  }
});

test('RMSprop (plain, centered, with momentum) matches the torch recurrence, ε outside the sqrt', () => {
  for (const cfg of [{ centered: false, momentum: 0 }, { centered: true, momentum: 0 }, { centered: true, momentum: 0.5 }]) {
    const alpha = 0.9;
    const eps = 1e-3;
    const wd = 0.02;
    const ps = run(new Rmsprop({ alpha, eps, weightDecay: wd, ...cfg }), 6, () => 0.01);
    const st: Record<string, { v: number[]; a: number[]; b: number[] }> = {};
    const ref = reference(6, (n, x, g) => {
      st[n] ??= { v: x.map(() => 0), a: x.map(() => 0), b: x.map(() => 0) };
      const s = st[n]!;
      x.forEach((xi, i) => {
        const d = g[i]! + (decays(n) ? wd : 0) * xi;
        s.v[i] = alpha * s.v[i]! + (1 - alpha) * d * d;
        s.a[i] = alpha * s.a[i]! + (1 - alpha) * d;
        const avg = Math.sqrt(cfg.centered ? s.v[i]! - s.a[i]! ** 2 : s.v[i]!) + eps;
        if (cfg.momentum > 0) {
          s.b[i] = cfg.momentum * s.b[i]! + d / avg;
          x[i] = xi - 0.01 * s.b[i]!;
        } else x[i] = xi - (0.01 * d) / avg;
      });
    });
    assertClose(ps, ref);
  }
});

function adamReference(steps: number, lr: number, o: { b1: number; b2: number; eps: number; wd: number; decoupled: boolean; inside: boolean }): Record<string, number[]> {
  const st: Record<string, { m: number[]; v: number[] }> = {};
  return reference(steps, (n, x, g, t) => {
    st[n] ??= { m: x.map(() => 0), v: x.map(() => 0) };
    const s = st[n]!;
    const wd = decays(n) ? o.wd : 0;
    x.forEach((xi, i) => {
      const d = g[i]! + (o.decoupled ? 0 : wd * xi);
      s.m[i] = o.b1 * s.m[i]! + (1 - o.b1) * d;
      s.v[i] = o.b2 * s.v[i]! + (1 - o.b2) * d * d;
      const mh = s.m[i]! / (1 - o.b1 ** t);
      const vh = s.v[i]! / (1 - o.b2 ** t);
      const den = o.inside ? Math.sqrt(vh + o.eps) : Math.sqrt(vh) + o.eps;
      x[i] = xi - (o.decoupled ? lr * wd * xi : 0) - (lr * mh) / den;
    });
  });
}

test('Adam (coupled L2; ε outside or inside the sqrt) matches the bias-corrected textbook update', () => {
  for (const inside of [false, true]) {
    const o = { b1: 0.9, b2: 0.99, eps: 1e-4, wd: 0.1, decoupled: false, inside };
    const ps = run(new Adam({ beta1: o.b1, beta2: o.b2, eps: o.eps, weightDecay: o.wd, epsMode: inside ? 'inside' : 'outside' }), 6, () => 0.05);
    assertClose(ps, adamReference(6, 0.05, o));
  }
});

test('AdamW (decoupled: x·(1 − lr·wd) then the Adam step) matches the reference; bias exempt', () => {
  const o = { b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.3, decoupled: true, inside: false };
  const opt = adamW({ beta1: o.b1, beta2: o.b2, eps: o.eps, weightDecay: o.wd });
  assert.equal(opt.kind, 'adamw');
  const ps = run(opt, 6, () => 0.05);
  assertClose(ps, adamReference(6, 0.05, o));
  const mom = opt.moments('layer.weight');
  assert.ok(mom !== null && mom.step === 6 && mom.expAvg.length === 5);
  assert.equal(opt.moments('nope'), null);
});

test('a parameter without a gradient is skipped and gets no state', () => {
  const ps = makeParams();
  const opt = new Adam();
  const g = grads32(ps);
  g.delete('layer.bias');
  opt.step(ps, g, 0.1);
  assert.deepEqual([...ps[1]!.data], [...Float32Array.from(X0['layer.bias']!)]);
  assert.deepEqual([...opt.stateTensors().keys()], ['exp_avg:layer.weight', 'exp_avg_sq:layer.weight']);
  assert.deepEqual(opt.stateScalars(), { 'step:layer.weight': 1 });
});

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

test('state saved mid-run and loaded into a fresh optimizer continues bit for bit', () => {
  const makers: [string, () => Optimizer][] = [
    ['sgdm-pytorch', () => new SgdMomentum({ beta: 0.9, dampening: 0.1, weightDecay: 0.01 })],
    ['sgdm-ema', () => new SgdMomentum({ beta: 0.9, form: 'ema' })],
    ['rmsprop', () => new Rmsprop({ centered: true, momentum: 0.9 })],
    ['adam', () => new Adam({ weightDecay: 0.01 })],
    ['adamw', () => adamW({ weightDecay: 0.01 })],
    ['sgd', () => new Sgd({ weightDecay: 0.01 })],
  ];
  for (const [label, make] of makers) {
    const a = make();
    const pa = makeParams();
    for (let t = 0; t < 3; t++) a.step(pa, grads32(pa), 0.01);
    // what a checkpoint stores: copies of the tensors, the scalars through JSON
    const tensors = new Map([...a.stateTensors()].map(([k, v]) => [k, v.slice()]));
    const scalars = JSON.parse(JSON.stringify(a.stateScalars())) as Record<string, number>;
    const b = make();
    b.loadState(tensors, scalars);
    const pb = pa.map((p) => ({ name: p.name, data: p.data.slice() }));
    for (let t = 0; t < 4; t++) {
      a.step(pa, grads32(pa), 0.01);
      b.step(pb, grads32(pb), 0.01);
    }
    pa.forEach((p, i) => assert.ok(bitsEqual(p.data, pb[i]!.data), `${label}: ${p.name} differs after resume`));
    const sa = a.stateTensors();
    const sb = b.stateTensors();
    assert.deepEqual([...sa.keys()], [...sb.keys()]);
    for (const [k, v] of sa) assert.ok(bitsEqual(v, sb.get(k)!), `${label}: state ${k} differs`);
    assert.deepEqual(a.stateScalars(), b.stateScalars());
  }
});

test('loadState rejects foreign or inconsistent state with CHECKPOINT errors', () => {
  const opt = new Adam();
  const bad = (f: () => void): void => assert.throws(f, (e: unknown) => e instanceof LmtuneError && e.code === 'CHECKPOINT');
  bad(() => opt.loadState(new Map([['momentum_buffer:w', new Float32Array(2)]]), { 'step:w': 1 }));
  bad(() => opt.loadState(new Map([['exp_avg:w', new Float32Array(2)]]), { 'step:w': 1 })); // lacks exp_avg_sq
  bad(() => opt.loadState(new Map([['exp_avg:w', new Float32Array(2)], ['exp_avg_sq:w', new Float32Array(2)]]), {})); // lacks step
  opt.loadState(new Map([['exp_avg:layer.weight', new Float32Array(4)], ['exp_avg_sq:layer.weight', new Float32Array(4)]]), { 'step:layer.weight': 2 });
  const ps = makeParams();
  bad(() => opt.step(ps, grads32(ps), 0.1)); // 4 elements stored, 5 in the model
  bad(() => new Sgd().loadState(new Map([['exp_avg:w', new Float32Array(1)]]), {}));
});

test('decay filters: biases and every norm naming are exempt; the MeZO reference rule is literal', () => {
  const exempt = ['h.0.ln_1.weight', 'ln_f.weight', 'h.3.attn.c_attn.bias', 'encoder.layer.0.output.LayerNorm.weight', 'model.layers.0.input_layernorm.weight', 'model.norm.weight', 'decoder.layers.1.self_attn_layer_norm.weight', 'ln.weight'];
  const decayed = ['h.0.attn.c_attn.weight', 'wte.weight', 'lm_head.weight', 'h.0.mlp.c_fc.weight', 'kiln.weight', 'lora_A'];
  for (const n of exempt) assert.ok(isBiasOrNorm(n) && !decayAllButBiasAndNorm(n), n);
  for (const n of decayed) assert.ok(!isBiasOrNorm(n) && decayAllButBiasAndNorm(n), n);
  assert.ok(decayEverything('x.bias'));
  // reference: substrings bias / layer_norm / layernorm, case-sensitive
  assert.equal(mezoReferenceDecayFilter('decoder.layers.1.self_attn_layer_norm.weight'), false);
  assert.equal(mezoReferenceDecayFilter('x.bias'), false);
  assert.equal(mezoReferenceDecayFilter('h.0.ln_1.weight'), true);
  assert.equal(mezoReferenceDecayFilter('encoder.LayerNorm.weight'), true);
});

test('bad hyperparameters are CONFIG errors', () => {
  const cfg = (f: () => unknown): void => assert.throws(f, (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG');
  cfg(() => new SgdMomentum({ beta: 1 }));
  cfg(() => new SgdMomentum({ beta: 0.9, form: 'ema', dampening: 0.1 }));
  cfg(() => new SgdMomentum({ beta: 0.9, nesterov: true, dampening: 0.5 }));
  cfg(() => new Adam({ beta2: 1 }));
  cfg(() => new Rmsprop({ eps: 0 }));
  cfg(() => new Sgd({ weightDecay: -1 }));
  cfg(() => new Sgd().step(makeParams(), new Map(), Number.NaN));
});

test('adamKernel: the whole-tensor float32 loop gives the same bytes as the general (offset) loop', () => {
  const n = 4099;
  const rng = new Rng(11);
  const special = [0, -0, 1e-45, -1e-45, 1e30, -3e-39];
  const init = (scale: number): Float32Array => Float32Array.from({ length: n }, (_, i) => (i < special.length ? special[i]! : rng.normal() * scale));
  for (const epsInside of [false, true]) {
    for (const [l2, shrink] of [
      [0, 1 - 1e-3 * 0.1],
      [0.01, 1],
    ] as const) {
      const c = { beta1: 0.9, beta2: 0.999, eps: 1e-8, epsInside };
      const x = init(0.02);
      const [m, v] = [new Float32Array(n), new Float32Array(n)];
      // the same tensors one element in: xOff = gOff = 1 takes the general loop
      const [xo, mo, vo] = [new Float32Array(n + 1), new Float32Array(n + 1), new Float32Array(n + 1)];
      xo.set(x, 1);
      for (let t = 1; t <= 4; t++) {
        const g = init(t === 3 ? 0 : 0.5);
        const go = new Float32Array(n + 1);
        go.set(g, 1);
        adamKernel(x, m, v, 0, g, 0, n, 1e-3, t, l2, shrink, c);
        adamKernel(xo, mo, vo, 1, go, 1, n, 1e-3, t, l2, shrink, c);
        for (const [a, b, what] of [
          [x, xo, 'x'],
          [m, mo, 'm'],
          [v, vo, 'v'],
        ] as const) {
          assert.deepEqual(new Uint8Array(a.buffer), new Uint8Array(b.buffer, 4), `${what} after step ${t} (epsInside ${epsInside}, l2 ${l2})`);
        }
      }
    }
  }
});
