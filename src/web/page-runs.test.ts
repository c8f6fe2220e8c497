// The page's other methods and runs that cross runtimes, in real headless Chromium (Debian's
// /usr/bin/chromium through playwright-core): LoRA + Adam steps (backward graphs on onnxruntime-web) lower
// the dev loss, and the page's run.tar continues in Node with `lmtune train --resume`; full-parameter MeZO
// downloads a model folder that `lmtune mezo replay` rebuilds bit for bit; a `lmtune train` run killed
// after a checkpoint continues in the page, whose trajectory replays in Node to the page's adapters; a
// built-in task other than the demo's evaluates as `lmtune eval` does; a run the page cannot continue
// (SGD) is refused with a visible message. No test sees a console error.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM_SKIP, EMBEDDED_MODEL, ROOT, SCREENSHOTS, launchChromium } from '../serve/chromium.test-util.ts';
import { serveRuns, type Dashboard } from '../serve/server.ts';
import { replayRun } from '../cli/mezo.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { train } from '../train/loop.ts';
import { parseSafetensors } from '../models/safetensors.ts';
import { MemoryFolder } from '../util/folder.ts';
import { asLanguageModel, loadTransformer } from '../heads/model.ts';
import { runEvaluation } from '../tasks/index.ts';
import { openPage, saveDownloads, stateOf, until } from './page.test-util.ts';

const SKIP = CHROMIUM_SKIP;
const MODEL = EMBEDDED_MODEL;
const DEMO = { train: join(ROOT, 'assets/demo/sst2-train.jsonl'), dev: join(ROOT, 'assets/demo/sst2-dev.jsonl') };

let browser: Browser | null = null;
let server: Dashboard | null = null;
let tmp = '';

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'lmtune-web-runs-'));
  if (SKIP) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  server = await serveRuns({ port: 0 });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** the embedded model and the SST-2 demo data loaded */
async function ready(page: Page, devLimit: number): Promise<void> {
  await page.click('#load-embedded');
  await until(page, 'the model', (s) => s.model !== null && s.busy === '', 20_000);
  await page.click('#load-demo-data');
  await until(page, 'the data', (s) => s.data.dev !== undefined && s.busy === '', 10_000);
  await page.fill('#dev-limit', String(devLimit));
}

const tensors = (file: string): Map<string, Buffer> =>
  new Map([...parseSafetensors(new MemoryFolder('x', new Map([['f', new Uint8Array(readFileSync(file))]])), 'f').tensors].map(([k, t]) => {
    const d = t.data as Float32Array;
    return [k.replace(/^base_model\.model\./, ''), Buffer.from(d.buffer, d.byteOffset, d.byteLength)] as const;
  }));

function assertSameTensors(a: string, b: string, what: string): void {
  const ta = tensors(a);
  const tb = tensors(b);
  assert.deepEqual([...ta.keys()].sort(), [...tb.keys()].sort(), what);
  for (const [k, v] of ta) assert.ok(v.equals(tb.get(k)!), `${what}: tensor ${k} differs`);
}

const lmtune = (args: string[]): { status: number | null; stdout: string; stderr: string } =>
  spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, LMTUNE_THREADS: '1' } });

