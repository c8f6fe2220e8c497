/**
 * Messages that point at the right place (issue 19's probe): YAML task-file errors at their real line
 * (they were all reported at line 1), values from `train --config FILE` blamed on the file's line and
 * key instead of a flag that was never typed, and `info`'s tensor check flagging all-NaN and
 * integer-dtype weights (it read only the headers).
 */
import '../node/host.ts';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { parseTaskFile } from '../tasks/custom-task.ts';
import { describeCheckpoint } from '../models/checkpoint.ts';
import { parseSafetensors, safetensorsBytes } from '../models/safetensors.ts';
import { asFolder } from '../util/host.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

const CLI = new URL('../../bin/lmtune.js', import.meta.url).pathname;
const TINY = join(SHARED_DATA, 'models/tiny-random-gpt2');
const ROOT = mkdtempSync(join(tmpdir(), 'lmtune-msg-'));
after(() => rmSync(ROOT, { recursive: true, force: true }));

const configError = (re: RegExp) => (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG' && re.test(e.message);

test('task-file errors name the line they are on (YAML and JSON syntax, label entries)', () => {
  const cases: [string, string, RegExp][] = [
    // an unclosed bracket is found at the end of the text: the last written line
    ['a.yaml', 'name: foo\nprompt: "{sentence} It was"\nlabels:\n  0: " bad"\n  1: [unclosed\n', /^a\.yaml:5: Flow sequence/],
    ['b.yaml', 'name: foo\nprompt: "{sentence}"\n  bad indent: 1\nlabels: [a, b]\n', /^b\.yaml:3: All mapping items must start at the same column/],
    ['c.json', '{\n  "name": "foo",\n  "prompt": "{sentence}",\n  "labels": {"0": " a", "1": " b"},,\n}\n', /^c\.json:4: Unexpected , in flow map/],
    ['d.yaml', 'name: foo\nprompt: "{sentence}"\nlabels:\n  - " bad"\n  - 3\n', /^d\.yaml:5: label words must be strings, got 3$/],
    ['e.yaml', 'name: foo\nprompt: "{sentence}"\nlabels:\n  neg: " bad"\n\n  pos: ""\n', /^e\.yaml:6: label "pos" needs a non-empty word, got ""$/],
    // two classes with one word (silent garbage before: every prediction of one scored as the other)
    ['f.yaml', 'name: foo\nprompt: "{sentence}"\nlabels:\n  neg: " fine"\n  pos: " fine"\n', /^f\.yaml:5: labels "neg" and "pos" have the same word " fine"$/],
  ];
  for (const [file, text, re] of cases) assert.throws(() => parseTaskFile(text, file), configError(re), file);
});

function trainWithConfig(config: string, extra: string[] = []): string {
  const dir = mkdtempSync(join(ROOT, 'cfg-'));
  const path = join(dir, 'run.yaml');
  writeFileSync(path, config);
  const r = spawnSync(process.execPath, [CLI, 'train', '--config', path, '--out', join(dir, 'run'), ...extra], { encoding: 'utf8', env: { ...process.env, LMTUNE_THREADS: '1' } });
  assert.equal(r.status, 1, r.stderr);
  return r.stderr.replaceAll(path, 'run.yaml');
}

test('train --config: a bad value from the file names the file, line and key; a typed flag keeps its name', () => {
  const base = `model: ${TINY}\ntask: sst2\ndata: ${join(SHARED_DATA, 'sst2/glue_train.jsonl')}\n`;
  assert.match(trainWithConfig(`${base}lr: -1\n`), /error \[CONFIG\]: run\.yaml:4: "lr" must be >= 0, got -1\n/);
  assert.match(trainWithConfig(`${base}optimizer: adam\nbatch-size: 2.5\n`), /error \[CONFIG\]: run\.yaml:5: "batch-size" must be an integer, got 2\.5\n/);
  assert.match(trainWithConfig(`${base}optimizer: nadam\n`), /error \[CONFIG\]: run\.yaml:4: "optimizer" must be one of sgd, sgdm, rmsprop, adam, adamw, mezo; got 'nadam'\n/);
  // the same key typed on the command line overrides the file: the flag is to blame
  assert.match(trainWithConfig(`${base}lr: 1e-3\n`, ['--lr', '-1']), /error \[CONFIG\]: --lr must be >= 0, got -1\n/);
});

/** a copy of the tiny GPT-2 whose tensor `name` is replaced */
function withTensor(dir: string, name: string, t: { shape: number[]; data: Float32Array; dtype: 'F32' | 'I64' }): string {
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    try {
      copyFileSync(join(TINY, f), join(dir, f));
    } catch {
      // not every tokenizer file exists in every model folder
    }
  }
  const { tensors } = parseSafetensors(asFolder(TINY, 'test'), 'model.safetensors');
  writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes([...tensors].map(([k, v]) => [k, k === name ? t : { shape: v.shape, data: v.data }] as const)));
  return dir;
}

test('info: the tensor check reads the weights and flags an all-NaN tensor, a partly NaN one and an integer dtype', async () => {
  assert.equal((await describeCheckpoint(TINY)).tensorCheck, 'ok');
  const name = 'transformer.h.1.attn.c_proj.weight';
  const { tensors } = parseSafetensors(asFolder(TINY, 'test'), 'model.safetensors');
  const shape = tensors.get(name)!.shape;
  const n = shape.reduce((a, b) => a * b, 1);
  const allNan = withTensor(join(ROOT, 'nan'), name, { shape, data: new Float32Array(n).fill(Number.NaN), dtype: 'F32' });
  assert.equal((await describeCheckpoint(allNan)).tensorCheck, `${join(allNan, 'model.safetensors')}: tensor '${name}' is all NaN`);
  const some = Float32Array.from(tensors.get(name)!.data);
  some[3] = Number.NaN;
  some[4] = Number.NEGATIVE_INFINITY;
  const partly = withTensor(join(ROOT, 'some'), name, { shape, data: some, dtype: 'F32' });
  assert.equal((await describeCheckpoint(partly)).tensorCheck, `${join(partly, 'model.safetensors')}: tensor '${name}' holds 1 NaN and 1 Inf value(s) of ${n}`);
  const ints = withTensor(join(ROOT, 'int'), name, { shape, data: new Float32Array(n).fill(3), dtype: 'I64' });
  assert.match((await describeCheckpoint(ints)).tensorCheck, new RegExp(`tensor '${name.replace(/\./g, '\\.')}' is stored as I64; model weights must be floating point`));
  // --no-values: headers only (the integer dtype is a header fact, still flagged; NaN values are not read)
  const headersOnly = await describeCheckpoint(allNan, { values: false });
  assert.equal(headersOnly.tensorCheck, 'ok');
  assert.ok(headersOnly.notes.some((x) => x.includes('--no-values')));
  assert.match((await describeCheckpoint(ints, { values: false })).tensorCheck, /is stored as I64/);
  // the CLI table shows it
  const r = spawnSync(process.execPath, [CLI, 'info', allNan], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`tensor check\\s+.*tensor '${name.replace(/\./g, '\\.')}' is all NaN`));
  assert.ok(readFileSync(join(allNan, 'config.json')).length > 0);
});

test('tint run: a negative --lr (gradient ascent, the probe\'s silent garbage) is refused naming the flag, before any file is read', () => {
  const text = join(ROOT, 'tint.txt');
  writeFileSync(text, 'the cat sat on the mat\n');
  const r = spawnSync(process.execPath, [CLI, 'tint', 'run', '--inner', TINY, '--text', text, '--lr', '-1'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \[CONFIG\]: --lr must be >= 0, got -1/);
});
