/**
 * Per-example gradients: for a small MLP with LoRA-style factors and biases on batched data, the
 * per-example gradients from one batched backward pass equal a loop of single-example gradients.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, evaluateRef, grad, compileOrt, toFloat64, type Value } from './index.ts';
import { Rng } from '../util/rng.ts';

const B = 3;
const T = 4;
const D = 5;
const H = 6;

function build(batch: number): { g: Graph; loss: Value; params: Value[] } {
  const g = new Graph('mlp');
  const x = g.input('x', [batch, T, D]);
  const w1 = g.param('w1', [D, H]);
  const b1 = g.param('b1', [H]);
  const a = g.param('lora_a', [2, D]);
  const bb = g.param('lora_b', [H, 2]);
  const w2 = g.param('w2', [1, H]);
  const ln = g.param('gamma', [H]);
  let h = x.matmul(w1).add(b1).add(x.matmul(a, { transB: true }).matmul(bb, { transB: true }));
  h = h.gelu('tanh').mul(ln);
  const y = h.matmul(w2, { transB: true }); // [batch, T, 1]
  const perExample = y.square().sum([1, 2]); // [batch]
  return { g, loss: perExample.sum(), params: [w1, b1, a, bb, w2, ln] };
}

test('per-example gradients equal a loop of single-example gradients (ref and ort)', async () => {
  const rng = new Rng(11);
  const feeds: Record<string, Float64Array> = {};
  const shapes: Record<string, number[]> = { w1: [D, H], b1: [H], lora_a: [2, D], lora_b: [H, 2], w2: [1, H], gamma: [H] };
  for (const [k, s] of Object.entries(shapes)) feeds[k] = Float64Array.from({ length: s.reduce((p, q) => p * q, 1) }, () => rng.normal() * 0.5);
  const x = Float64Array.from({ length: B * T * D }, () => rng.normal());

  const { loss, params } = build(B);
  const pe = grad(loss, params, { perExample: params });
  const outs: Record<string, Value> = {};
  pe.forEach((v, i) => {
    assert.deepEqual([...v.shape], [B, ...params[i]!.shape]);
    outs[params[i]!.name] = v;
  });
  const batched = evaluateRef(outs, { ...feeds, x });

  const single = build(1);
  const sg = grad(single.loss, single.params);
  const sOuts: Record<string, Value> = {};
  sg.forEach((v, i) => (sOuts[single.params[i]!.name] = v));
  for (let b = 0; b < B; b++) {
    const xb = x.slice(b * T * D, (b + 1) * T * D);
    const r = evaluateRef(sOuts, { ...feeds, x: xb });
    for (const p of params) {
      const n = r[p.name]!.data.length;
      const got = batched[p.name]!.data.subarray(b * n, (b + 1) * n);
      for (let i = 0; i < n; i++) assert.ok(Math.abs(got[i]! - r[p.name]!.data[i]!) < 1e-12 * Math.max(1, Math.abs(r[p.name]!.data[i]!)), `${p.name}[${b}][${i}]`);
    }
  }

  // the same graph on ort (float32) agrees with ref
  const f32: Record<string, Float32Array> = { x: Float32Array.from(x) };
  for (const [k, v] of Object.entries(feeds)) f32[k] = Float32Array.from(v);
  const exe = await compileOrt(outs, { threads: 1 });
  const got = await exe.run(f32);
  for (const p of params) {
    const a = toFloat64(got[p.name]!);
    const r = batched[p.name]!.data;
    let err = 0;
    let mx = 0;
    for (let i = 0; i < a.length; i++) {
      err = Math.max(err, Math.abs(a[i]! - r[i]!));
      mx = Math.max(mx, Math.abs(r[i]!));
    }
    assert.ok(err / mx < 1e-4, `${p.name}: ort vs ref ${err / mx}`);
  }

  // summing per-example gradients over the batch gives the ordinary gradient
  const { loss: l2, params: p2 } = build(B);
  const plain = grad(l2, p2);
  const pOuts: Record<string, Value> = {};
  plain.forEach((v, i) => (pOuts[p2[i]!.name] = v));
  const pr = evaluateRef(pOuts, { ...feeds, x });
  for (const p of params) {
    const n = pr[p.name]!.data.length;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let b = 0; b < B; b++) s += batched[p.name]!.data[b * n + i]!;
      assert.ok(Math.abs(s - pr[p.name]!.data[i]!) < 1e-10 * Math.max(1, Math.abs(s)));
    }
  }
});