test('LoRA + Adam in the page lowers the dev loss, and its run.tar continues in Node with lmtune train --resume', { skip: SKIP, timeout: 90_000 }, async (t) => {
  const { page, errors } = await openPage(browser!, server!.tuneUrl);
  await ready(page, 32);
  await page.click('#evaluate');
  const zero = (await until(page, 'the zero-shot evaluation', (s) => s.evals.length === 1 && s.busy === '', 20_000)).evals[0]!;

  const STEPS = 12;
  await page.selectOption('#method', 'adam-lora');
  assert.equal(await page.inputValue('#lr'), '0.001', 'the method sets its default lr');
  await page.fill('#steps', String(STEPS));
  await page.fill('#eval-every', '6');
  await page.click('#train');
  const done = await until(page, 'the Adam run', (s) => s.trained !== null && s.busy === '', 60_000);
  t.diagnostic(`LoRA + Adam steps in the page (ms): ${done.steps.map((s) => s.ms.toFixed(0)).join(" ")}`);
  assert.equal(done.trained!.steps, STEPS);
  assert.deepEqual(done.steps.map((s) => s.step), Array.from({ length: STEPS }, (_, i) => i + 1));
  assert.deepEqual(done.evals.map((e) => e.step), [0, 6, 12], 'zero-shot, then every 6 steps');
  const last = done.evals[done.evals.length - 1]!;
  assert.ok(last.devLoss < zero.devLoss, `dev loss falls: ${zero.devLoss} → ${last.devLoss}`);
  assert.equal(Number(await page.getAttribute('#dev-chart', 'data-points')), 3);
  await page.screenshot({ path: join(SCREENSHOTS, 'tune-adam-lora.png'), fullPage: true });

  // a second run, stopped after a few steps: its run folder goes to Node
  const TOTAL = 20;
  await page.fill('#steps', String(TOTAL));
  await page.fill('#eval-every', '0');
  await page.click('#train');
  await until(page, 'a few steps', (s) => s.trained === null && s.steps.length >= 3, 20_000);
  await page.click('#stop');
  const stopped = await until(page, 'the stop', (s) => s.trained !== null && s.busy === '', 20_000);
  const k = stopped.trained!.steps;
  assert.ok(k >= 3 && k < TOTAL && stopped.trained!.stopped, `stopped after ${k} steps`);
  await page.click('#download');
  const names = (await until(page, 'the downloads', (s) => s.files !== null, 10_000)).files!;
  assert.deepEqual([...names].sort(), ['adapter_config.json', 'adapter_model.safetensors', 'run.tar'], 'LoRA + Adam: adapters and the run (no trajectory)');
  const got = join(tmp, 'adam');
  mkdirSync(got);
  await saveDownloads(page, names, got);
  assert.equal(spawnSync('tar', ['-xf', join(got, 'run.tar'), '-C', got]).status, 0, 'tar -xf run.tar');
  const run = join(got, 'lmtune-run');
  const cfg = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8')) as { model: string; data: string; optimizer: { name: string } };
  // the embedded model and demo data are named as they lie in the lmtune folder, where the CLI runs here
  assert.deepEqual({ model: cfg.model, data: cfg.data, optimizer: cfg.optimizer.name }, { model: 'assets/tiny-english-lm', data: 'assets/demo/sst2-train.jsonl', optimizer: 'adam' });
  const r = lmtune(['train', '--resume', run, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { steps: number }).steps, TOTAL);
  const log = readFileSync(join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });
  assert.deepEqual(log.map((l) => l.step), Array.from({ length: TOTAL }, (_, i) => i + 1), 'the page\'s steps, then Node\'s');
  assert.deepEqual(log.slice(0, k).map((l) => l.loss), stopped.steps.map((s) => s.loss), 'the page\'s losses are kept');
  assert.ok(readFileSync(join(run, 'final', 'adapter_model.safetensors')).length > 0);
  assert.deepEqual(errors, [], 'console errors');
  await page.close();
});

test('full-parameter MeZO in the page downloads a model folder that lmtune mezo replay rebuilds bit for bit', { skip: SKIP, timeout: 90_000 }, async () => {
  const { page, errors } = await openPage(browser!, server!.tuneUrl);
  await ready(page, 16);
  await page.selectOption('#method', 'mezo-full');
  const STEPS = 4;
  await page.fill('#steps', String(STEPS));
  await page.fill('#eval-every', '0');
  await page.click('#train');
  const done = await until(page, 'the full MeZO run', (s) => s.trained !== null && s.busy === '', 45_000);
  assert.equal(done.trained!.steps, STEPS);
  assert.ok(done.steps.every((s) => Number.isFinite(s.loss)));
  await page.click('#download');
  const names = (await until(page, 'the downloads', (s) => s.files !== null, 20_000)).files!;
  assert.deepEqual([...names].sort(), ['config.json', 'merges.txt', 'model.safetensors', 'run.tar', 'trajectory.jsonl', 'vocab.json']);
  const got = join(tmp, 'full');
  mkdirSync(got);
  await saveDownloads(page, names.filter((n) => n !== 'run.tar'), got);
  // the downloaded folder loads in the CLI, and the base model + the page's trajectory is the same model
  const loaded = await loadTransformer(got, { threads: 1 });
  assert.equal(loaded.cfg.family, 'gpt2');
  const out = join(tmp, 'full-replay');
  assert.deepEqual(await replayRun(MODEL, join(got, 'trajectory.jsonl'), out), { steps: STEPS });
  assertSameTensors(join(got, 'model.safetensors'), join(out, 'model.safetensors'), 'full MeZO: replay vs page');
  assert.deepEqual(errors, [], 'console errors');
  await page.close();
});

