/**
 * The up-front memory check (issue 19): a model whose f32 weights (+ gradients and optimizer state for
 * full fine-tuning) exceed the available memory is refused from config.json + the safetensors headers,
 * before any tensor data is read, with the numbers. The "huge" model here is a sparse file: its header
 * claims 2.2 billion F16 values, its data is holes, so nothing could be loaded even if the check failed
 * to stop it (reading it would give zeros, not an out-of-memory).
 */
import '../node/host.ts';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { TransformerModel } from '../heads/model.ts';
import { configureMemory } from './memory.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

const CLI = new URL('../../bin/lmtune.js', import.meta.url).pathname;
const TINY = join(SHARED_DATA, 'models/tiny-random-gpt2');
const ROOT = mkdtempSync(join(tmpdir(), 'lmtune-mem-'));
after(() => {
  configureMemory(null);
  rmSync(ROOT, { recursive: true, force: true });
});

/** elements of every tensor in a safetensors file, parsed here from the raw header (independently of the loader) */
function headerElements(file: string): number {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { shape?: number[] }>;
  let total = 0;
  for (const [k, v] of Object.entries(h)) if (k !== '__metadata__') total += v.shape!.reduce((a, b) => a * b, 1);
  return total;
}

/** a GPT-2 folder whose model.safetensors claims these F16 tensors; the data region is a hole */
function sparseModel(dir: string, tensors: [string, number[]][]): number {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt2', n_embd: 4096, n_layer: 1, n_head: 32, vocab_size: 50257, n_positions: 1024 }));
  const header: Record<string, unknown> = {};
  let off = 0;
  let elements = 0;
  for (const [name, shape] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F16', shape, data_offsets: [off, off + 2 * n] };
    off += 2 * n;
    elements += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(join(dir, 'model.safetensors'), 'w');
  writeSync(fd, len);
  writeSync(fd, json);
  ftruncateSync(fd, 8 + json.length + off);
  closeSync(fd);
  return elements;
}

const HUGE: [string, number[]][] = [
  ['transformer.wte.weight', [50257, 4096]],
  ['transformer.wpe.weight', [1024, 4096]],
  ['transformer.h.0.mlp.c_fc.weight', [4096, 16384]],
  // padding tensors to reach billions of values; the check runs before the names are checked
  ['extra.a', [40000, 16384]],
  ['extra.b', [40000, 16384]],
  ['extra.c', [40000, 16384]],
];

function rejectsResource(re: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof LmtuneError, String(e));
    assert.equal(e.code, 'RESOURCE', e.message);
    assert.match(e.message, re);
    return true;
  };
}

test('the budget is compared with 4 bytes per stored value (+ the training state per trainable value), from the headers', async () => {
  const elements = headerElements(join(TINY, 'model.safetensors'));
  const weights = 4 * elements;
  configureMemory({ bytes: weights, source: 'test' });
  await TransformerModel.load(TINY); // exactly fits
  await TransformerModel.load(TINY, { training: { what: 'Adam', copiesPerTrainable: 3, full: false } }); // LoRA: state not counted
  configureMemory({ bytes: weights - 1, source: 'test budget' });
  await assert.rejects(TransformerModel.load(TINY), rejectsResource(new RegExp(`needs at least .* \\(${elements.toLocaleString('en-US')} weights × 4 bytes \\(f32\\).*but 0\\.\\d+ GiB is available \\(test budget\\); refused before loading`)));
  configureMemory({ bytes: 4 * weights - 1, source: 'test' });
  await assert.rejects(TransformerModel.load(TINY, { training: { what: 'gradients + adam state', copiesPerTrainable: 3, full: true } }), rejectsResource(/gradients \+ adam state: 3 f32 value\(s\) per trainable weight/));
  configureMemory({ bytes: 4 * weights, source: 'test' });
  await TransformerModel.load(TINY, { training: { what: 'gradients + adam state', copiesPerTrainable: 3, full: true } });
  configureMemory(null);
});

test('a config + headers claiming 2.2 billion values is refused by `lmtune train` before loading, with the numbers', () => {
  const dir = join(ROOT, 'huge');
  const elements = sparseModel(dir, HUGE);
  assert.ok(elements > 2.2e9, String(elements));
  const data = join(ROOT, 'sst2.jsonl');
  writeFileSync(data, readFileSync(join(SHARED_DATA, 'sst2/glue_train.jsonl'), 'utf8').split('\n').slice(0, 20).join('\n') + '\n');
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, 'train', '--model', dir, '--task', 'sst2', '--data', data, '--optimizer', 'adam', '--max-steps', '1', '--out', join(ROOT, 'run')], { encoding: 'utf8', env: { ...process.env, LMTUNE_MEMORY_MB: '16384', LMTUNE_THREADS: '1' } });
  const ms = performance.now() - t0;
  assert.equal(r.status, 1, r.stderr);
  const gib = (b: number) => (b / 2 ** 30).toFixed(1);
  assert.match(r.stderr, /lmtune: error \[RESOURCE\]: model .*huge: needs at least/);
  // weights 4·n, Adam full fine-tuning: gradient + 2 moments = 3 more copies
  assert.ok(r.stderr.includes(`needs at least ${gib(16 * elements)} GiB (${elements.toLocaleString('en-US')} weights × 4 bytes (f32) = ${gib(4 * elements)} GiB + gradients + adam state: 3 f32 value(s) per trainable weight = ${gib(12 * elements)} GiB), but 16.0 GiB is available (LMTUNE_MEMORY_MB=16384)`), r.stderr);
  assert.match(r.stderr, /hint: use --peft lora/);
  assert.ok(ms < 20_000, `refused in ${ms.toFixed(0)} ms`);
  // LMTUNE_MEMORY_MB that is not a number is named
  const bad = spawnSync(process.execPath, [CLI, 'train', '--model', dir, '--task', 'sst2', '--data', data, '--max-steps', '1', '--out', join(ROOT, 'run2')], { encoding: 'utf8', env: { ...process.env, LMTUNE_MEMORY_MB: 'lots' } });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /error \[CONFIG\]: LMTUNE_MEMORY_MB=lots: the available memory must be a positive number/);
});
