/**
 * The SRHT projection (spec less.md §5 items 1-2 for a structured projection): the fast transform equals
 * the Hadamard matrix product; norms and cosines are preserved within JL tolerances; it is linear; rows
 * projected apart or together give the same bytes; another seed gives another projection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { SrhtProjection, fwht } from './srht.ts';

function popcount(x: number): number {
  let c = 0;
  for (; x; x &= x - 1) c++;
  return c;
}

test('fwht equals the product with the Hadamard matrix H[i][j] = (−1)^popcount(i & j)', () => {
  const rng = new Rng(1);
  const n = 16;
  const x = Float64Array.from({ length: n }, () => rng.normal());
  const want = Array.from({ length: n }, (_, i) => x.reduce((s, v, j) => s + (popcount(i & j) % 2 ? -v : v), 0));
  const a = Float64Array.from(x);
  fwht(a);
  want.forEach((w, i) => assert.ok(Math.abs(a[i]! - w) < 1e-12, `${i}`));
});

test('norms and cosines are preserved (p = 10000, d = 1024), linearity, determinism', async () => {
  const rng = new Rng(2);
  const p = 10000;
  const d = 1024;
  const P = new SrhtProjection({ seed: 0, inDim: p, outDim: d });
  const n = 40;
  // pairs with known cosines: y = c·x + √(1−c²)·z
  const x = new Float64Array(n * p);
  for (let r = 0; r < n; r += 2) {
    const c = r / n;
    for (let i = 0; i < p; i++) {
      const a = rng.normal();
      x[r * p + i] = a;
      x[(r + 1) * p + i] = c * a + Math.sqrt(1 - c * c) * rng.normal();
    }
  }
  const y = await P.project(x, n);
  const dot = (v: ArrayLike<number>, o1: number, o2: number, len: number): number => {
    let s = 0;
    for (let i = 0; i < len; i++) s += v[o1 + i]! * v[o2 + i]!;
    return s;
  };
  for (let r = 0; r < n; r += 2) {
    const ratio = dot(y, r * d, r * d, d) / dot(x, r * p, r * p, p);
    assert.ok(Math.abs(ratio - 1) < 4 * Math.sqrt(2 / d), `norm ratio ${ratio}`);
    const cx = dot(x, r * p, (r + 1) * p, p) / Math.sqrt(dot(x, r * p, r * p, p) * dot(x, (r + 1) * p, (r + 1) * p, p));
    const cy = dot(y, r * d, (r + 1) * d, d) / Math.sqrt(dot(y, r * d, r * d, d) * dot(y, (r + 1) * d, (r + 1) * d, d));
    assert.ok(Math.abs(cx - cy) < 0.1, `cosine ${cx} → ${cy}`);
  }
  // linearity: P(2a − 3b) = 2Pa − 3Pb
  const comb = new Float64Array(p);
  for (let i = 0; i < p; i++) comb[i] = 2 * x[i]! - 3 * x[p + i]!;
  const pc = await P.project(comb, 1);
  for (let j = 0; j < d; j++) assert.ok(Math.abs(pc[j]! - (2 * y[j]! - 3 * y[d + j]!)) < 1e-4 * (1 + Math.abs(pc[j]!)));
  // one row at a time gives the same bytes as all rows together
  const rows = await Promise.all(Array.from({ length: 4 }, (_, r) => P.project(x.subarray(r * p, (r + 1) * p), 1)));
  assert.ok(Buffer.concat(rows.map((q) => Buffer.from(q.buffer))).equals(Buffer.from(y.buffer, 0, 4 * d * 4)));
  const other = await new SrhtProjection({ seed: 1, inDim: p, outDim: d }).project(x.subarray(0, p), 1);
  assert.ok(!Buffer.from(other.buffer).equals(Buffer.from(y.buffer, 0, d * 4)));
  assert.throws(() => new SrhtProjection({ seed: 0, inDim: 10, outDim: 17 }), /must be in \[1, 16\]/);
});