test('a lmtune train run killed after its checkpoint continues in the page, and its trajectory replays in Node to the page\'s adapters', { skip: SKIP, timeout: 90_000 }, async () => {
  const STEPS = 8;
  const HALF = 4;
  const run = join(tmp, 'node-run');
  const flags = { model: MODEL, task: 'sst2', data: DEMO.train, dev: DEMO.dev, optimizer: 'mezo', peft: 'lora', lr: '1e-2', zoEps: '1e-2', schedule: 'linear', maxSteps: String(STEPS), batchSize: '16', evalEvery: String(STEPS), saveEvery: String(HALF), seed: '7', threads: '1', devLimit: '32' };
  await assert.rejects(train(buildTrainConfig(flags), run, { afterStep: (k) => { if (k === HALF) throw new Error('killed'); } }), /killed/);

  const { page, errors } = await openPage(browser!, server!.tuneUrl);
  await ready(page, 32);
  await page.setInputFiles('#run-folder', run);
  const loaded = await until(page, 'the run', (s) => s.run !== null && s.busy === '', 10_000);
  assert.deepEqual({ step: loaded.run!.step, maxSteps: loaded.run!.maxSteps, method: loaded.run!.method }, { step: HALF, maxSteps: STEPS, method: 'mezo-lora' });
  assert.equal(loaded.steps.length, HALF, 'the curve starts with the Node run\'s logged losses');
  assert.deepEqual(loaded.evals.map((e) => e.step), [0], 'and the dev curve with its zero-shot evaluation');
  assert.equal(await page.inputValue('#seed'), '7', 'the form shows the run\'s settings');
  assert.match((await page.textContent('#run-info')) ?? '', /at step 4 of 8/);
  await page.click('#continue');
  const done = await until(page, 'the continued run', (s) => s.trained !== null && s.busy === '', 45_000);
  assert.equal(done.trained!.steps, STEPS - HALF);
  assert.deepEqual(done.steps.map((s) => s.step), Array.from({ length: STEPS }, (_, i) => i + 1));
  assert.deepEqual(done.evals.map((e) => e.step), [0, STEPS]);
  assert.equal(Number(await page.getAttribute('#dev-chart', 'data-points')), 2);
  assert.match((await page.textContent('#run-info')) ?? '', /continued from step 4 to step 8 of 8/);
  await page.screenshot({ path: join(SCREENSHOTS, 'tune-continued.png'), fullPage: true });
  await page.click('#download');
  const names = (await until(page, 'the downloads', (s) => s.files !== null, 10_000)).files!;
  const got = join(tmp, 'continued');
  mkdirSync(got);
  await saveDownloads(page, names, got);

  const nodeLines = readFileSync(join(run, 'trajectory.jsonl'), 'utf8').trim().split('\n');
  const pageLines = readFileSync(join(got, 'trajectory.jsonl'), 'utf8').trim().split('\n');
  assert.equal(pageLines.length, STEPS + 1);
  assert.deepEqual(pageLines.slice(0, HALF + 1), nodeLines.slice(0, HALF + 1), 'the page continues the Node run\'s hash-chained trajectory');
  // Node's initial/ (base + seeded adapters) and the whole trajectory give the page's final adapters
  const out = join(tmp, 'continued-replay');
  assert.deepEqual(await replayRun(join(run, 'initial'), join(got, 'trajectory.jsonl'), out), { steps: STEPS });
  assertSameTensors(join(got, 'adapter_model.safetensors'), join(out, 'adapter_model.safetensors'), 'replay of Node + page steps vs the page\'s adapters');
  assertSameTensors(join(got, 'initial_adapter_model.safetensors'), join(run, 'initial', 'adapter_model.safetensors'), 'the initial adapters');
  assert.deepEqual(errors, [], 'console errors');
  await page.close();
});

