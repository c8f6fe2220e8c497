// The page's session (the worker's code, run here in Node) against `lmtune train --optimizer mezo --peft
// lora` on the same data and settings: the same trajectory bytes and final adapters, so a run in the page
// is a run of the CLI; its dev loss is the CLI's evaluateDev; a bad data row names file:line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryFolder } from '../util/folder.ts';
import { LmtuneError } from '../util/errors.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { train } from '../train/loop.ts';
import { DEFAULT_SETTINGS, TuneSession } from './session.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const MODEL = join(ROOT, 'assets/tiny-english-lm');
const TRAIN = join(ROOT, 'assets/demo/sst2-train.jsonl');
const DEV = join(ROOT, 'assets/demo/sst2-dev.jsonl');

function modelFolder(): MemoryFolder {
  return new MemoryFolder('tiny', new Map(readdirSync(MODEL).map((f) => [f, new Uint8Array(readFileSync(join(MODEL, f)))])));
}

test('a MeZO-LoRA run of the page session is the CLI run: same trajectory bytes, same adapters, same dev loss', { timeout: 60_000 }, async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-web-session-'));
  try {
    const trainText = readFileSync(TRAIN, 'utf8').split('\n').slice(0, 48).join('\n') + '\n';
    const devText = readFileSync(DEV, 'utf8').split('\n').slice(0, 24).join('\n') + '\n';
    writeFileSync(join(tmp, 'train.jsonl'), trainText);
    writeFileSync(join(tmp, 'dev.jsonl'), devText);
    const STEPS = 7; // batch 8 over 48 examples: the data order's second epoch is reached
    const settings = { ...DEFAULT_SETTINGS, steps: STEPS, batchSize: 8, lr: 1e-2, eps: 1e-2, seed: 3, evalEvery: 0 };

    const s = new TuneSession();
    await s.loadModel(modelFolder(), 1);
    s.setData('train', s.parseData(join(tmp, 'train.jsonl'), trainText));
    s.setData('dev', s.parseData(join(tmp, 'dev.jsonl'), devText));
    const evals: number[] = [];
    assert.equal(await s.fineTune(settings, 24, { onEval: (e) => evals.push(e.devLoss) }), STEPS);
    const page = s.downloads();

    const run = join(tmp, 'run');
    const cfg = buildTrainConfig({
      model: MODEL, task: 'sst2', data: join(tmp, 'train.jsonl'), dev: join(tmp, 'dev.jsonl'), optimizer: 'mezo', peft: 'lora', lr: '1e-2', zoEps: '1e-2',
      schedule: 'linear', maxSteps: String(STEPS), batchSize: '8', evalEvery: String(STEPS), saveEvery: String(STEPS), seed: '3', threads: '1',
    });
    const summary = await train(cfg, run);
    assert.equal(new TextDecoder().decode(page['trajectory.jsonl']), readFileSync(join(run, 'trajectory.jsonl'), 'utf8'), 'trajectory.jsonl');
    assert.ok(Buffer.from(page['initial_adapter_model.safetensors']!).equals(readFileSync(join(run, 'initial', 'adapter_model.safetensors'))), 'initial adapters');
    assert.ok(Buffer.from(page['adapter_model.safetensors']!).equals(readFileSync(join(run, 'final', 'adapter_model.safetensors'))), 'final adapters');
    assert.equal(new TextDecoder().decode(page['adapter_config.json']), readFileSync(join(run, 'final', 'adapter_config.json'), 'utf8'), 'adapter_config.json');
    assert.equal(evals.length, 1);
    assert.equal(evals[0], summary.finalEval!.devLoss, 'dev loss after the run');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('a malformed data row is an error naming file:line; a model folder without weights names the folder', async () => {
  const s = new TuneSession();
  assert.throws(() => s.parseData('mine.tsv', 'sentence\tlabel\ngood .\t1\nbad .\tmaybe\n'), (e: unknown) => e instanceof LmtuneError && e.code === 'DATA' && /^mine\.tsv:3: /.test(e.message));
  const noWeights = MemoryFolder.fromTexts('picked', { 'config.json': readFileSync(join(MODEL, 'config.json'), 'utf8'), 'vocab.json': '{}' });
  await assert.rejects(s.loadModel(noWeights), (e: unknown) => e instanceof LmtuneError && /^picked: no weights/.test(e.message));
  await assert.rejects(s.fineTune(DEFAULT_SETTINGS, 1), (e: unknown) => e instanceof LmtuneError && /load a model first/.test(e.message));
});
