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
import { datastoreTarget, type DatastoreInput } from './targets/datastore.ts';
import { chatTarget } from './targets/chat.ts';
import type { FuzzTarget } from './runner.ts';

const RUNS: Record<string, number> = { safetensors: 60, config: 80, tokenizer: 40, data: 80, taskfile: 80, trajectory: 60, run: 80, datastore: 60, chat: 80 };

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

const DS: DatastoreInput = { dtype: 'f16', rows: 5, dim: 3, shardRows: 2, dataSeed: 1, store: 1, single: false, header: null, shard: 0, damage: { op: 'none' }, disagree: null };

test('regression: datastore header fields of the wrong type or size are refused naming header.json and the field (datastore target)', async () => {
  // before: rows "5" read as 0 scores (silent), rows 1e12 looped over 5e11 shards (a hang)
  for (const [at, value, field] of [[15, '5', 'rows'], [15, 1e12, 'rows'], [15, -3, 'rows'], [15, 2.5, 'rows'], [5, 0, 'dim'], [6, 'f64', 'dtype'], [9, null, 'maxLength'], [2, 0, 'data']] as const) {
    const o = await outcome(datastoreTarget as never, { ...DS, header: { json: [{ op: 'set', at, value }], text: { op: 'none' } } });
    assert.equal(o.kind, 'clear', JSON.stringify(o));
    assert.match((o as { message: string }).message, new RegExp(`pool-c1/header\\.json: datastore header field "${field}"`), (o as { message: string }).message);
    // one datastore alone (nothing to compare it with): before, rows 10¹² or −3 threw a RangeError sizing the scores
    const one = await outcome(datastoreTarget as never, { ...DS, single: true, header: { json: [{ op: 'set', at, value }], text: { op: 'none' } } });
    assert.equal(one.kind, 'clear', JSON.stringify(one));
    assert.match((one as { message: string }).message, new RegExp(`pool-c0/header\\.json: datastore header field "${field}"`));
  }
});

test('regression: pool datastores that disagree on model, projection or pool are refused naming the field (datastore target)', async () => {
  // before: scanScores compared only the shapes, so scores summed features of different projections
  for (const [disagree, what] of [['model', 'model \\(fingerprint\\)'], ['projection', 'projection'], ['data', 'data file'], ['feature', 'feature kind']] as const) {
    const o = await outcome(datastoreTarget as never, { ...DS, disagree });
    assert.equal(o.kind, 'clear', JSON.stringify(o));
    assert.match((o as { message: string }).message, new RegExp(`pool-c1/header\\.json: ${what} .* differs from .*pool-c0/header\\.json`));
  }
  // an undamaged pair works and scores exactly as the reference
  assert.equal((await outcome(datastoreTarget as never, DS)).kind, 'ok');
});

test('regression: a shard cut at every byte fails naming that shard (datastore target)', async () => {
  for (let at = 0; at < 200; at += 7) {
    const o = await outcome(datastoreTarget as never, { ...DS, store: 0, shard: 1, damage: { op: 'truncate', at } });
    assert.equal(o.kind, 'clear', JSON.stringify(o));
    assert.match((o as { message: string }).message, /pool-c0\/shard-00001\.safetensors: /);
  }
});

test('chat rows: a label outside the choices and a non-string content name file:line (chat target)', async () => {
  const base = { maxLength: 64, text: { op: 'none' as const }, huge: false };
  let o = await outcome(chatTarget as never, { ...base, rows: [{ form: 'tulu', system: false, edits: [] }, { form: 'choice', system: false, edits: [{ op: 'set', at: 8, value: 'maybe' }] }] });
  assert.equal(o.kind, 'clear', JSON.stringify(o));
  assert.match((o as { message: string }).message, /chat\.jsonl:2: "label" "maybe" is not one of the choices/);
  o = await outcome(chatTarget as never, { ...base, text: { op: 'bom' }, rows: [{ form: 'answers', system: true, edits: [] }] });
  assert.equal(o.kind, 'ok', JSON.stringify(o));
});

test('the write check: a target that writes a file its entry point may not write fails the case, naming it', async () => {
  const writer: FuzzTarget<number> = {
    name: 'writer',
    description: 'writes a stray file',
    input: null as never,
    prepare: (_i, dir) => writeFileSync(join(dir, 'in.txt'), 'x'),
    run: async (_i, dir) => writeFileSync(join(dir, 'stray.txt'), 'y'),
  };
  const o = await outcome(writer as never, 0);
  assert.equal(o.kind, 'crash');
  assert.match((o as { message: string }).message, /wrote outside what writer's entry point may write: \+stray\.txt/);
  // allowed by `writes`: fine
  assert.equal((await outcome({ ...writer, writes: /^stray\.txt$/ } as never, 0)).kind, 'ok');
});
