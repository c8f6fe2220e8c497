import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RademacherProjection, BLOCK_ROWS } from './rademacher.ts';
import { Rng } from '../util/rng.ts';

function gaussianRows(n: number, d: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * d }, () => rng.normal());
}

function exactProduct(p: RademacherProjection, x: Float32Array, n: number): Float64Array {
  // independent float64 product with P built entry by entry
  const P = new Float64Array(p.inDim * p.outDim);
  for (let i = 0; i < p.inDim; i++) for (let j = 0; j < p.outDim; j++) P[i * p.outDim + j] = p.entry(i, j);
  const y = new Float64Array(n * p.outDim);
  for (let e = 0; e < n; e++) for (let i = 0; i < p.inDim; i++) for (let j = 0; j < p.outDim; j++) y[e * p.outDim + j] = y[e * p.outDim + j]! + x[e * p.inDim + i]! * P[i * p.outDim + j]!;
  return y;
}

test('block() agrees with entry(), entries are ±1/√d and about half positive', () => {
  const p = new RademacherProjection({ seed: 7, inDim: 50, outDim: 300 });
  const b = p.block(10, 5);
  let pos = 0;
  for (let r = 0; r < 5; r++) {
    for (let j = 0; j < 300; j++) {
      assert.equal(b[r * 300 + j], Math.fround(p.entry(10 + r, j)));
      if (b[r * 300 + j]! > 0) pos++;
    }
  }
  assert.ok(Math.abs(pos / 1500 - 0.5) < 0.05, `share of +1: ${pos / 1500}`);
  const q = new RademacherProjection({ seed: 8, inDim: 50, outDim: 300 });
  assert.notDeepEqual(q.block(10, 5), b, 'another seed gives another matrix');
});

test('project() equals the float64 product to float32 precision, ort and ref byte-identical', async () => {
  const n = 3;
  const ort = new RademacherProjection({ seed: 1, inDim: 2500, outDim: 96 });
  const ref = new RademacherProjection({ seed: 1, inDim: 2500, outDim: 96, backend: 'ref' });
  const x = gaussianRows(n, 2500, 11);
  const a = await ort.project(x, n);
  const b = await ref.project(x, n);
  assert.deepEqual(Buffer.from(a.buffer), Buffer.from(b.buffer));
  const exact = exactProduct(ort, x, n);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - exact[i]!) <= 1e-5 * (1 + Math.abs(exact[i]!)), `entry ${i}: ${a[i]} vs ${exact[i]}`);
});

test('identical bytes under batch splits, aligned streaming blocks and thread counts', async () => {
  const d = 2 * BLOCK_ROWS + 300;
  const n = 4;
  const x = gaussianRows(n, d, 3);
  const whole = await new RademacherProjection({ seed: 5, inDim: d, outDim: 64, threads: 2 }).project(x, n);
  const one = new RademacherProjection({ seed: 5, inDim: d, outDim: 64, threads: 1 });
  // one example at a time
  for (let e = 0; e < n; e++) {
    const y = await one.project(x.subarray(e * d, (e + 1) * d), 1);
    assert.deepEqual(Buffer.from(y.buffer), Buffer.from(whole.slice(e * 64, (e + 1) * 64).buffer), `example ${e}`);
  }
  // streamed in BLOCK_ROWS-aligned parameter blocks, in reverse order
  const acc = new Float64Array(n * 64);
  const starts = [2 * BLOCK_ROWS, 0, BLOCK_ROWS];
  const parts: Float64Array[] = [];
  for (const s of starts) {
    const rows = Math.min(BLOCK_ROWS, d - s);
    const blk = new Float32Array(n * rows);
    for (let e = 0; e < n; e++) blk.set(x.subarray(e * d + s, e * d + s + rows), e * rows);
    const part = new Float64Array(n * 64);
    await one.accumulate(blk, n, s, rows, part);
    parts[s / BLOCK_ROWS] = part;
  }
  // combined in the global block order, as project() does
  for (const part of parts) for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + part[i]!;
  assert.deepEqual(Buffer.from(one.finish(acc).buffer), Buffer.from(whole.buffer));
});

