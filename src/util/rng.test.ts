import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fillGaussian, philox4x32, Rng } from './rng.ts';

test('philox4x32-10 matches the Random123 known-answer vectors', () => {
  // Random123 kat_vectors: philox4x32 10 rounds
  const out = new Uint32Array(4);
  philox4x32(0, 0, 0, 0, 0, 0, out, 0);
  assert.deepEqual([...out].map((x) => x.toString(16).padStart(8, '0')), ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
  philox4x32(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, out, 0);
  assert.deepEqual([...out].map((x) => x.toString(16).padStart(8, '0')), ['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
  philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, out, 0);
  assert.deepEqual([...out].map((x) => x.toString(16).padStart(8, '0')), ['d16cfe09', '94fdcceb', '5001e420', '24126ea1']);
});

test('gaussian stream: any chunking gives the same values, moments are right', () => {
  const n = 200001;
  const whole = new Float64Array(n);
  fillGaussian(whole, 1234, 7);
  const parts = new Float64Array(n);
  let off = 0;
  for (const len of [1, 2, 3, 1000, 77, 5, n]) {
    const m = Math.min(len, n - off);
    if (m <= 0) break;
    const chunk = new Float64Array(m);
    fillGaussian(chunk, 1234, 7, off);
    parts.set(chunk, off);
    off += m;
  }
  assert.deepEqual(parts, whole);
  let s = 0;
  let s2 = 0;
  for (const z of whole) {
    s += z;
    s2 += z * z;
  }
  const mean = s / n;
  const v = s2 / n - mean * mean;
  assert.ok(Math.abs(mean) < 4 / Math.sqrt(n), `mean ${mean}`);
  assert.ok(Math.abs(v - 1) < 4 * Math.sqrt(2 / n), `var ${v}`);
  const other = new Float64Array(10);
  fillGaussian(other, 1234, 8);
  assert.notDeepEqual(other, whole.subarray(0, 10));
});

test('Rng state round-trips exactly', () => {
  const a = new Rng(42);
  for (let i = 0; i < 10; i++) a.uniform();
  const b = Rng.restore(a.state());
  assert.deepEqual(Array.from({ length: 5 }, () => a.uniform()), Array.from({ length: 5 }, () => b.uniform()));
  const p = new Rng(1).permutation(50);
  assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
});
