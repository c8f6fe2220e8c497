// The page's session (the worker's code, run here in Node) against `lmtune train --optimizer mezo --peft
// lora` on the same data and settings: the same trajectory bytes and final adapters, so a run in the page
// is a run of the CLI; its dev loss is the CLI's evaluateDev; a bad data row names file:line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryFolder } from '../util/folder.ts';
import { LmtuneError } from '../util/errors.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { readRunConfig, train } from '../train/loop.ts';
import { parseSafetensors } from '../models/safetensors.ts';
import { checkModelFits, DEFAULT_SETTINGS, TuneSession, type Method, type TuneSettings } from './session.ts';

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

// --- the other methods, and runs that cross between Node and the page's session ---

function dataFiles(tmp: string): { train: string; dev: string; trainText: string; devText: string } {
  const trainText = readFileSync(TRAIN, 'utf8').split('\n').slice(0, 40).join('\n') + '\n';
  const devText = readFileSync(DEV, 'utf8').split('\n').slice(0, 16).join('\n') + '\n';
  writeFileSync(join(tmp, 'train.jsonl'), trainText);
  writeFileSync(join(tmp, 'dev.jsonl'), devText);
  return { train: join(tmp, 'train.jsonl'), dev: join(tmp, 'dev.jsonl'), trainText, devText };
}

async function sessionOn(d: ReturnType<typeof dataFiles>): Promise<TuneSession> {
  const s = new TuneSession();
  await s.loadModel(modelFolder(), 1, MODEL);
  s.setData('train', s.parseData(d.train, d.trainText), d.train);
  s.setData('dev', s.parseData(d.dev, d.devText), d.dev);
  return s;
}

const cliFlags = (method: Method, d: ReturnType<typeof dataFiles>, steps: number, saveEvery = steps): Record<string, string> => ({
  model: MODEL, task: 'sst2', data: d.train, dev: d.dev, peft: method === 'mezo-full' ? 'full' : 'lora', optimizer: method === 'adam-lora' ? 'adam' : 'mezo',
  lr: method === 'adam-lora' ? '1e-3' : method === 'mezo-full' ? '1e-4' : '1e-2', zoEps: method === 'mezo-full' ? '1e-3' : '1e-2', schedule: 'linear', maxSteps: String(steps), batchSize: '8',
  evalEvery: String(steps), saveEvery: String(saveEvery), seed: '5', threads: '1', devLimit: '16',
});
const pageSettings = (method: Method, steps: number): TuneSettings => ({ ...DEFAULT_SETTINGS, method, steps, batchSize: 8, lr: method === 'adam-lora' ? 1e-3 : method === 'mezo-full' ? 1e-4 : 1e-2, eps: method === 'mezo-full' ? 1e-3 : 1e-2, seed: 5, evalEvery: 0 });
const tensorsOf = (bytes: Uint8Array): Map<string, Buffer> => new Map([...parseSafetensors(new MemoryFolder('x', new Map([['f', bytes]])), 'f').tensors].map(([k, t]) => [k, Buffer.from((t.data as Float32Array).buffer, (t.data as Float32Array).byteOffset, (t.data as Float32Array).byteLength)]));
function sameTensors(a: Uint8Array, b: Uint8Array, what: string): void {
  const ta = tensorsOf(a);
  const tb = tensorsOf(b);
  assert.deepEqual([...ta.keys()].sort(), [...tb.keys()].sort(), what);
  for (const [k, v] of ta) assert.ok(v.equals(tb.get(k)!), `${what}: tensor ${k} differs`);
}

