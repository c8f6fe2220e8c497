/** The ort executor (ONNX, float32) agrees with the float64 ref executor on every primitive, values and gradients. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, compileOrt, evaluateRef, grad, toFloat64, type Value } from './index.ts';
import { CASES, initFeeds, projectedLoss } from './cases.test-util.ts';

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / Math.max(den, 1e-30);
}

for (const c of CASES) {
  test(`ort agrees with ref: ${c.name}`, async () => {
    const g = new Graph(c.name);
    const { out, params } = c.build(g);
    const loss = projectedLoss(g, out);
    const grads = grad(loss, params);
    const outs: Record<string, Value> = { out, loss };
    grads.forEach((gr, i) => (outs[`g${i}`] = gr));
    const feeds64 = initFeeds(c, params);
    const feeds32: Record<string, Float32Array | number[]> = {};
    for (const [k, v] of Object.entries(feeds64)) feeds32[k] = v instanceof Float64Array ? Float32Array.from(v) : v;
    // the ref side runs on the float32-rounded inputs so only arithmetic differs
    const feedsRef: Record<string, Float64Array | number[]> = {};
    for (const [k, v] of Object.entries(feeds32)) feedsRef[k] = v instanceof Float32Array ? Float64Array.from(v) : v;
    const ref = evaluateRef(outs, feedsRef);
    const exe = await compileOrt(outs, { threads: 1 });
    const got = await exe.run(feeds32);
    for (const k of Object.keys(outs)) {
      assert.deepEqual([...got[k]!.shape], [...ref[k]!.shape], `${k} shape`);
      const e = relErr(toFloat64(got[k]!), ref[k]!.data);
      assert.ok(e < (c.tol32 ?? 2e-5), `${c.name}: output ${k} differs from ref by ${e.toExponential(2)} (relative to its max)`);
    }
  });
}

test('weights are fed without copying; in-place writes are seen by the next run; outputs land in preallocated buffers', async () => {
  const n = 1 << 26; // 64M floats = 256 MiB
  const g = new Graph('zero-copy');
  const x = g.param('x', [n]);
  const y = x.slice(0, 0, 4).mul(2);
  const exe = await compileOrt({ y }, { threads: 1 });
  const data = new Float32Array(n);
  data.set([1, 2, 3, 4]);
  const out = new Float32Array(4);
  await exe.run({ x: data }, { y: out });
  assert.deepEqual([...out], [2, 4, 6, 8], 'the result was written into the preallocated buffer');
  data[0] = 10; // in place, no new feed object
  await exe.run({ x: data }, { y: out });
  assert.equal(out[0], 20);
  // copying 256 MiB costs tens of milliseconds; a zero-copy run of a 4-element slice costs far less
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) await exe.run({ x: data }, { y: out });
  const perRun = (performance.now() - t0) / 20;
  const c0 = performance.now();
  new Float32Array(data); // one copy, for scale
  const copyMs = performance.now() - c0;
  assert.ok(perRun < copyMs / 4, `a run with a 256 MiB weight took ${perRun.toFixed(2)} ms; one copy of it takes ${copyMs.toFixed(2)} ms`);
});
