/**
 * The safetensors file format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64
 * header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`,
 * then the raw little-endian tensor bytes; offsets are relative to the end of the header.
 *
 * Reading never loads the whole file into one buffer: the header is read first and validated the way
 * the reference (Rust) implementation validates it, then each tensor is read with a positioned read into
 * its own Float32Array. Writing streams header and tensors into a sink (src/node/safetensors-file.ts
 * makes it a temp file renamed into place, so a crash never leaves a half-written checkpoint and a
 * multi-GB file never sits in memory twice). Files come through the `Folder` interface: no paths here.
 */
import { LmtuneError } from '../util/errors.ts';
import { MemorySink, type ByteSink, type Folder } from '../util/folder.ts';
import { duplicateKey } from '../util/json-dupes.ts';

/** Bytes per element of every dtype the format defines. */
const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** dtypes lmtune can write; everything is computed in f32, so these are the useful storage formats. */
export type WritableDtype = 'F32' | 'F16' | 'BF16';

/** The reference implementation refuses headers above 100 MB; a larger length means a corrupted file. */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: string;
  shape: number[];
  /** absolute byte offsets in the file (header included), [begin, end) */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  path: string;
  /** the JSON header's length N as stored in the first 8 bytes */
  headerBytes: number;
  /** tensors in header order */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  fileBytes: number;
}

export interface LoadedTensor {
  shape: number[];
  data: Float32Array;
  /** the dtype stored in the file (the data is always converted to f32) */
  dtype: string;
}

export interface TensorToWrite {
  shape: readonly number[];
  data: Float32Array;
  /** storage dtype; F32 unless given (I64: integer data such as labels, stored exactly) */
  dtype?: WritableDtype | 'I64';
}

function bad(path: string, what: string): never {
  throw new LmtuneError(
    'CHECKPOINT',
    `${path}: ${what}`,
    'the file is corrupted or truncated; re-download or re-save it (python: safetensors.torch.save_file)',
  );
}

