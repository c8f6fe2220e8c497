/**
 * Issue 19's fuzzing property on a fixed-seed subset of every target (the full runs are `npm run fuzz`):
 * every generated input either works or fails with an LmtuneError naming the file, never another
 * exception, never a case over the time limit. Then the failures the fuzzer found, kept as regression
 * cases: each is run through the same target and must now fail clearly (or work).
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fuzz, runCase } from './runner.ts';
import { TARGETS } from './targets.ts';
import { safetensorsTarget } from './targets/safetensors.ts';
import { loadModelConfig } from '../models/config.ts';
import { readSafetensors } from '../node/safetensors-file.ts';
import { tinyConfig } from '../models/testing.ts';
import { LmtuneError } from '../util/errors.ts';
import { diskFolder } from '../node/folder.ts';
import { dataTarget } from './targets/data.ts';
import { trajectoryTarget } from './targets/trajectory.ts';
import { tokenizerTarget } from './targets/tokenizer.ts';

const RUNS: Record<string, number> = { safetensors: 60, config: 80, tokenizer: 40, data: 80, taskfile: 80, trajectory: 60, run: 80 };

for (const t of TARGETS) {
  test(`fuzz ${t.name}: ${RUNS[t.name] ?? 40} cases (seed 19) work or fail naming the file`, async () => {
    const r = await fuzz(t, { runs: RUNS[t.name] ?? 40, seed: 19, timeLimitMs: 5000 });
    assert.equal(r.cases, RUNS[t.name] ?? 40);
    assert.equal(r.crashes + r.hangs, 0, JSON.stringify(r.examples, null, 1) + JSON.stringify(r.failure));
    // the generator reaches both sides of the property
    assert.ok(r.ok > 0 && r.clear > 0, `${t.name}: ${r.ok} ok, ${r.clear} clear errors`);
  });
}

async function outcome<I>(target: { run(i: I, d: string): Promise<void>; name: string; description: string; input: never }, input: I) {
  const root = mkdtempSync(join(tmpdir(), 'lmtune-fuzz-reg-'));
  try {
    return await runCase(target as never, input as never, root, 5000);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

test('regression: integer and NaN weights no longer load as a model (found by the safetensors target)', async () => {
  const base = { kind: 'model' as const, tensors: [], header: [], length: null, bytes: { op: 'none' as const }, dataSeed: 0 };
  for (const dtype of ['I32', 'U64', 'BOOL']) {
    const o = await outcome(safetensorsTarget as never, { ...base, retype: { at: 5, dtype } });
    assert.equal(o.kind, 'clear', JSON.stringify(o));
    assert.match((o as { message: string }).message, new RegExp(`stored as ${dtype}`));
  }
  // an F16 reading of f32 bytes holds Inf/NaN patterns
  const o = await outcome(safetensorsTarget as never, { ...base, retype: { at: 22, dtype: 'F16' }, dataSeed: 245 });
  assert.equal(o.kind, 'clear', JSON.stringify(o));
  assert.match((o as { message: string }).message, /NaN\/Inf/);
});

test('regression: a config.json with a billion layers is refused instead of exhausting memory (config target)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-fuzz-cfg-'));
  try {
    writeFileSync(join(dir, 'config.json'), JSON.stringify(tinyConfig('gpt2', { n_layer: 1e9 })));
    const t0 = performance.now();
    assert.throws(() => loadModelConfig(diskFolder(dir)), (e: unknown) => e instanceof LmtuneError && e.message.includes(join(dir, 'config.json')) && e.message.includes("'n_layer' is 1000000000"));
    assert.ok(performance.now() - t0 < 1000);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('regression: a --max-length below the special tokens names the example file:line (data target)', async () => {
  const o = await outcome(dataTarget as never, { task: 'squad', format: 'jsonl', rows: [{ title: 't', context: 'Paris', question: 'Who won?', answers: ['Paris'] }], drop: null, maxLength: 4, text: { op: 'none' } });
  assert.equal(o.kind, 'clear', JSON.stringify(o));
  assert.match((o as { message: string }).message, /data\.jsonl:1: a max length of -?\d+ tokens/);
});

test('regression: an edited seed breaks the hash chain at its line (trajectory target)', async () => {
  // line 2 is step 0; its seeds array is the 2nd path of the object ({}, step, seeds, ...)
  const o = await outcome(trajectoryTarget as never, { line: 1, edits: [{ op: 'scale', at: 2, by: 2 }], text: { op: 'none' } });
  assert.equal(o.kind, 'clear', JSON.stringify(o));
  assert.match((o as { message: string }).message, /trajectory\.jsonl:2: the hash chain breaks here/);
});

test('regression: a malformed tokenizer.json post-processor fails at load naming the file, not with a TypeError at encode (tokenizer target)', async () => {
  const o = await outcome(tokenizerTarget as never, { layout: 'tokenizer.json', family: 'gpt2', main: { json: [{ op: 'set', at: 21, value: null }], text: { op: 'none' } }, merges: { op: 'duplicate-key', at: 0 }, tokenizerConfig: null });
  assert.equal(o.kind, 'clear', JSON.stringify(o));
  assert.match((o as { message: string }).message, /tokenizer\.json: the tokenizer could not be built/);
});

test('regression: a safetensors header listing a tensor twice is refused by name, not read as the last entry', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-fuzz-dup-'));
  try {
    const header = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const file = join(dir, 'model.safetensors');
    writeFileSync(file, Buffer.concat([len, Buffer.from(header), Buffer.alloc(4)]));
    assert.throws(() => readSafetensors(file), (e: unknown) => e instanceof LmtuneError && e.message === `${file}: header lists tensor 'a' twice`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('regression: a config.json with a key twice is refused by name, not read as the last value', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-fuzz-dupcfg-'));
  try {
    const text = JSON.stringify(tinyConfig('gpt2')).replace('"n_layer":2', '"n_layer":2,"n_layer":200');
    assert.ok(text.includes('"n_layer":200'));
    writeFileSync(join(dir, 'config.json'), text);
    assert.throws(() => loadModelConfig(diskFolder(dir)), (e: unknown) => e instanceof LmtuneError && e.message === `${join(dir, 'config.json')}: key "n_layer" appears twice`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