for (const method of ['adam-lora', 'mezo-full'] as const) {
  test(`${method}: the page session's run is the CLI's run, bit for bit`, { timeout: 90_000 }, async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'lmtune-web-session-'));
    try {
      const d = dataFiles(tmp);
      const STEPS = 6;
      const s = await sessionOn(d);
      const losses: number[] = [];
      assert.equal(await s.fineTune(pageSettings(method, STEPS), 16, { onStep: (e) => losses.push(e.loss) }), STEPS);
      const run = join(tmp, 'run');
      await train(buildTrainConfig(cliFlags(method, d, STEPS)), run);
      const cliLosses = readFileSync(join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
      assert.deepEqual(losses, cliLosses, 'training losses');
      const page = s.downloads();
      if (method === 'adam-lora') sameTensors(page['adapter_model.safetensors']!, readFileSync(join(run, 'final', 'adapter_model.safetensors')), 'final adapters');
      else {
        sameTensors(page['model.safetensors']!, readFileSync(join(run, 'final', 'model.safetensors')), 'final weights');
        assert.equal(new TextDecoder().decode(page['trajectory.jsonl']), readFileSync(join(run, 'trajectory.jsonl'), 'utf8'), 'trajectory.jsonl');
        assert.deepEqual(JSON.parse(new TextDecoder().decode(page['config.json'])), JSON.parse(readFileSync(join(run, 'final', 'config.json'), 'utf8')), 'the model config');
        assert.ok(page['vocab.json'] && page['merges.txt'], 'the tokenizer files come along');
        // the weights changed in place: a new run would not start from the model as loaded
        await assert.rejects(s.fineTune(pageSettings('adam-lora', 1), 16), (e: unknown) => e instanceof LmtuneError && /full-parameter MeZO, which changed the model's weights/.test(e.message));
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

for (const method of ['adam-lora', 'mezo-lora'] as const) {
  test(`${method}: a Node run continues in the session and a session run continues in Node, each ending where an uninterrupted run ends`, { timeout: 120_000 }, async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'lmtune-web-cross-'));
    try {
      const d = dataFiles(tmp);
      const STEPS = 6;
      const HALF = 3;
      const whole = join(tmp, 'whole');
      await train(buildTrainConfig(cliFlags(method, d, STEPS, HALF)), whole);
      const finalAdapters = readFileSync(join(whole, 'final', 'adapter_model.safetensors'));

      // Node → page: a run killed after its step-3 checkpoint, its folder read as the page reads it
      const half = join(tmp, 'half');
      await assert.rejects(train(buildTrainConfig(cliFlags(method, d, STEPS, HALF)), half, { afterStep: (k) => { if (k === HALF) throw new Error('killed'); } }), /killed/);
      const files = new Map<string, Uint8Array>();
      const walk = (dir: string, rel: string): void => {
        for (const f of readdirSync(dir, { withFileTypes: true })) {
          if (f.isDirectory()) walk(join(dir, f.name), `${rel}${f.name}/`);
          else files.set(`${rel}${f.name}`, new Uint8Array(readFileSync(join(dir, f.name))));
        }
      };
      walk(half, '');
      const s = await sessionOn(d);
      const info = s.loadRun('half', files);
      assert.deepEqual({ step: info.step, maxSteps: info.maxSteps, method: info.method, losses: info.losses.length }, { step: HALF, maxSteps: STEPS, method, losses: HALF });
      assert.equal(await s.continueRun(), STEPS - HALF);
      sameTensors(s.downloads()['adapter_model.safetensors']!, finalAdapters, 'Node → page: final adapters');
      if (method === 'mezo-lora') assert.equal(new TextDecoder().decode(s.runFiles()['trajectory.jsonl']), readFileSync(join(whole, 'trajectory.jsonl'), 'utf8'), 'Node → page: the trajectory continues the same chain');

      // page → Node: a session run stopped after 3 steps, its run folder resumed by `lmtune train --resume`
      const p = await sessionOn(d);
      let taken = 0;
      assert.equal(await p.fineTune({ ...pageSettings(method, STEPS), evalEvery: HALF }, 16, { between: async () => (taken++ < HALF ? 'go' : 'stop') }), HALF);
      const dir = join(tmp, 'from-page');
      for (const [name, bytes] of Object.entries(p.runFiles())) {
        mkdirSync(join(dir, name, '..'), { recursive: true });
        writeFileSync(join(dir, name), bytes);
      }
      const resumed = await train(readRunConfig(dir), dir, {}, true);
      assert.equal(resumed.steps, STEPS);
      sameTensors(new Uint8Array(readFileSync(join(dir, 'final', 'adapter_model.safetensors'))), finalAdapters, 'page → Node: final adapters');
      assert.equal(readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').length, STEPS, 'one log line per step, the page\'s and then Node\'s');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test('a run the page cannot continue, a checkpoint of another model, and a model too big for a tab are refused with the reason', async () => {
  const s = new TuneSession();
  await s.loadModel(modelFolder(), 1);
  const cfg = { ...s.runConfig(pageSettings('adam-lora', 4), 8), optimizer: { ...s.runConfig(pageSettings('adam-lora', 4), 8).optimizer, name: 'sgd' as const } };
  const files = new Map([['config.json', new TextEncoder().encode(JSON.stringify(cfg))]]);
  assert.throws(() => s.loadRun('sgd-run', files), (e: unknown) => e instanceof LmtuneError && /^sgd-run\/config\.json: a sgd run/.test(e.message));
  const big = { model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, vocab_size: 32000 };
  assert.throws(() => checkModelFits('llama-7b', JSON.stringify(big), 8 * 1024 ** 3), (e: unknown) => e instanceof LmtuneError && /^llama-7b: a llama model of about 6\.7B parameters .* needs 25 GB for its float32 weights, more than onnxruntime's wasm heap can hold/.test(e.message));
  const mid = { ...big, hidden_size: 1024, intermediate_size: 2816, num_hidden_layers: 24, num_attention_heads: 16 };
  const fits = checkModelFits('mid', JSON.stringify(mid), 8 * 1024 ** 3);
  // closed form: embeddings + head (untied) + 24 × (4 d² attention + 3 d·ff MLP + 2 d norms) + final norm
  const dd = 1024;
  assert.equal(fits.params, 2 * 32000 * dd + 24 * (4 * dd * dd + 3 * dd * 2816 + 2 * dd) + dd);
  assert.throws(() => checkModelFits('mid', JSON.stringify(mid), 2 * 1024 ** 3), (e: unknown) => e instanceof LmtuneError && /needs about 2\.\d\d GB in this tab .* more than the 2\.00 GB this tab may use/.test(e.message));
});
