import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { fillGaussian } from '../util/rng.ts';
import { __test } from './safetensors.ts';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../node/safetensors-file.ts';

const TINY = '/work/shared/data/models/tiny-random-gpt2/model.safetensors';
const ROOT = mkdtempSync(join(tmpdir(), 'lmtune-st-'));
after(() => rmSync(ROOT, { recursive: true, force: true }));
const tmp = (): string => mkdtempSync(join(ROOT, 'd-'));

/** A safetensors file assembled by hand from the spec: u64 LE header length, JSON, raw bytes. */
function handMade(header: Record<string, unknown>, data: Buffer, pad = true): Buffer {
  let json = JSON.stringify(header);
  if (pad) while (Buffer.byteLength(json) % 8) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), data]);
}

function expectCheckpointError(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LmtuneError, `expected LmtuneError, got ${String(e)}`);
    assert.equal(e.code, 'CHECKPOINT');
    for (const p of parts) {
      if (typeof p === 'string') assert.ok(e.message.includes(p), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
      else assert.match(e.message, p);
    }
    return true;
  });
}

test('real HF file: header facts match the MANIFEST and values match an independent byte decode', () => {
  const h = readSafetensorsHeader(TINY);
  // MANIFEST: header 5984 bytes, 64 tensors, 111,968 parameters, metadata {"format": "pt"}
  assert.equal(h.headerBytes, 5984);
  assert.equal(h.tensors.size, 64);
  assert.deepEqual(h.metadata, { format: 'pt' });
  let n = 0;
  for (const t of h.tensors.values()) n += t.shape.reduce((a, b) => a * b, 1);
  assert.equal(n, 111968);
  const { tensors } = readSafetensors(TINY);
  const raw = readFileSync(TINY);
  const info = h.tensors.get('transformer.h.0.attn.c_attn.weight')!;
  assert.deepEqual(info.shape, [32, 96]);
  const t = tensors.get('transformer.h.0.attn.c_attn.weight')!;
  for (const i of [0, 1, 777, 32 * 96 - 1]) assert.equal(t.data[i], raw.readFloatLE(info.begin + 4 * i));
});

test('writer produces the byte layout the spec defines', () => {
  const dir = tmp();
  const p = join(dir, 'a.safetensors');
  writeSafetensors(p, [['a', { shape: [2], data: new Float32Array([1, -2]) }]], { format: 'pt' });
  const json = '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';
  const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(padded.length));
  // 1.0f = 0x3f800000, -2.0f = 0xc0000000, little-endian
  const want = Buffer.concat([len, Buffer.from(padded), Buffer.from([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0])]);
  assert.deepEqual(readFileSync(p), want);
  assert.equal(padded.length % 8, 0);
});

test('writing the same tensors twice gives identical bytes; reading gives the values back', () => {
  const dir = tmp();
  const a = new Float32Array(1000);
  fillGaussian(a, 11, 0);
  const b = new Float32Array(6);
  fillGaussian(b, 11, 1);
  const ts: [string, { shape: number[]; data: Float32Array }][] = [['w', { shape: [10, 100], data: a }], ['b', { shape: [2, 3], data: b }]];
  writeSafetensors(join(dir, '1.safetensors'), ts);
  writeSafetensors(join(dir, '2.safetensors'), ts);
  assert.deepEqual(readFileSync(join(dir, '1.safetensors')), readFileSync(join(dir, '2.safetensors')));
  const back = readSafetensors(join(dir, '1.safetensors')).tensors;
  assert.deepEqual([...back.keys()], ['w', 'b']);
  assert.deepEqual(back.get('w')!.data, a);
  assert.deepEqual(back.get('b')!.shape, [2, 3]);
});

test('F16, BF16, F64 and I64 decode to the values their bit patterns denote', () => {
  const f16 = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000, 0x3555, 0x0400];
  const f16Want = [1, -2, 65504, 2 ** -24, Infinity, -0, 2 ** -2 * (1 + 0x155 / 1024), 2 ** -14];
  const bf16 = [0x3f80, 0x4049, 0xc2f7, 0x0000];
  const bf16Want = [1, 3.140625, -123.5, 0];
  const data = Buffer.alloc(f16.length * 2 + bf16.length * 2 + 16 + 16);
  let o = 0;
  for (const h of f16) o = data.writeUInt16LE(h, o);
  for (const h of bf16) o = data.writeUInt16LE(h, o);
  o = data.writeDoubleLE(0.1, o);
  o = data.writeDoubleLE(-1e300, o);
  o = data.writeBigInt64LE(-5n, o);
  data.writeBigInt64LE(1n << 40n, o);
  const s1 = f16.length * 2;
  const s2 = s1 + bf16.length * 2;
  const file = handMade(
    {
      h: { dtype: 'F16', shape: [f16.length], data_offsets: [0, s1] },
      b: { dtype: 'BF16', shape: [2, 2], data_offsets: [s1, s2] },
      d: { dtype: 'F64', shape: [2], data_offsets: [s2, s2 + 16] },
      i: { dtype: 'I64', shape: [2], data_offsets: [s2 + 16, s2 + 32] },
    },
    data,
  );
  const p = join(tmp(), 'x.safetensors');
  writeFileSync(p, file);
  const t = readSafetensors(p).tensors;
  assert.deepEqual([...t.get('h')!.data], f16Want);
  assert.ok(Object.is(t.get('h')!.data[5], -0));
  assert.deepEqual([...t.get('b')!.data], bf16Want);
  assert.equal(t.get('b')!.dtype, 'BF16');
  assert.deepEqual([...t.get('d')!.data], [Math.fround(0.1), -Infinity]);
  assert.deepEqual([...t.get('i')!.data], [-5, 2 ** 40]);
});

