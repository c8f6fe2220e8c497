/**
 * `lmtune eval` end to end through commander with an injected model: one JSON object on stdout with
 * metric/value/n, the result file, the progress line, JSONL and GLUE-TSV inputs, --shots with --train,
 * and flag errors. When the model loader (src/heads/model.ts) exists, the same runs on the real tiny
 * GPT-2 checkpoint of ../../shared/data/models with SST-2 and RTE from ../../shared/data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register } from '../cli/eval.ts';
import type { LanguageModel } from '../models/api.ts';
import { BigramLM, SHARED_DATA, SHARED_MODELS, ToyTokenizer } from './test-fixtures.ts';

interface Run {
  stdout: string;
  stderr: string;
}

async function run(args: string[], loadModel: (dir: string) => Promise<LanguageModel>): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const program = new Command().exitOverride();
  register(program, { loadModel, stdout: (s) => out.push(s), stderr: (s) => err.push(s), tty: false });
  await program.parseAsync(['node', 'lmtune', 'eval', ...args]);
  return { stdout: out.join(''), stderr: err.join('') };
}

const tok = new ToyTokenizer(['good', 'bad', ' film', ' It', ' was', ' great', ' terrible', '\n']);
const bigram = async () => new BigramLM(tok).set(' was', ' great', Math.log(3));

const dir = mkdtempSync(join(tmpdir(), 'lmtune-eval-'));
const rows = [
  { sentence: 'good film', label: 1 },
  { sentence: 'bad film', label: 0 },
  { sentence: 'good', label: 1 },
  { sentence: 'bad', label: 0 },
  { sentence: 'good good', label: 1 },
];
const jsonl = join(dir, 'sst2.jsonl');
writeFileSync(jsonl, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
const tsv = join(dir, 'dev.tsv');
writeFileSync(tsv, 'sentence\tlabel\n' + rows.map((r) => `${r.sentence}\t${r.label}`).join('\n') + '\n');

test('--json prints one object with metric, value, n; the result file holds every prediction', async () => {
  const outFile = join(dir, 'r1.json');
  const r = await run(['--model', 'm', '--task', 'sst2', '--data', jsonl, '--json', '--out', outFile], bigram);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const o = JSON.parse(lines[0]!) as { metric: string; value: number; n: number; out: string };
  // the bigram model always prefers " great": accuracy = share of label 1 = 3/5
  assert.deepEqual([o.metric, o.value, o.n, o.out], ['accuracy', 0.6, 5, outFile]);
  const file = JSON.parse(readFileSync(outFile, 'utf8')) as { predictions: { id: string; prediction: number; gold: number[] }[]; value: number };
  assert.equal(file.predictions.length, 5);
  assert.deepEqual(file.predictions.map((p) => p.gold[0]), rows.map((x) => x.label));
  assert.equal(file.predictions[1]!.id, `${jsonl}:2`);
  assert.match(r.stderr, /\] 5\/5 \d+(\.\d)? ex\/s/);
});

test('GLUE TSV input and the default table', async () => {
  const outFile = join(dir, 'r2.json');
  const r = await run(['--model', 'm', '--task', 'SST-2', '--data', tsv, '--out', outFile, '--limit', '4', '--no-progress'], bigram);
  assert.match(r.stdout, /^accuracy \*\s+0\.5000$/m); // first 4 rows: 2 of label 1
  assert.match(r.stdout, /^examples\s+4$/m);
  assert.equal(r.stderr, '');
});

test('--shots draws demonstrations from --train; the same seed gives the same bytes', async () => {
  const train = join(dir, 'train.jsonl');
  writeFileSync(train, [{ sentence: 'good', label: 1 }, { sentence: 'bad', label: 0 }, { sentence: 'good film', label: 1 }].map((r) => JSON.stringify(r)).join('\n') + '\n');
  const lm = new BigramLM(tok).set(' was', ' great', Math.log(3));
  const a = join(dir, 'icl-a.json');
  const b = join(dir, 'icl-b.json');
  await run(['--model', 'm', '--task', 'sst2', '--data', jsonl, '--train', train, '--shots', '2', '--seed', '3', '--out', a, '--json'], async () => lm);
  await run(['--model', 'm', '--task', 'sst2', '--data', jsonl, '--train', train, '--shots', '2', '--seed', '3', '--out', b, '--json'], bigram);
  assert.equal(readFileSync(a, 'utf8'), readFileSync(b, 'utf8'));
  // every prompt holds two gold-verbalized demonstrations from the train file before the test sentence
  const demo = new Set(['good It was great', 'bad It was terrible', 'good film It was great']);
  for (const req of lm.requests) {
    const parts = tok.decode(req.prompt).split('\n\n');
    assert.equal(parts.length, 3);
    assert.ok(demo.has(parts[0]!) && demo.has(parts[1]!), parts.join(' | '));
  }
});

test('flag and data errors are LmtuneErrors', async () => {
  await assert.rejects(() => run(['--model', 'm', '--task', 'sst2', '--data', jsonl, '--shots', '-1'], bigram), (e: Error & { code?: string }) => e.code === 'CONFIG' && /--shots/.test(e.message));
  await assert.rejects(() => run(['--model', 'm', '--task', 'sst2', '--data', join(dir, 'nope.jsonl')], bigram), (e: Error & { code?: string }) => e.code === 'IO');
  await assert.rejects(() => run(['--model', 'm', '--task', 'nosuch', '--data', jsonl], bigram), (e: Error & { code?: string }) => e.code === 'CONFIG');
  await assert.rejects(() => run(['--model', 'm', '--task', 'sst2', '--data', jsonl, '--train', jsonl], bigram), (e: Error & { code?: string }) => e.code === 'CONFIG');
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"sentence": "ok", "label": 1}\n{"sentence": "x", "label": "positive"}\n');
  await assert.rejects(() => run(['--model', 'm', '--task', 'sst2', '--data', bad], bigram), (e: Error & { code?: string }) => e.code === 'DATA' && e.message.startsWith(`${bad}:2: label`));
});

// ---- the real tiny checkpoint, once the model loader lands ----------------------------------------

const loaderPath = new URL('../heads/model.ts', import.meta.url);
const tiny = join(SHARED_MODELS, 'tiny-random-gpt2');
const realSkip = !existsSync(loaderPath) ? 'src/heads/model.ts (loadModel) not there yet' : !existsSync(tiny) ? 'shared checkpoint missing' : false;

test('tiny-random-gpt2 on shared SST-2 and RTE, zero-shot and 4-shot', { skip: realSkip }, async () => {
  const mod = (await import(loaderPath.href)) as { loadModel: (dir: string) => Promise<LanguageModel> };
  const cases: [string, string, string[]][] = [
    ['sst2', join(SHARED_DATA, 'sst2/stsa.binary.test.jsonl'), ['--limit', '24']],
    ['sst2', join(SHARED_DATA, 'sst2/stsa.binary.test.jsonl'), ['--limit', '12', '--shots', '4', '--seed', '1']],
    ['rte', join(SHARED_DATA, 'superglue/rte/train.jsonl'), ['--limit', '8']],
    ['rte', join(SHARED_DATA, 'superglue/rte/train.jsonl'), ['--limit', '6', '--shots', '2']],
  ];
  for (const [task, data, extra] of cases) {
    const outFile = join(dir, `real-${task}-${extra.join('_')}.json`);
    const r = await run(['--model', tiny, '--task', task, '--data', data, '--json', '--out', outFile, ...extra], mod.loadModel);
    const o = JSON.parse(r.stdout) as { metric: string; value: number; n: number };
    const n = Number(extra[1]);
    assert.equal(o.metric, 'accuracy');
    assert.equal(o.n, n);
    // gold labels straight from the file; the value is the share of predictions equal to them
    const labels = readFileSync(data, 'utf8')
      .split('\n')
      .slice(0, n)
      .map((l) => (JSON.parse(l) as { label: number | string }).label)
      .map((l) => (task === 'rte' ? (l === 'entailment' ? 0 : 1) : Number(l)));
    const file = JSON.parse(readFileSync(outFile, 'utf8')) as { predictions: { prediction: number; candidateScores: number[] }[] };
    const right = file.predictions.filter((p, i) => p.prediction === labels[i]).length;
    assert.equal(o.value, right / n);
    for (const p of file.predictions) assert.ok(p.candidateScores.every((s) => Number.isFinite(s) && s < 0));
  }
});