function isLittleEndianHost(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

function readFully(folder: Folder, name: string, target: Uint8Array, position: number, what: string): void {
  try {
    folder.readInto(name, position, target);
  } catch (e) {
    bad(folder.path(name), `unexpected end of file while reading ${what} (${(e as Error).message})`);
  }
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function parseHeaderJson(path: string, bytes: Uint8Array, fileBytes: number, headerBytes: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    bad(path, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) bad(path, 'header does not start with "{" (not a safetensors file?)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    bad(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) bad(path, 'header is not a JSON object');
  const dup = duplicateKey(text);
  if (dup) bad(path, `header lists ${dup.path.length > 0 ? `key "${dup.key}" of tensor '${dup.path[0]}'` : `tensor '${dup.key}'`} twice`);
  const dataStart = 8 + headerBytes;
  const dataBytes = fileBytes - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!raw || typeof raw !== 'object' || Array.isArray(raw)) bad(path, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') bad(path, `__metadata__.${k} is not a string`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    if (!raw || typeof raw !== 'object') bad(path, `tensor '${name}': header entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      bad(path, `tensor '${name}': unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) bad(path, `tensor '${name}': shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) || offsets[0] > offsets[1]) {
      bad(path, `tensor '${name}': data_offsets ${JSON.stringify(offsets)} is not [begin, end] with begin <= end`);
    }
    const [b, e] = offsets as [number, number];
    if (e > dataBytes) bad(path, `tensor '${name}': data_offsets [${b}, ${e}] run past the end of the data (${dataBytes} bytes after the header)`);
    const elements = (shape as number[]).reduce((p, d) => p * d, 1);
    const want = elements * DTYPE_BYTES[dtype];
    if (want !== e - b) {
      bad(path, `tensor '${name}': shape [${(shape as number[]).join(', ')}] × ${dtype} needs ${want} bytes but data_offsets [${b}, ${e}] hold ${e - b}`);
    }
    tensors.set(name, { dtype, shape: [...(shape as number[])], begin: dataStart + b, end: dataStart + e });
  }
  // The tensors must tile the data region exactly: no gaps, no overlaps, nothing left over.
  const spans = [...tensors.entries()].sort((x, y) => x[1].begin - y[1].begin || x[1].end - y[1].end);
  let cursor = dataStart;
  for (const [name, t] of spans) {
    if (t.begin !== cursor) {
      const what = t.begin < cursor ? 'overlaps the previous tensor' : `leaves a gap of ${t.begin - cursor} bytes before it`;
      bad(path, `tensor '${name}': data_offsets [${t.begin - dataStart}, ${t.end - dataStart}] ${what}`);
    }
    cursor = t.end;
  }
  if (cursor !== fileBytes) bad(path, `the tensors cover ${cursor - dataStart} bytes of data but the file holds ${dataBytes} after the header`);
  return { path, headerBytes, tensors, metadata, fileBytes };
}

function readHeader(folder: Folder, name: string): SafetensorsHeader {
  const path = folder.path(name);
  const fileBytes = folder.size(name);
  if (fileBytes < 8) bad(path, `file is ${fileBytes} bytes, shorter than the 8-byte header length`);
  const lenBuf = new Uint8Array(8);
  readFully(folder, name, lenBuf, 0, 'the header length');
  const len = new DataView(lenBuf.buffer).getBigUint64(0, true);
  if (len > BigInt(MAX_HEADER_BYTES)) bad(path, `header length ${len} is implausibly large (over ${MAX_HEADER_BYTES} bytes)`);
  const headerBytes = Number(len);
  if (8 + headerBytes > fileBytes) bad(path, `header length ${headerBytes} runs past the end of the ${fileBytes}-byte file`);
  const hdr = new Uint8Array(headerBytes);
  readFully(folder, name, hdr, 8, 'the header');
  return parseHeaderJson(path, hdr, fileBytes, headerBytes);
}

/** Reads and validates the header only (cheap for any file size). */
export function parseSafetensorsHeader(folder: Folder, name: string): SafetensorsHeader {
  if (!folder.exists(name)) throw new LmtuneError('CHECKPOINT', `${folder.path(name)}: cannot open (ENOENT)`);
  return readHeader(folder, name);
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24; // subnormal (and ±0)
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** All 65536 f16 values, built once: converting a table lookup per element is ~10x faster than bit math. */
let HALF_TABLE: Float32Array | null = null;
export function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) HALF_TABLE[i] = halfToFloat(i);
  }
  return HALF_TABLE;
}

/** Converts `raw` (little-endian bytes of `dtype`, read into a fresh aligned buffer) into f32. */
function toFloat32(raw: Uint8Array, dtype: string, n: number, path: string, name: string): Float32Array {
  const buf = raw.buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf, raw.byteOffset, n);
    case 'F16': {
      const src = new Uint16Array(buf, raw.byteOffset, n);
      const out = new Float32Array(n);
      const t = halfTable();
      for (let i = 0; i < n; i++) out[i] = t[src[i]];
      return out;
    }
    case 'BF16': {
      // bf16 is the top half of an f32: shift into place and reinterpret
      const src = new Uint16Array(buf, raw.byteOffset, n);
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      return new Float32Array(bits.buffer);
    }
    case 'F64':
      return Float32Array.from(new Float64Array(buf, raw.byteOffset, n));
    case 'I64':
      return Float32Array.from(new BigInt64Array(buf, raw.byteOffset, n), (v) => Number(v));
    case 'U64':
      return Float32Array.from(new BigUint64Array(buf, raw.byteOffset, n), (v) => Number(v));
    case 'I32':
      return Float32Array.from(new Int32Array(buf, raw.byteOffset, n));
    case 'U32':
      return Float32Array.from(new Uint32Array(buf, raw.byteOffset, n));
    case 'I16':
      return Float32Array.from(new Int16Array(buf, raw.byteOffset, n));
    case 'U16':
      return Float32Array.from(new Uint16Array(buf, raw.byteOffset, n));
    case 'I8':
      return Float32Array.from(new Int8Array(buf, raw.byteOffset, n));
    case 'U8':
    case 'BOOL':
      return Float32Array.from(raw.subarray(0, n));
    default:
      throw new LmtuneError('UNSUPPORTED', `${path}: tensor '${name}' has dtype ${dtype}, which lmtune cannot convert to f32`, 'convert the checkpoint to F32, F16 or BF16');
  }
}

