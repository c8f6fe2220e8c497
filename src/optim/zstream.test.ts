/**
 * The perturbation stream: an independent, plainly written re-implementation of the construction
 * documented in zstream.ts must reproduce it bit for bit; the Gaussian is checked against N(0, 1)
 * (moments, Kolmogorov–Smirnov, tail frequencies, all within stated sampling error); any chunking gives
 * the same values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { philox4x32, seedKey } from '../util/rng.ts';
import { fillZ, gaussianTile, mezoStepSeed, rademacherTile, spsaSampleSeed, TILE, ZIG_X } from './zstream.ts';

// ---------- reference implementation (unsigned arithmetic, no inlining, recomputed tables) ----------
function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
function mul32(a: number, b: number): number {
  return Number((BigInt(a) * BigInt(b)) & 0xffffffffn);
}
class Xoshiro128ss {
  s: number[];
  constructor(s: number[]) {
    this.s = s.map((v) => v >>> 0);
  }
  next(): number {
    const s = this.s;
    const result = mul32(rotl(mul32(s[1]!, 5), 7), 9);
    const t = (s[1]! << 9) >>> 0;
    s[2] = (s[2]! ^ s[0]!) >>> 0;
    s[3] = (s[3]! ^ s[1]!) >>> 0;
    s[1] = (s[1]! ^ s[2]!) >>> 0;
    s[0] = (s[0]! ^ s[3]!) >>> 0;
    s[2] = (s[2]! ^ t) >>> 0;
    s[3] = rotl(s[3]!, 11);
    return result;
  }
}

const TAG_GAUSSIAN = 0x5a4e4f52;
const TAG_RADEMACHER = 0x5a524144;
const R = 3.6541528853610088;
const V = 0.00492867323399;
const f = (x: number): number => Math.exp(-0.5 * x * x);
const X: number[] = [V / f(R), R];
for (let i = 1; i < 255; i++) X.push(Math.sqrt(-2 * Math.log(V / X[i]! + f(X[i]!))));
X.push(0);

function tileGenerator(seed: number, stream: number, tile: number, tag: number): Xoshiro128ss {
  const [k0, k1] = seedKey(seed);
  const out = new Uint32Array(4);
  philox4x32(tile, 0, stream, tag, k0, k1, out, 0);
  return new Xoshiro128ss([...out]);
}

function referenceGaussianTile(seed: number, stream: number, tile: number): number[] {
  const g = tileGenerator(seed, stream, tile, TAG_GAUSSIAN);
  const signed = (w: number): number => (w | 0) >> 8; // top 24 bits as a signed integer
  const out: number[] = [];
  for (let i = 0; i < TILE; i++) {
    for (;;) {
      const w = g.next();
      const layer = w & 255;
      const x = (signed(w) + 0.5) * 2 ** -23 * X[layer]!;
      if (Math.abs(x) < X[layer + 1]!) {
        out.push(x);
        break;
      }
      if (layer === 0) {
        let a: number;
        let b: number;
        do {
          a = -Math.log((g.next() + 0.5) * 2 ** -32) / R;
          b = -Math.log((g.next() + 0.5) * 2 ** -32);
        } while (b + b < a * a);
        out.push(x < 0 ? -(R + a) : R + a);
        break;
      }
      const y = f(X[layer]!) + (g.next() + 0.5) * 2 ** -32 * (f(X[layer + 1]!) - f(X[layer]!));
      if (y < f(x)) {
        out.push(x);
        break;
      }
      // rejected: a fresh word (the loop's next iteration)
    }
  }
  return out;
}

// erfc with fractional error < 1.2e-7 (Numerical Recipes, erfcc)
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? r : 2 - r;
}
const Phi = (x: number): number => 0.5 * erfc(-x / Math.SQRT2);

// ---------------------------------------------------------------------------------------------------

test('xoshiro128** reference: first outputs from state (1,2,3,4) are 11520, 0, 5927040 (derived by hand)', () => {
  const g = new Xoshiro128ss([1, 2, 3, 4]);
  assert.deepEqual([g.next(), g.next(), g.next()], [11520, 0, 5927040]);
});

test('ziggurat constants: every layer has area v, including the base strip with its tail', () => {
  assert.ok(Math.abs(X[255]! * (1 - f(X[255]!)) - V) < 1e-8 * V, 'top layer');
  const base = R * f(R) + Math.sqrt(Math.PI / 2) * erfc(R / Math.SQRT2);
  assert.ok(Math.abs(base - V) < 1e-6 * V, `base strip + tail = ${base}, v = ${V}`);
  X.forEach((x, i) => assert.equal(ZIG_X[i], x, `X[${i}]`));
});

test('gaussianTile equals the plain re-implementation bit for bit (slow path and tail included)', () => {
  const got = new Float64Array(TILE);
  let tails = 0;
  for (const seed of [0, 1, 2 ** 40 + 17]) {
    for (let tile = 0; tile < 80; tile++) {
      const stream = tile % 5;
      const [k0, k1] = seedKey(seed);
      gaussianTile(k0, k1, stream, tile, got, 0, TILE);
      const want = referenceGaussianTile(seed, stream, tile);
      for (let i = 0; i < TILE; i++) {
        assert.ok(Object.is(got[i], want[i]), `seed ${seed} tile ${tile} [${i}]: ${got[i]} vs ${want[i]}`);
        if (Math.abs(want[i]!) > R) tails++;
      }
    }
  }
  // 240 tiles × 256 values: ~1.5% take the rejection path, ~2.6e-4 the tail (≈ 16 expected)
  assert.ok(tails > 0, 'no tail sample exercised; enlarge the test');
});

test('rademacherTile: bit j of word ⌊j/32⌋, 1 → −1, from the Rademacher-tagged tile stream', () => {
  const got = new Float64Array(TILE);
  const [k0, k1] = seedKey(99);
  rademacherTile(k0, k1, 3, 7, got, 0, TILE);
  const g = tileGenerator(99, 3, 7, TAG_RADEMACHER);
  for (let w = 0; w < TILE / 32; w++) {
    const word = g.next();
    for (let b = 0; b < 32; b++) assert.equal(got[w * 32 + b], (word >>> b) & 1 ? -1 : 1);
  }
});

test('any chunking of fillZ gives the same stream; tiles, streams and seeds are distinct', () => {
  const n = 3000;
  for (const dist of ['gaussian', 'rademacher'] as const) {
    const whole = new Float64Array(n);
    fillZ(whole, 42, 3, 0, dist);
    const parts = new Float64Array(n);
    let off = 0;
    for (const len of [1, 255, 2, 300, 513, 1000, n]) {
      const m = Math.min(len, n - off);
      if (m <= 0) break;
      const chunk = new Float64Array(m);
      fillZ(chunk, 42, 3, off, dist);
      parts.set(chunk, off);
      off += m;
    }
    assert.deepEqual(parts, whole);
  }
  const a = new Float64Array(1 << 16);
  const b = new Float64Array(1 << 16);
  const c = new Float64Array(1 << 16);
  fillZ(a, 42, 3);
  fillZ(b, 42, 4);
  fillZ(c, 43, 3);
  const corr = (u: Float64Array, v: Float64Array): number => u.reduce((s, x, i) => s + x * v[i]!, 0) / u.length;
  // correlation of independent N(0,1) pairs has standard error 1/√n ≈ 0.0039
  assert.ok(Math.abs(corr(a, b)) < 4 / Math.sqrt(a.length), `streams 3/4 correlate: ${corr(a, b)}`);
  assert.ok(Math.abs(corr(a, c)) < 4 / Math.sqrt(a.length), `seeds 42/43 correlate: ${corr(a, c)}`);
  // consecutive tiles of one stream
  assert.ok(Math.abs(corr(a.subarray(0, 1 << 15), a.subarray(1 << 15))) < 4 / Math.sqrt(1 << 15));
});

test('Gaussian z: mean, variance, kurtosis, KS distance and tail frequencies match N(0,1) within 4 standard errors', () => {
  const n = 1 << 20;
  const z = new Float64Array(n);
  fillZ(z, 2024, 0);
  let s1 = 0;
  let s2 = 0;
  let s4 = 0;
  let beyondR = 0;
  let beyond4 = 0;
  for (const v of z) {
    s1 += v;
    s2 += v * v;
    s4 += v ** 4;
    if (Math.abs(v) > R) beyondR++;
    if (Math.abs(v) > 4) beyond4++;
  }
  assert.ok(Math.abs(s1 / n) < 4 / Math.sqrt(n), `mean ${s1 / n}`);
  assert.ok(Math.abs(s2 / n - 1) < 4 * Math.sqrt(2 / n), `variance ${s2 / n}`);
  assert.ok(Math.abs(s4 / n - 3) < 4 * Math.sqrt(96 / n), `E z^4 ${s4 / n}`);
  const binom = (count: number, p: number): void => assert.ok(Math.abs(count - n * p) < 4 * Math.sqrt(n * p * (1 - p)), `count ${count}, expected ${n * p}`);
  binom(beyondR, erfc(R / Math.SQRT2));
  binom(beyond4, erfc(4 / Math.SQRT2));
  const sorted = Float64Array.from(z).sort();
  let d = 0;
  for (let i = 0; i < n; i += 7) {
    const F = Phi(sorted[i]!);
    d = Math.max(d, Math.abs(F - i / n), Math.abs(F - (i + 1) / n));
  }
  // KS critical value at level 0.001: 1.95/√n
  assert.ok(d < 1.95 / Math.sqrt(n), `KS distance ${d}`);
});

test('Rademacher z is ±1 with mean 0 within 4 standard errors', () => {
  const n = 1 << 18;
  const z = new Float64Array(n);
  fillZ(z, 5, 1, 0, 'rademacher');
  let s = 0;
  for (const v of z) {
    assert.ok(v === 1 || v === -1);
    s += v;
  }
  assert.ok(Math.abs(s / n) < 4 / Math.sqrt(n));
});

test('seed derivation: sample 0 keeps the step seed, others and step seeds are distinct 53-bit integers', () => {
  assert.equal(spsaSampleSeed(12345, 0), 12345);
  const seen = new Set<number>();
  for (let j = 1; j < 50; j++) seen.add(spsaSampleSeed(12345, j));
  for (let t = 0; t < 50; t++) seen.add(mezoStepSeed(7, t));
  assert.equal(seen.size, 49 + 50);
  for (const s of seen) assert.ok(Number.isSafeInteger(s) && s >= 0);
  assert.equal(mezoStepSeed(7, 3), mezoStepSeed(7, 3));
  assert.notEqual(mezoStepSeed(7, 3), mezoStepSeed(8, 3));
});
