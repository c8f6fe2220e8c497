/**
 * `lmtune features`, `lmtune probe` and `lmtune probe compare` end to end on the embedded model, and the
 * bad inputs the issue lists: words that are not one token, empty texts, one class, feature files of
 * different widths or from different models, an output path lmtune did not write.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import '../node/host.ts';
import { LmtuneError } from '../util/errors.ts';
import { readSafetensors } from '../node/safetensors-file.ts';
import { readFeatureFile } from '../features/feature-file.ts';
import { PROBE_SOLVER, trainAndEvaluate } from '../features/cv.ts';
import { register as registerFeatures } from './features.ts';
import { register as registerProbe } from './probe.ts';

const MODEL = 'assets/tiny-english-lm';
const SST_TRAIN = '/work/shared/data/sst2/stsa.binary.train.jsonl';
const SST_TEST = '/work/shared/data/sst2/stsa.binary.test.jsonl';
const dir = mkdtempSync(join(tmpdir(), 'lmtune-probe-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function run(args: string[]): Promise<string> {
  const program = new Command();
  program.exitOverride();
  registerFeatures(program);
  registerProbe(program);
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  // the commands write strings; the test runner's own (binary) reports go through untouched
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    if (typeof chunk !== 'string') return orig(chunk, ...rest);
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['node', 'lmtune', ...args]);
  } finally {
    process.stdout.write = orig;
  }
  return out;
}

const features = (data: string, out: string, extra: string[] = []) => run(['features', '--model', MODEL, '--task', 'sst2', '--data', data, '--out', out, '--no-progress', ...extra]);
const rejects = (p: Promise<unknown>, re: RegExp) => assert.rejects(p, (e: unknown) => e instanceof LmtuneError && re.test(e.message));

test('features → probe: the file holds features, int64 labels and settings; probe --json scores it as the library does', async () => {
  const tr = join(dir, 'tr.safetensors');
  const ev = join(dir, 'ev.safetensors');
  await features(SST_TRAIN, tr, ['--kind', 'subset', '--words', 'great,boring,sad,happy', '--limit', '60']);
  await features(SST_TEST, ev, ['--kind', 'subset', '--words', 'great,boring,sad,happy', '--limit', '40']);
  const { header, tensors } = readSafetensors(tr);
  assert.deepEqual(tensors.get('features')!.shape, [60, 4]);
  assert.equal(tensors.get('labels')!.dtype, 'I64');
  assert.equal(header.metadata.kind, 'subset');
  assert.equal(header.metadata.prompt, ' This movie is ');
  assert.deepEqual(JSON.parse(header.metadata.words!), ['great', 'boring', 'sad', 'happy']);
  const firstLabels = readFileSync(SST_TRAIN, 'utf8').split('\n').slice(0, 60).map((l) => (JSON.parse(l) as { label: number }).label);
  assert.deepEqual([...tensors.get('labels')!.data], firstLabels);
  const json = JSON.parse(await run(['probe', '--train', tr, '--eval', ev, '--cv', '3', '--cs', '0.1,1,10', '--json'])) as { metric: string; value: number; n: number; C: number };
  const lib = trainAndEvaluate(readFeatureFile(tr).data, readFeatureFile(ev).data, { Cs: [0.1, 1, 10], folds: 3, solver: PROBE_SOLVER });
  assert.deepEqual({ metric: json.metric, value: json.value, n: json.n, C: json.C }, { metric: 'accuracy', value: lib.value, n: 40, C: lib.C });
  // one file: repeated random splits
  const splits = JSON.parse(await run(['probe', '--train', tr, '--cv', '2', '--cs', '1', '--splits', '3', '--json'])) as { values: number[]; value: number };
  assert.equal(splits.values.length, 3);
  assert.ok(Math.abs(splits.value - splits.values.reduce((a, b) => a + b, 0) / 3) < 1e-12);
});

test('bad input: a multi-token word, empty texts, one class, other widths or models, a file lmtune did not write', async () => {
  await rejects(features(SST_TRAIN, join(dir, 'x.safetensors'), ['--kind', 'subset', '--words', 'great,fantastic']), /'fantastic' is 2 tokens/);
  const empty = join(dir, 'empty.jsonl');
  writeFileSync(empty, '{"text": "fine film", "label": 1}\n{"text": "  ", "label": 0}\n');
  await rejects(features(empty, join(dir, 'e.safetensors'), ['--kind', 'f']), /1 empty text: .*empty\.jsonl:2/);
  await features(empty, join(dir, 'e.safetensors'), ['--kind', 'f', '--skip-empty']);
  assert.equal(readFeatureFile(join(dir, 'e.safetensors')).data.n, 1);
  const one = join(dir, 'one.jsonl');
  writeFileSync(one, Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `a fine film ${i}`, label: 1 })).join('\n'));
  const oneF = join(dir, 'one.safetensors');
  await features(one, oneF, ['--kind', 'f']);
  await rejects(run(['probe', '--train', oneF, '--eval', oneF, '--json']), /at least two classes/);
  const f = join(dir, 'f.safetensors');
  const sub = join(dir, 'sub.safetensors');
  await features(SST_TEST, f, ['--kind', 'f', '--limit', '12']);
  await features(SST_TEST, sub, ['--kind', 'subset', '--words', 'great,sad', '--limit', '12']);
  await rejects(run(['probe', '--train', f, '--eval', sub]), /has 128 features per example but .* has 2/);
  const phiP = join(dir, 'phip.safetensors');
  await features(SST_TEST, phiP, ['--kind', 'phi-p', '--limit', '12']);
  await rejects(run(['probe', '--train', f, '--eval', phiP]), /differ in kind/);
  // another model: the same config with one weight changed
  const { copyFileSync, mkdirSync } = await import('node:fs');
  const other = join(dir, 'other-model');
  mkdirSync(other);
  for (const file of ['config.json', 'vocab.json', 'merges.txt']) copyFileSync(join(MODEL, file), join(other, file));
  const { tensors } = readSafetensors(join(MODEL, 'model.safetensors'));
  tensors.get('transformer.ln_f.bias')!.data[0] = 0.5;
  const { writeSafetensors } = await import('../node/safetensors-file.ts');
  writeSafetensors(join(other, 'model.safetensors'), [...tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data }] as const));
  const otherF = join(dir, 'other.safetensors');
  await run(['features', '--model', other, '--task', 'sst2', '--data', SST_TEST, '--out', otherF, '--kind', 'f', '--limit', '12', '--no-progress']);
  await rejects(run(['probe', '--train', f, '--eval', otherF]), /come from different models/);
  const foreign = join(dir, 'notes.safetensors');
  writeFileSync(foreign, 'not mine');
  await rejects(features(SST_TEST, foreign, ['--kind', 'f', '--limit', '4']), /exists and is not an lmtune feature file/);
  assert.equal(readFileSync(foreign, 'utf8'), 'not mine');
  await rejects(features(SST_TEST, join(dir, 'y.safetensors'), ['--kind', 'f', '--words', 'great']), /--words applies to --kind subset/);
  await rejects(features(SST_TEST, join(dir, 'y.safetensors'), ['--kind', 'phi-p', '--proj-dim', '8']), /applies to --kind p/);
});

test('--kind p --proj-dim k: the distribution projected by the Rademacher projection, chunk by chunk', async () => {
  const p = join(dir, 'p.safetensors');
  const pk = join(dir, 'pk.safetensors');
  // 260 texts: the projection runs in chunks of 256, so rows on both sides of the seam are checked
  await features(SST_TEST, p, ['--kind', 'p', '--limit', '260', '--batch-size', '32']);
  await features(SST_TEST, pk, ['--kind', 'p', '--limit', '260', '--batch-size', '32', '--proj-dim', '16', '--proj-seed', '3']);
  const full = readFeatureFile(p).data;
  const proj = readFeatureFile(pk);
  assert.equal(full.d, 4096);
  assert.equal(proj.data.d, 16);
  assert.equal(proj.data.n, 260);
  assert.equal(proj.meta.projDim, 16);
  const { RademacherProjection } = await import('../projection/rademacher.ts');
  const P = new RademacherProjection({ seed: 3, inDim: 4096, outDim: 16 });
  for (const i of [0, 255, 256, 259]) {
    assert.ok(Math.abs(full.x.subarray(i * 4096, (i + 1) * 4096).reduce((a, b) => a + b, 0) - 1) < 1e-4, 'rows of p sum to 1');
    for (let j = 0; j < 16; j++) {
      let s = 0;
      for (let w = 0; w < 4096; w++) s += full.x[i * 4096 + w]! * P.entry(w, j);
      assert.ok(Math.abs(s - proj.data.x[i * 16 + j]!) < 1e-6, `row ${i} column ${j}: ${s} vs ${proj.data.x[i * 16 + j]}`);
    }
  }
});

test('probe compare: nine rows, JSON and an HTML report', async () => {
  const html = join(dir, 'compare.html');
  const out = JSON.parse(
    await run(['probe', 'compare', '--model', MODEL, '--task', 'sst2', '--train', SST_TRAIN, '--eval', SST_TEST, '--train-limit', '40', '--eval-limit', '20', '--cv', '2', '--cs', '1', '--json', '--html', html, '--no-progress']),
  ) as { rows: { features: string; prompt: boolean; accuracy: number | null }[]; trainN: number; evalN: number };
  assert.equal(out.trainN, 40);
  assert.equal(out.evalN, 20);
  assert.equal(out.rows.length, 9);
  assert.deepEqual(out.rows.map((r) => r.prompt), [false, false, false, false, true, true, true, true, false]);
  assert.equal(out.rows[8]!.features, 'bag of words');
  for (const r of out.rows) if (r.accuracy !== null) assert.ok(r.accuracy >= 0 && r.accuracy <= 1);
  assert.ok(existsSync(html) && readFileSync(html, 'utf8').includes('<table>'));
  // CR has no test split: the mean over random splits, as the reference; its file has empty texts
  const cr = '/work/shared/data/cr/custrev.all.jsonl';
  await rejects(run(['probe', 'compare', '--model', MODEL, '--task', 'cr', '--train', cr, '--json', '--no-progress']), /empty texts?: .*custrev\.all\.jsonl:\d+/);
  const crOut = JSON.parse(await run(['probe', 'compare', '--model', MODEL, '--task', 'cr', '--train', cr, '--skip-empty', '--train-limit', '40', '--splits', '2', '--test-fraction', '0.25', '--cv', '2', '--cs', '1', '--json', '--no-progress'])) as {
    splits: { count: number };
    evalN: number;
    prompt: string;
    rows: { accuracy: number | null; std?: number }[];
  };
  assert.equal(crOut.splits.count, 2);
  assert.equal(crOut.evalN, 0);
  assert.equal(crOut.prompt, ' The sentiment is ');
  assert.ok(crOut.rows.every((r) => r.accuracy === null || (r.std !== undefined && r.std >= 0)));
  await rejects(run(['probe', 'compar', '--train', SST_TRAIN]), /unknown probe mode 'compar'/);
  await rejects(run(['probe', 'compare', '--task', 'sst2', '--train', SST_TRAIN]), /--model is required/);
});