function readTensor(folder: Folder, file: string, header: SafetensorsHeader, name: string): LoadedTensor {
  const info = header.tensors.get(name);
  if (!info) throw new LmtuneError('CHECKPOINT', `${header.path}: no tensor named '${name}'`);
  const n = info.shape.reduce((p, d) => p * d, 1);
  const bytes = info.end - info.begin;
  // Reading straight into a fresh buffer makes F32 loading zero-copy; offset 0 of a new ArrayBuffer is
  // aligned for every element type, so every dtype can be viewed in place.
  const raw = new Uint8Array(new ArrayBuffer(bytes));
  readFully(folder, file, raw, info.begin, `tensor '${name}'`);
  return { shape: [...info.shape], dtype: info.dtype, data: toFloat32(raw, info.dtype, n, header.path, name) };
}

/** Reads every tensor of a file (each into its own Float32Array), in header order. */
export function parseSafetensors(folder: Folder, file: string, only?: ReadonlySet<string>): { header: SafetensorsHeader; tensors: Map<string, LoadedTensor> } {
  if (!isLittleEndianHost()) throw new LmtuneError('UNSUPPORTED', 'safetensors reading needs a little-endian host');
  const header = parseSafetensorsHeader(folder, file);
  const tensors = new Map<string, LoadedTensor>();
  for (const name of header.tensors.keys()) {
    if (only && !only.has(name)) continue;
    tensors.set(name, readTensor(folder, file, header, name));
  }
  return { header, tensors };
}

// Paths: readSafetensors / readSafetensorsHeader / writeSafetensors (atomic) are in src/node/safetensors-file.ts.

/** f32 → f16 bits with round-to-nearest-even, the rounding numpy and torch use. */
export function floatToHalf(bitsOfF32: number): number {
  const sign = (bitsOfF32 >>> 16) & 0x8000;
  const exp = (bitsOfF32 >>> 23) & 0xff;
  let mant = bitsOfF32 & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN (quiet)
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00; // overflow → Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0
    mant |= 0x800000; // implicit leading 1
    const shift = 14 - e;
    const halfMant = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const up = rem > halfway || (rem === halfway && (halfMant & 1) === 1) ? 1 : 0;
    return sign | (halfMant + up);
  }
  const halfMant = mant >>> 13;
  const rem = mant & 0x1fff;
  const up = rem > 0x1000 || (rem === 0x1000 && (halfMant & 1) === 1) ? 1 : 0;
  // a carry out of the mantissa correctly bumps the exponent (and turns 65520+ into Inf)
  return (sign | (e << 10) | halfMant) + up;
}

function encodeTensor(t: TensorToWrite, dtype: WritableDtype | 'I64'): Uint8Array {
  const n = t.data.length;
  // writes are synchronous, so F32 data is written straight from the caller's memory, without a copy
  if (dtype === 'F32') return new Uint8Array(t.data.buffer, t.data.byteOffset, n * 4);
  if (dtype === 'I64') {
    const ints = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      if (!Number.isInteger(t.data[i])) throw new LmtuneError('CHECKPOINT', `an I64 tensor holds the non-integer ${t.data[i]} at index ${i}`);
      ints[i] = BigInt(t.data[i]!);
    }
    return new Uint8Array(ints.buffer);
  }
  const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, n);
  const out = new Uint16Array(n);
  if (dtype === 'F16') {
    for (let i = 0; i < n; i++) out[i] = floatToHalf(bits[i]);
  } else {
    for (let i = 0; i < n; i++) {
      const b = bits[i];
      if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) {
        out[i] = (b >>> 16) | 0x40; // keep NaN a (quiet) NaN
      } else {
        out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // round to nearest even
      }
    }
  }
  return new Uint8Array(out.buffer);
}

