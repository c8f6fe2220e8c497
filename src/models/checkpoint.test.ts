import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { fillGaussian } from '../util/rng.ts';
import { loadCheckpointTensors, saveCheckpoint } from './checkpoint.ts';
import { checkTensors, parseModelConfig } from './config.ts';

const MODELS = '/work/shared/data/models';
const ROOT = mkdtempSync(join(tmpdir(), 'lmtune-ckpt-'));
after(() => rmSync(ROOT, { recursive: true, force: true }));
const tmp = (): string => mkdtempSync(join(ROOT, 'd-'));

async function rejectsWith(p: Promise<unknown>, code: string, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LmtuneError, `expected LmtuneError, got ${String(e)}`);
    assert.equal(e.code, code);
    for (const s of parts) assert.ok(e.message.includes(s), `${JSON.stringify(e.message)} lacks ${JSON.stringify(s)}`);
    return true;
  });
}

function filesOf(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f))]));
}

function randomTensors(sizes: [string, number[]][], seed: number): Map<string, { shape: number[]; data: Float32Array }> {
  const m = new Map<string, { shape: number[]; data: Float32Array }>();
  sizes.forEach(([name, shape], i) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    fillGaussian(data, seed, i);
    m.set(name, { shape, data });
  });
  return m;
}

test('the real HF checkpoints load, and re-saving reproduces the files transformers wrote, byte for byte', async () => {
  for (const [name, params, count] of [['tiny-random-gpt2', 111_968, 64], ['gpt2-fullvocab-n_embd2', 102_640, 16]] as const) {
    const src = join(MODELS, name);
    const { config, tensors } = await loadCheckpointTensors(src);
    assert.equal(tensors.size, count);
    let n = 0;
    for (const t of tensors.values()) {
      assert.equal(t.dtype, 'F32');
      assert.equal(t.data.length, t.shape.reduce((a, b) => a * b, 1));
      n += t.data.length;
    }
    assert.equal(n, params); // MANIFEST
    const cfg = parseModelConfig(config, name);
    assert.equal(checkTensors(cfg, tensors, name).tiedHeadAbsent, true);
    const out = tmp();
    saveCheckpoint(out, config, tensors);
    assert.deepEqual(readFileSync(join(out, 'model.safetensors')), readFileSync(join(src, 'model.safetensors')), name);
    assert.deepEqual(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')), { ...config, torch_dtype: 'float32' });
  }
});

test('save → load → save is byte-stable: single file, sharded, and F16 kept as F16', async () => {
  const tensors = randomTensors([['a', [10]], ['b', [10]], ['c', [10]], ['d', [25]]], 3);
  const config = { model_type: 'gpt2', z_last: 1, a_first: [2, 1] };
  for (const opts of [{}, { maxShardBytes: 100 }, { dtype: 'F16' as const }]) {
    const one = tmp();
    saveCheckpoint(one, config, tensors, opts);
    const loaded = await loadCheckpointTensors(one);
    const two = tmp();
    saveCheckpoint(two, loaded.config, loaded.tensors, opts.dtype ? { dtype: 'keep' } : opts);
    assert.deepEqual(filesOf(two), filesOf(one), JSON.stringify(opts));
    if (!opts.dtype) for (const [k, t] of tensors) assert.deepEqual(loaded.tensors.get(k)!.data, t.data);
  }
});

test('sharding: greedy in the given order, index lists every tensor and the total byte size', async () => {
  // 40 + 40 + 40 + 100 bytes with a 100-byte limit: [a, b] (80, adding c would make 120), [c], [d]
  const tensors = randomTensors([['a', [10]], ['b', [10]], ['c', [10]], ['d', [25]]], 4);
  const dir = tmp();
  saveCheckpoint(dir, { model_type: 'gpt2' }, tensors, { maxShardBytes: 100 });
  const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
  assert.deepEqual(index, {
    metadata: { total_size: 220 },
    weight_map: {
      a: 'model-00001-of-00003.safetensors',
      b: 'model-00001-of-00003.safetensors',
      c: 'model-00002-of-00003.safetensors',
      d: 'model-00003-of-00003.safetensors',
    },
  });
  assert.equal(existsSync(join(dir, 'model.safetensors')), false);
  const back = await loadCheckpointTensors(dir);
  assert.deepEqual([...back.tensors.keys()], ['a', 'b', 'c', 'd']);
  // saving unsharded into the same folder removes the old shards and index
  saveCheckpoint(dir, { model_type: 'gpt2' }, tensors);
  assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'model.safetensors']);
});

