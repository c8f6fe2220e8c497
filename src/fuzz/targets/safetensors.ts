/**
 * safetensors: a tiny GPT-2's model.safetensors (with its config.json, loaded as `TransformerModel.load`
 * does for every command) or a small synthetic file (read with `readSafetensors`), with the header
 * edited as JSON (wrong dtype or shape, offsets, extra or duplicate keys), or split over two shards
 * with an index (entries edited, pointing outside the folder, a tensor in both shards that disagree), the 8-byte header length
 * replaced (past the end, huge, short) and the bytes cut at any position or spliced.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { readSafetensors } from '../../node/safetensors-file.ts';
import { TransformerModel } from '../../heads/model.ts';
import { randomWeights, tinyConfig } from '../../models/testing.ts';
import { applyJsonEdits, applyTextEdit, jsonEdit, rarely, textEdit, type Json, type JsonEdit, type TextEdit } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';

const DTYPES = ['F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'U16', 'U32', 'U64', 'F8_E4M3', 'F8_E5M2'] as const;
const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, U16: 2, U32: 4, U64: 8, F8_E4M3: 1, F8_E5M2: 1 };

interface SynthTensor {
  name: string;
  dtype: string;
  shape: number[];
}

export interface SafetensorsInput {
  /** sharded: the model split over two shards + model.safetensors.index.json */
  kind: 'model' | 'synthetic' | 'sharded';
  tensors: SynthTensor[];
  /** which model tensor gets a new dtype (model kind), if any */
  retype: { at: number; dtype: string } | null;
  header: JsonEdit[];
  /** replaces the stored header length: a delta from the true length, or an absolute value */
  length: { delta: number } | { absolute: number } | null;
  bytes: TextEdit;
  dataSeed: number;
  /** sharded: edits of the index, which shard the byte/header damage hits, a tensor stored in both */
  index: JsonEdit[];
  shard: number;
  both: boolean;
}

const synthTensor: fc.Arbitrary<SynthTensor> = fc.record({
  name: fc.constantFrom('a', 'b', 'w.weight', '__metadata__', ''),
  dtype: fc.constantFrom(...DTYPES),
  shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
});

const input: fc.Arbitrary<SafetensorsInput> = fc.record({
  kind: fc.constantFrom('model' as const, 'synthetic' as const, 'sharded' as const),
  tensors: fc.array(synthTensor, { minLength: 0, maxLength: 3 }),
  retype: rarely(fc.record({ at: fc.nat(), dtype: fc.constantFrom(...DTYPES) })),
  header: fc.array(jsonEdit, { maxLength: 2, size: 'xsmall' }),
  length: rarely(fc.oneof(fc.record({ delta: fc.integer({ min: -9, max: 9 }) }), fc.record({ absolute: fc.constantFrom(0, 1, 7, 8, 2 ** 32, 2 ** 40, 99_999_999, 100_000_001, Number.MAX_SAFE_INTEGER) }))),
  bytes: textEdit,
  dataSeed: fc.nat(255),
  index: fc.array(jsonEdit, { maxLength: 2, size: 'xsmall' }),
  shard: fc.nat(1),
  both: fc.boolean(),
});

const GPT2 = tinyConfig('gpt2', { vocab_size: 32, n_embd: 8, n_head: 2, n_layer: 1, n_positions: 16 });
let modelTensors: { name: string; shape: number[]; data: Float32Array }[] | null = null;
function modelSeed(): { name: string; shape: number[]; data: Float32Array }[] {
  modelTensors ??= [...randomWeights(GPT2, 1).entries()].map(([name, t]) => ({ name, shape: [...t.shape], data: t.data }));
  return modelTensors;
}

/** the file's bytes: header object → JSON, u64 length, data; `only` picks model tensors (a shard) */
export function buildFile(i: SafetensorsInput, only?: (k: number) => boolean, damage = true): Uint8Array {
  const header: Record<string, Json> = { __metadata__: { format: 'pt' } };
  const chunks: Uint8Array[] = [];
  let off = 0;
  if (i.kind !== 'synthetic') {
    const ts = modelSeed();
    ts.forEach((t, k) => {
      if (only && !only(k)) return;
      const dtype = i.retype && i.retype.at % ts.length === k ? i.retype.dtype : 'F32';
      const n = t.data.length * BYTES[dtype]!;
      const bytes = new Uint8Array(n);
      // reinterpret the f32 bytes (cut or repeated) as the new dtype: what a wrong dtype field reads
      const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      for (let b = 0; b < n; b++) bytes[b] = src[b % src.length]!;
      header[t.name] = { dtype, shape: t.shape, data_offsets: [off, off + n] };
      chunks.push(bytes);
      off += n;
    });
  } else {
    for (const t of i.tensors) {
      const n = t.shape.reduce((p, d) => p * d, 1) * BYTES[t.dtype]!;
      header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
      chunks.push(Uint8Array.from({ length: n }, (_, b) => (b * 31 + i.dataSeed) & 255));
      off += n;
    }
  }
  const json = Buffer.from(JSON.stringify(damage ? applyJsonEdits(header, i.header) : header), 'utf8');
  const len = Buffer.alloc(8);
  const trueLen = json.length;
  const stored = i.length === null || !damage ? trueLen : 'delta' in i.length ? Math.max(0, trueLen + i.length.delta) : i.length.absolute;
  len.writeBigUInt64LE(BigInt(stored));
  const bytes = Buffer.concat([len, json, ...chunks]);
  return damage ? applyTextEdit(bytes, i.bytes) : bytes;
}

/** two shards (tensor k in shard k mod 2, tensor 0 in both when `both`) and their index */
function writeSharded(i: SafetensorsInput, dir: string): void {
  const names = modelSeed().map((t) => t.name);
  const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const weightMap: Record<string, Json> = {};
  names.forEach((n, k) => (weightMap[n] = files[k % 2]!));
  files.forEach((f, s) => writeFileSync(join(dir, f), buildFile(i, (k) => k % 2 === s || (i.both && s === 1 && k === 0), s === i.shard)));
  const index = applyJsonEdits({ metadata: { total_size: 0 }, weight_map: weightMap }, i.index);
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(index, null, 2));
}

export const safetensorsTarget: FuzzTarget<SafetensorsInput> = {
  name: 'safetensors',
  description: 'model.safetensors (+ config.json) through TransformerModel.load; synthetic files through readSafetensors',
  input,
  prepare(i, dir) {
    if (i.kind === 'sharded') writeSharded(i, dir);
    else writeFileSync(join(dir, 'model.safetensors'), buildFile(i));
    if (i.kind !== 'synthetic') writeFileSync(join(dir, 'config.json'), JSON.stringify(GPT2));
  },
  async run(i, dir) {
    if (i.kind === 'synthetic') {
      readSafetensors(join(dir, 'model.safetensors'));
      return;
    }
    const m = await TransformerModel.load(dir, { tokenizer: false });
    // loading succeeded: it must have loaded float weights with finite values (no silent garbage)
    for (const [name, t] of m.weights.entries()) {
      if (!t.data.every(Number.isFinite)) throw new Error(`silent garbage: weight '${name}' loaded with non-finite values`);
    }
    if (i.retype && !['F32', 'F16', 'BF16', 'F64'].includes(i.retype.dtype)) throw new Error(`silent garbage: a ${i.retype.dtype} tensor loaded as a float weight`);
  },
};