/**
 * Streams tensors in the given order with the standard layout (header JSON padded with spaces to a
 * multiple of 8, `__metadata__` first) into `sink`. Deterministic: the same input always gives the same
 * bytes. Every check runs before the first byte is written. Returns the number of bytes written;
 * `path` only names the file in messages.
 */
export function serializeSafetensors(
  sink: ByteSink,
  tensors: Iterable<readonly [string, TensorToWrite]> | ReadonlyMap<string, TensorToWrite>,
  metadata: Record<string, string> = { format: 'pt' },
  path = 'safetensors',
): number {
  if (!isLittleEndianHost()) throw new LmtuneError('UNSUPPORTED', 'safetensors writing needs a little-endian host');
  const entries = [...tensors];
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new LmtuneError('CHECKPOINT', `${path}: a tensor may not be named __metadata__`);
    if (name in header) throw new LmtuneError('CHECKPOINT', `${path}: tensor '${name}' is given twice`);
    const dtype = t.dtype ?? 'F32';
    if (!(dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' || dtype === 'I64')) throw new LmtuneError('CHECKPOINT', `${path}: tensor '${name}': cannot write dtype ${String(dtype)}`);
    const n = t.shape.reduce((p, d) => p * d, 1);
    if (!t.shape.every(isNonNegInt) || n !== t.data.length) {
      throw new LmtuneError('SHAPE', `${path}: tensor '${name}' has shape [${t.shape.join(', ')}] (${n} elements) but ${t.data.length} values`);
    }
    if (dtype === 'F16' || dtype === 'BF16') {
      // the last line of defence (checkpoints store such tensors as F32 before this): a finite value
      // never silently becomes ±Inf on disk. f16 rounds |x| ≥ 65520 to Inf, bf16 |x| past 3.3961e38
      const limit = dtype === 'F16' ? 65520 : 2 ** 127 * (511 / 256);
      for (let i = 0; i < n; i++) {
        const x = t.data[i]!;
        if (Math.abs(x) >= limit && Number.isFinite(x)) throw new LmtuneError('NUMERIC', `${path}: tensor '${name}': the value ${x} at index ${i} overflows ${dtype} (it would be written as Inf)`, 'store the tensor as F32');
      }
    }
    const bytes = n * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  const jsonBytes = enc.encode(json).length;
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const headerBuf = enc.encode(json);
  const lenBuf = new Uint8Array(8);
  new DataView(lenBuf.buffer).setBigUint64(0, BigInt(headerBuf.length), true);
  sink.write(lenBuf);
  sink.write(headerBuf);
  for (const [, t] of entries) sink.write(encodeTensor(t, t.dtype ?? 'F32'));
  return 8 + headerBuf.length + offset;
}

/** the whole file in memory (downloads, tests) */
export function safetensorsBytes(tensors: Iterable<readonly [string, TensorToWrite]> | ReadonlyMap<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const sink = new MemorySink();
  serializeSafetensors(sink, tensors, metadata);
  return sink.bytes();
}

/** Bytes one tensor takes when written with `dtype`. */
export function tensorBytes(shape: readonly number[], dtype: string): number {
  const size = DTYPE_BYTES[dtype];
  if (size === undefined) throw new LmtuneError('CHECKPOINT', `unknown dtype ${dtype}`);
  return shape.reduce((p, d) => p * d, 1) * size;
}

export const __test = { halfToFloat, floatToHalf };