test('broken folders fail with a CHECKPOINT/UNSUPPORTED error naming the folder, file and tensor', async () => {
  const src = join(MODELS, 'tiny-random-gpt2');
  const withConfig = (): string => {
    const d = tmp();
    copyFileSync(join(src, 'config.json'), join(d, 'config.json'));
    return d;
  };
  const empty = withConfig();
  await rejectsWith(loadCheckpointTensors(empty), 'CHECKPOINT', empty, 'no model.safetensors or model.safetensors.index.json');

  const pt = withConfig();
  writeFileSync(join(pt, 'pytorch_model.bin'), 'not really');
  await rejectsWith(loadCheckpointTensors(pt), 'UNSUPPORTED', pt, 'pytorch_model.bin');

  const noConfig = tmp();
  await rejectsWith(loadCheckpointTensors(noConfig), 'CHECKPOINT', noConfig, 'no config.json');

  const bytes = readFileSync(join(src, 'model.safetensors'));
  const trunc = withConfig();
  writeFileSync(join(trunc, 'model.safetensors'), bytes.subarray(0, bytes.length - 4));
  await rejectsWith(loadCheckpointTensors(trunc), 'CHECKPOINT', join(trunc, 'model.safetensors'));

  const corrupt = withConfig();
  const c = Buffer.from(bytes);
  c.write('@@', 8 + 200); // inside the JSON header
  writeFileSync(join(corrupt, 'model.safetensors'), c);
  await rejectsWith(loadCheckpointTensors(corrupt), 'CHECKPOINT', join(corrupt, 'model.safetensors'));

  // wrong offsets: one tensor's data_offsets changed, keeping the header length (same digit count)
  const off = withConfig();
  const hlen = Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, 8 + hlen).toString();
  const m = /"transformer\.h\.2\.ln_1\.weight":\{[^}]*"data_offsets":\[(\d+),(\d+)\]/.exec(header)!;
  const shifted = header.replace(m[0], m[0].replace(`[${m[1]},${m[2]}]`, `[${Number(m[1]) + 4},${Number(m[2]) + 4}]`));
  assert.equal(shifted.length, header.length);
  writeFileSync(join(off, 'model.safetensors'), Buffer.concat([bytes.subarray(0, 8), Buffer.from(shifted), bytes.subarray(8 + hlen)]));
  await rejectsWith(loadCheckpointTensors(off), 'CHECKPOINT', 'model.safetensors', "tensor '");

  // a shard index naming a shard that is not there
  const sharded = tmp();
  saveCheckpoint(sharded, { model_type: 'gpt2' }, randomTensors([['a', [10]], ['b', [10]]], 5), { maxShardBytes: 40 });
  const missing = join(sharded, 'model-00002-of-00002.safetensors');
  const missingBytes = readFileSync(missing);
  writeFileSync(missing, Buffer.alloc(0));
  await rejectsWith(loadCheckpointTensors(sharded), 'CHECKPOINT', 'model-00002-of-00002.safetensors');
  rmSync(missing);
  await rejectsWith(loadCheckpointTensors(sharded), 'CHECKPOINT', 'model.safetensors.index.json', "tensor 'b'", 'model-00002-of-00002.safetensors', 'does not exist');
  // an index that puts a tensor in a shard that does not hold it (shard 2 is then not listed at all)
  writeFileSync(missing, missingBytes);
  const idxPath = join(sharded, 'model.safetensors.index.json');
  const idx = JSON.parse(readFileSync(idxPath, 'utf8'));
  idx.weight_map.b = 'model-00001-of-00002.safetensors';
  writeFileSync(idxPath, JSON.stringify(idx));
  await rejectsWith(loadCheckpointTensors(sharded), 'CHECKPOINT', "tensor 'b'", 'model-00001-of-00002.safetensors', 'no shard holds it');
  writeFileSync(idxPath, '{"weight_map": ');
  await rejectsWith(loadCheckpointTensors(sharded), 'CHECKPOINT', 'model.safetensors.index.json', 'not valid JSON');
});