test('another built-in task (RTE) in the page: the same accuracy as lmtune eval on the same files', { skip: SKIP, timeout: 60_000 }, async () => {
  const rows = [
    ['A cat sat on the mat.', 'A cat is on the mat.', 'entailment'],
    ['The man is sleeping.', 'The man is running a race.', 'not_entailment'],
    ['She bought three apples at the market.', 'She bought fruit.', 'entailment'],
    ['The film was released in 1999.', 'The film was released in 2010.', 'not_entailment'],
    ['Paris is the capital of France.', 'Paris is in France.', 'entailment'],
    ['The door is closed.', 'The door is open.', 'not_entailment'],
    ['He plays the guitar every day.', 'He plays an instrument.', 'entailment'],
    ['The shop opens at nine.', 'The shop never opens.', 'not_entailment'],
  ];
  const text = rows.map(([premise, hypothesis, label]) => JSON.stringify({ premise, hypothesis, label })).join('\n') + '\n';
  const file = join(tmp, 'rte-dev.jsonl');
  writeFileSync(file, text);
  const { page, errors } = await openPage(browser!, server!.tuneUrl);
  await page.click('#load-embedded');
  await until(page, 'the model', (s) => s.model !== null && s.busy === '', 20_000);
  const tasks = await page.$$eval('#task option', (os) => os.map((o) => (o as unknown as { value: string }).value));
  for (const t of ['sst2', 'rte', 'boolq', 'copa', 'agnews']) assert.ok(tasks.includes(t), `task ${t} offered`);
  assert.ok(!tasks.includes('squad'), 'generation tasks are not offered');
  await page.selectOption('#task', 'rte');
  await until(page, 'the task', (s) => s.task === 'rte' && s.busy === '', 5_000);
  assert.match((await page.textContent('#task-info')) ?? '', /classification/);
  await page.setInputFiles('#dev-file', file);
  await until(page, 'the dev data', (s) => s.data.dev?.n === rows.length && s.busy === '', 10_000);
  // a row with the task's fields missing names file:line, as the CLI does
  await page.setInputFiles('#train-file', { name: 'rte-bad.jsonl', mimeType: 'application/json', buffer: Buffer.from(text + '{"premise":"no hypothesis","label":"entailment"}\n') });
  const s1 = await until(page, 'the bad row', (s) => s.errors.length === 1 && s.busy === '', 10_000, 1);
  assert.match(s1.errors[0]!.message, new RegExp(`^rte-bad\\.jsonl:${rows.length + 1}: `));
  await page.setInputFiles('#train-file', file);
  await until(page, 'the train data', (s) => s.data.train?.n === rows.length && s.busy === '', 10_000, 1);
  await page.fill('#dev-limit', '8');
  await page.click('#evaluate');
  const ev = (await until(page, 'the evaluation', (s) => s.evals.length === 1 && s.busy === '', 20_000, 1)).evals[0]!;
  const cli = await runEvaluation(asLanguageModel(await loadTransformer(MODEL, { threads: 1 })), { task: 'rte', data: file });
  assert.equal(ev.n, rows.length);
  assert.equal(ev.accuracy, cli.value, 'RTE accuracy, page vs CLI');
  assert.match((await page.textContent('#examples')) ?? '', /A cat sat on the mat/);
  // the demo data is SST-2's: loading it switches the task back
  await page.click('#load-demo-data');
  const back = await until(page, 'the demo data', (s) => s.task === 'sst2' && s.data.dev !== undefined && s.busy === '', 10_000, 1);
  assert.equal(back.data.train!.name, 'assets/demo/sst2-train.jsonl');
  assert.equal((await stateOf(page)).errors.length, 1);
  assert.deepEqual(errors, [], 'console errors');
  await page.close();
});


test('a run folder the page cannot continue is refused with a visible message naming the file and the setting', { skip: SKIP, timeout: 60_000 }, async () => {
  const run = join(tmp, 'sgd-run');
  await train(buildTrainConfig({ model: MODEL, task: 'sst2', data: DEMO.train, dev: DEMO.dev, optimizer: 'sgd', peft: 'lora', maxSteps: '2', batchSize: '4', evalEvery: '0', saveEvery: '1', threads: '1', devLimit: '4' }), run, { afterStep: (k) => { if (k === 1) throw new Error('killed'); } }).catch(() => undefined);
  const { page, errors } = await openPage(browser!, server!.tuneUrl);
  await page.click('#load-embedded');
  await until(page, 'the model', (s) => s.model !== null && s.busy === '', 20_000);
  await page.setInputFiles('#run-folder', run);
  const s = await until(page, 'the refusal', (x) => x.errors.length === 1 && x.busy === '', 10_000, 1);
  assert.match(s.errors[0]!.message, /^sgd-run\/config\.json: a sgd run with --peft lora; the page continues MeZO \(LoRA or full\) and LoRA \+ Adam\/AdamW runs$/);
  assert.match(s.errors[0]!.hint, /lmtune train --resume/);
  assert.ok(await page.locator('#messages .error').first().isVisible());
  assert.equal(s.run, null);
  assert.deepEqual(errors, [], 'console errors');
  await page.close();
});