test('JL: norms and cosines preserved at d = 4096, Spearman of pair cosines > 0.99', async () => {
  const inDim = 3000;
  const outDim = 4096;
  const n = 24;
  // rows mixing one shared direction with their own noise in varying shares, so pair cosines spread over (0, 1)
  const base = gaussianRows(1, inDim, 21);
  const noise = gaussianRows(n, inDim, 22);
  const x = new Float32Array(n * inDim);
  for (let e = 0; e < n; e++) {
    const a = (e + 1) / (n + 1);
    for (let i = 0; i < inDim; i++) x[e * inDim + i] = (a * base[i]! + (1 - a) * noise[e * inDim + i]!) * (1 + (e % 3));
  }
  const y = await new RademacherProjection({ seed: 0, inDim, outDim }).project(x, n);
  const dot = (a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, len: number): number => {
    let s = 0;
    for (let i = 0; i < len; i++) s += a[ao + i]! * b[bo + i]!;
    return s;
  };
  const exactCos: number[] = [];
  const projCos: number[] = [];
  for (let a = 0; a < n; a++) {
    const nx = dot(x, a * inDim, x, a * inDim, inDim);
    const ny = dot(y, a * outDim, y, a * outDim, outDim);
    assert.ok(Math.abs(ny / nx - 1) < 5 * Math.sqrt(2 / outDim), `norm ratio ${ny / nx}`);
    for (let b = a + 1; b < n; b++) {
      const cx = dot(x, a * inDim, x, b * inDim, inDim) / Math.sqrt(nx * dot(x, b * inDim, x, b * inDim, inDim));
      const cy = dot(y, a * outDim, y, b * outDim, outDim) / Math.sqrt(ny * dot(y, b * outDim, y, b * outDim, outDim));
      assert.ok(Math.abs(cx - cy) < 0.05, `cosine ${cx} vs ${cy}`);
      exactCos.push(cx);
      projCos.push(cy);
    }
  }
  const rank = (v: number[]): number[] => {
    const idx = v.map((_, i) => i).sort((i, j) => v[i]! - v[j]!);
    const r = new Array<number>(v.length);
    idx.forEach((i, k) => (r[i] = k));
    return r;
  };
  const ra = rank(exactCos);
  const rb = rank(projCos);
  const m = ra.length;
  let d2 = 0;
  for (let i = 0; i < m; i++) d2 += (ra[i]! - rb[i]!) ** 2;
  const spearman = 1 - (6 * d2) / (m * (m * m - 1));
  assert.ok(spearman > 0.99, `Spearman ${spearman}`);
});

test('linear to float32 precision: P(2x − y) = 2Px − Py; zero rows stay zero', async () => {
  const p = new RademacherProjection({ seed: 9, inDim: 1500, outDim: 32 });
  const x = gaussianRows(1, 1500, 1);
  const y = gaussianRows(1, 1500, 2);
  const z = x.map((v, i) => 2 * v - y[i]!);
  const [px, py, pz] = await Promise.all([p.project(x, 1), p.project(y, 1), p.project(z, 1)]);
  for (let j = 0; j < 32; j++) assert.ok(Math.abs(pz[j]! - (2 * px[j]! - py[j]!)) < 1e-4 * (1 + Math.abs(pz[j]!)));
  const zero = await p.project(new Float32Array(1500), 1);
  assert.ok(zero.every((v) => v === 0));
});

test('bad shapes and non-finite inputs name what is wrong', async () => {
  const p = new RademacherProjection({ seed: 0, inDim: 10, outDim: 4 });
  await assert.rejects(p.project(new Float32Array(9), 1), /9 values for 1 rows of 10/);
  await assert.rejects(p.project(Float32Array.from({ length: 10 }, (_, i) => (i === 3 ? NaN : 1)), 1), /non-finite/);
  assert.throws(() => new RademacherProjection({ seed: 0, inDim: 10, outDim: 0 }), (e: Error & { hint?: string }) => /got 0/.test(e.message) && /--proj-dim/.test(e.hint ?? ''));
});