test('f32 → f16 rounds to nearest even, as numpy does', () => {
  const bitsOf = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0];
  const { floatToHalf, halfToFloat } = __test;
  const cases: [number, number][] = [
    [1 / 3, 0x3555], // 0.333251953125 is the nearest f16
    [65519, 0x7bff], // below the halfway point to 65536: stays at max
    [65520, 0x7c00], // halfway to 65536 rounds to even → Inf
    [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal: ties to even (0)
    [3 * 2 ** -26, 0x0001],
    [1 + 2 ** -11, 0x3c00], // tie → even mantissa 0
    [1 + 3 * 2 ** -11, 0x3c02], // tie between mantissa 1 and 2 → 2
    [-0, 0x8000],
    [Infinity, 0x7c00],
  ];
  for (const [x, h] of cases) assert.equal(floatToHalf(bitsOf(x)), h, `f16(${x})`);
  // every finite f16 survives f16 → f32 → f16
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) continue; // NaN payloads
    assert.equal(floatToHalf(bitsOf(halfToFloat(h))), h);
  }
});

test('F16 and BF16 writing round-trips through reading; BF16 rounds to nearest even', () => {
  const p = join(tmp(), 'h.safetensors');
  const x = new Float32Array([1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 0.1]);
  writeSafetensors(p, [
    ['h', { shape: [5], data: x, dtype: 'F16' }],
    ['b', { shape: [5], data: x, dtype: 'BF16' }],
  ]);
  const t = readSafetensors(p).tensors;
  // f16 keeps 10 mantissa bits, so 1+2^-8 and 1+3·2^-8 are exact; 0.1 becomes 0.0999755859375
  assert.deepEqual([...t.get('h')!.data], [1, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 0.0999755859375]);
  // bf16 keeps 7 mantissa bits: 1+2^-8 is a tie (→ 1), 1+3·2^-8 a tie between 1+2^-7 and 1+2^-6 (→ even)
  assert.deepEqual([...t.get('b')!.data], [1, -2.5, 1, 1 + 2 ** -6, 0.10009765625]);
  assert.equal(t.get('b')!.dtype, 'BF16');
});

test('corrupted and inconsistent files fail with a CHECKPOINT error naming the file and tensor', () => {
  const dir = tmp();
  const good = readFileSync(TINY);
  const put = (name: string, bytes: Buffer): string => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };
  // truncated: the last tensor's bytes are cut off
  const trunc = put('trunc.safetensors', good.subarray(0, good.length - 100));
  expectCheckpointError(() => readSafetensors(trunc), trunc, /run past the end|cover/);
  // header garbage
  const garbled = Buffer.from(good);
  garbled.write('#', 8 + 1); // the first key's opening quote
  const g = put('garbled.safetensors', garbled);
  expectCheckpointError(() => readSafetensorsHeader(g), g, 'not valid JSON');
  // header length larger than the file
  const huge = Buffer.from(good);
  huge.writeBigUInt64LE(BigInt(good.length), 0);
  const hp = put('huge.safetensors', huge);
  expectCheckpointError(() => readSafetensorsHeader(hp), hp, 'runs past the end');
  // too short for the length prefix
  const tiny = put('tiny.safetensors', Buffer.from([1, 2, 3]));
  expectCheckpointError(() => readSafetensorsHeader(tiny), 'shorter than the 8-byte');
  // shape × dtype disagrees with the offsets
  const shape = put('shape.safetensors', handMade({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8)));
  expectCheckpointError(() => readSafetensorsHeader(shape), "tensor 'w'", 'needs 12 bytes', '[0, 8]');
  // overlapping tensors
  const over = put(
    'over.safetensors',
    handMade({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, Buffer.alloc(8)),
  );
  expectCheckpointError(() => readSafetensorsHeader(over), "tensor 'b'", 'overlaps');
  // a gap between tensors
  const gap = put(
    'gap.safetensors',
    handMade({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, Buffer.alloc(12)),
  );
  expectCheckpointError(() => readSafetensorsHeader(gap), "tensor 'b'", 'gap of 4 bytes');
  // trailing bytes nobody owns
  const tail = put('tail.safetensors', handMade({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(12)));
  expectCheckpointError(() => readSafetensorsHeader(tail), 'cover 4 bytes', 'holds 12');
  // unknown dtype, bad offsets type
  const dt = put('dtype.safetensors', handMade({ a: { dtype: 'F17', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(4)));
  expectCheckpointError(() => readSafetensorsHeader(dt), "tensor 'a'", 'unknown dtype "F17"');
  const off = put('off.safetensors', handMade({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, Buffer.alloc(4)));
  expectCheckpointError(() => readSafetensorsHeader(off), "tensor 'a'", 'begin <= end');
  expectCheckpointError(() => readSafetensorsHeader(join(dir, 'absent.safetensors')), 'absent.safetensors', 'cannot open');
});
