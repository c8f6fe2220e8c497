/**
 * Test helpers for src/tint: seeded random inner models and sequences, and a minimal safetensors reader for
 * the real tiny GPT-2 checkpoint (src/models/checkpoint.ts is the loader the CLI uses; this reader keeps
 * the TinT tests independent of it).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { innerModelFromHf, randomInnerModel, type HfTensor, type InnerModel, type InnerSequence, type RandomInnerOptions } from './inner.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

export const TINY_GPT2_DIR = join(SHARED_DATA, 'models/tiny-random-gpt2');

/** Reads an F32 safetensors file: u64 LE header length, JSON header {name: {dtype, shape, data_offsets}}, data. */
export function readSafetensorsF32(path: string): Map<string, HfTensor> {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + headerLen;
  const out = new Map<string, HfTensor>();
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (info.dtype !== 'F32') throw new Error(`${path}: tensor ${name} has dtype ${info.dtype}, this helper reads F32 only`);
    const [a, b] = info.data_offsets;
    const bytes = buf.subarray(base + a, base + b);
    const data = new Float32Array(bytes.byteLength / 4);
    for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4);
    out.set(name, { shape: info.shape, data });
  }
  return out;
}

export function loadTinyGpt2(): InnerModel {
  const config = JSON.parse(readFileSync(join(TINY_GPT2_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
  return innerModelFromHf(config, readSafetensorsF32(join(TINY_GPT2_DIR, 'model.safetensors')), TINY_GPT2_DIR);
}

/** The test suite's small inner model: d = 12, 3 heads, TinT P = 4, S = 3, H = 48. */
export function smallInner(seed: number, overrides: Partial<RandomInnerOptions> = {}): InnerModel {
  return randomInnerModel({ family: 'gpt2', dModel: 12, nHeads: 3, nLayers: 2, vocabSize: 16, maxPositions: 16, ...overrides }, new Rng(seed));
}

export function randomTokens(T: number, vocab: number, seed: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: T }, () => rng.int(vocab));
}

/** A sequence trained on its first `train` tokens (TinT's bidirection mask), evaluated on the rest. */
export function trainPrefixSequence(tokens: readonly number[], train: number): InnerSequence {
  return { tokens, trainMask: tokens.map((_, t) => (t < train ? 1 : 0)) };
}
