/**
 * Deterministic, counter-based random numbers (Philox4x32-10, Salmon et al. 2011).
 *
 * Why counter-based: MeZO regenerates the same perturbation z four times per step from a stored seed,
 * and chunked or multi-threaded generation must give the same bytes as a serial loop. With Philox the
 * value at position i of stream (seed) is a pure function of (seed, i): any chunk can be generated on its
 * own. Every random draw in lmtune comes from a named stream built here; nothing uses Math.random.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** One Philox4x32-10 block: counter (c0..c3) under key (k0, k1) → 4 uint32 written into out[o..o+3]. */
export function philox4x32(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array, o: number): void {
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    const n0 = (hi1 ^ c1 ^ k0) >>> 0;
    const n2 = (hi0 ^ c3 ^ k1) >>> 0;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[o] = c0;
  out[o + 1] = c1;
  out[o + 2] = c2;
  out[o + 3] = c3;
}

function mulhi(a: number, b: number): number {
  // High 32 bits of a 32x32 unsigned product, exactly: a·b_lo and a·b_hi are below 2^48, so doubles
  // hold them exactly, and so does ⌊a·b / 2^16⌋ = a·b_hi + ⌊a·b_lo / 2^16⌋ (below 2^49).
  const t = a * (b >>> 16) + Math.floor((a * (b & 0xffff)) / 65536);
  return Math.floor(t / 65536) >>> 0;
}

const INV32 = 1 / 4294967296;
const TWO_PI = 2 * Math.PI;

/** Splits a seed (any non-negative integer below 2^53, or a string) into the two 32-bit key words. */
export function seedKey(seed: number | string): [number, number] {
  if (typeof seed === 'string') {
    // FNV-1a 64 over UTF-16 code units, folded into two words: stable names for streams.
    let h0 = 0x811c9dc5;
    let h1 = 0x01000193;
    for (let i = 0; i < seed.length; i++) {
      h0 = Math.imul(h0 ^ seed.charCodeAt(i), 0x01000193) >>> 0;
      h1 = Math.imul(h1 ^ seed.charCodeAt(i), 0x5bd1e995) >>> 0;
    }
    return [h0, h1];
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`seed must be an integer in [0, 2^53), got ${seed}`);
  }
  return [seed >>> 0, Math.floor(seed / 4294967296) >>> 0];
}

/**
 * Fills out[i] = scale * z_(offset+i) with z standard normal, element i of the stream being a pure
 * function of (seed, stream, offset + i). Uses Box-Muller on one Philox block per pair of outputs.
 */
export function fillGaussian(out: Float32Array | Float64Array, seed: number, stream: number, offset = 0, scale = 1): void {
  const [k0, k1] = seedKey(seed);
  const buf = new Uint32Array(4);
  const n = out.length;
  let i = 0;
  // element j pairs with j^1: block index = floor(j / 2)
  if ((offset & 1) === 1 && n > 0) {
    const [, z1] = gaussPair(Math.floor(offset / 2), stream, k0, k1, buf);
    out[0] = scale * z1;
    i = 1;
  }
  for (; i + 1 < n; i += 2) {
    const block = (offset + i) / 2;
    philox4x32(block >>> 0, Math.floor(block / 4294967296) >>> 0, stream >>> 0, 0x4d455a4f, k0, k1, buf, 0);
    const u1 = (buf[0]! + 0.5) * INV32 + buf[1]! * INV32 * INV32; // (0, 1), 53-bit-ish
    const u2 = buf[2]! * INV32;
    const r = Math.sqrt(-2 * Math.log(u1));
    const t = TWO_PI * u2;
    out[i] = scale * r * Math.cos(t);
    out[i + 1] = scale * r * Math.sin(t);
  }
  if (i < n) {
    const [z0] = gaussPair((offset + i) / 2, stream, k0, k1, buf);
    out[i] = scale * z0;
  }
}

function gaussPair(block: number, stream: number, k0: number, k1: number, buf: Uint32Array): [number, number] {
  philox4x32(block >>> 0, Math.floor(block / 4294967296) >>> 0, stream >>> 0, 0x4d455a4f, k0, k1, buf, 0);
  const u1 = (buf[0]! + 0.5) * INV32 + buf[1]! * INV32 * INV32;
  const u2 = buf[2]! * INV32;
  const r = Math.sqrt(-2 * Math.log(u1));
  const t = TWO_PI * u2;
  return [r * Math.cos(t), r * Math.sin(t)];
}

/**
 * A sequential seeded generator for ordinary draws (data order, init, sampling). Its whole state is
 * (seed, counter), so it can be checkpointed and restored exactly.
 */
export class Rng {
  readonly seed: number;
  private counter: number;
  private readonly k: [number, number];
  private readonly buf = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed: number | string, counter = 0) {
    this.k = seedKey(seed);
    this.seed = typeof seed === 'number' ? seed : this.k[0];
    this.counter = counter;
  }

  /** The state to store in a checkpoint; `Rng.restore` rebuilds the generator exactly. */
  state(): { seed: number; counter: number } {
    if (this.spare !== null) {
      // keep the state a pure counter: drop the cached Gaussian by consuming a fresh block next time
      this.spare = null;
    }
    return { seed: this.seed, counter: this.counter };
  }

  static restore(s: { seed: number; counter: number }): Rng {
    return new Rng(s.seed, s.counter);
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    philox4x32(this.counter >>> 0, Math.floor(this.counter / 4294967296) >>> 0, 0x52474e31, 0, this.k[0], this.k[1], this.buf, 0);
    this.counter++;
    return this.buf[0]!;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  next(): number {
    philox4x32(this.counter >>> 0, Math.floor(this.counter / 4294967296) >>> 0, 0x52474e31, 0, this.k[0], this.k[1], this.buf, 0);
    this.counter++;
    return (this.buf[0]! >>> 5) * 67108864 + (this.buf[1]! >>> 6);
  }

  uniform(): number {
    return this.next() / 9007199254740992;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  normal(): number {
    const u1 = 1 - this.uniform();
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(TWO_PI * u2);
  }

  /** Fisher-Yates permutation of 0..n-1. */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i]!;
      p[i] = p[j]!;
      p[j] = t;
    }
    return p;
  }

  shuffle<T>(xs: readonly T[]): T[] {
    return this.permutation(xs.length).map((i) => xs[i]!);
  }

  /** A derived independent generator, e.g. rng.fork('dropout'). */
  fork(name: string): Rng {
    const [a] = seedKey(`${this.seed}/${this.counter}/${name}`);
    return new Rng(a);
  }
}
