// The fine-tuning page in real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core; no
// browser is downloaded), served by `lmtune serve` without --runs: the embedded model loads, zero-shot
// dev accuracy shows, MeZO-LoRA steps run (paused and resumed) until the dev loss falls, the adapters and
// trajectory download, and `lmtune mezo replay` in Node rebuilds the downloaded adapters bit for bit. Bad
// input (a folder without weights, an unknown architecture, a malformed data row) shows a message naming
// what and where. No test sees a console error. Screenshots go to runs/test-screenshots/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { extname, join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM_SKIP, EMBEDDED_MODEL, ROOT, SCREENSHOTS, launchChromium } from '../serve/chromium.test-util.ts';
import { serveRuns, type Dashboard } from '../serve/server.ts';
import { replayRun } from '../cli/mezo.ts';
import { parseSafetensors } from '../models/safetensors.ts';
import { MemoryFolder } from '../util/folder.ts';
import { asLanguageModel, loadTransformer } from '../heads/model.ts';
import { runEvaluation } from '../tasks/index.ts';
import { DEFAULT_SETTINGS, TuneSession } from './session.ts';
import { openPage as openPageAt, stateOf, until, type PageState } from './page.test-util.ts';

const SKIP = CHROMIUM_SKIP;
const MODEL = EMBEDDED_MODEL;
const SHOTS = SCREENSHOTS;

let browser: Browser | null = null;
let server: Dashboard | null = null;
let tmp = '';

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'lmtune-web-'));
  if (SKIP) return;
  mkdirSync(SHOTS, { recursive: true });
  server = await serveRuns({ port: 0 });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  rmSync(tmp, { recursive: true, force: true });
});

const openPage = (): Promise<{ page: Page; errors: string[] }> => openPageAt(browser!, server!.tuneUrl);

test('without --runs, serve redirects / to the page, sent cross-origin isolated', { skip: SKIP }, async () => {
  const root = await fetch(server!.url, { redirect: 'manual' });
  assert.equal(root.status, 302);
  assert.equal(root.headers.get('location'), '/tune/');
  for (const f of ['', 'worker.js', 'ort/ort-wasm-simd-threaded.wasm']) {
    const r = await fetch(server!.tuneUrl + f);
    assert.equal(r.status, 200, f);
    assert.equal(r.headers.get('cross-origin-opener-policy'), 'same-origin', f);
    assert.equal(r.headers.get('cross-origin-embedder-policy'), 'require-corp', f);
    await r.arrayBuffer();
  }
  assert.equal((await fetch(server!.url + 'run?id=x')).status, 404);
  // with --runs: the dashboard at /, linking the page, which is served too
  const both = await serveRuns({ runs: tmp, port: 0 });
  try {
    const list = await fetch(both.url);
    assert.equal(list.status, 200);
    assert.match(await list.text(), /<a href="\/tune\/">/);
    const tune = await fetch(both.tuneUrl);
    assert.equal(tune.status, 200);
    assert.equal(tune.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.match(await tune.text(), /fine-tune a language model in this tab/);
  } finally {
    await both.close();
  }
});

test('the page fine-tunes the embedded model with MeZO-LoRA, and Node replays its trajectory to the same bits', { skip: SKIP, timeout: 90_000 }, async (t) => {
  const { page, errors } = await openPage();
  assert.equal(await page.evaluate(() => (globalThis as unknown as { crossOriginIsolated: boolean }).crossOriginIsolated), true, 'the page is cross-origin isolated (threaded wasm)');
  await page.click('#load-embedded');
  const loaded = await until(page, 'the model', (s) => s.model !== null && s.busy === '', 20_000);
  assert.equal(loaded.model!.family, 'gpt2');
  await page.click('#load-demo-data');
  const data = await until(page, 'the data', (s) => s.data.dev !== undefined && s.busy === '', 10_000);
  // the same counts as the CLI reads from the files (one example per non-empty line)
  for (const w of ['train', 'dev']) assert.equal(data.data[w]!.n, readFileSync(join(ROOT, `assets/demo/sst2-${w}.jsonl`), 'utf8').split('\n').filter(Boolean).length, w);

  await page.fill('#dev-limit', '64');
  await page.click('#evaluate');
  const zero = (await until(page, 'the zero-shot evaluation', (s) => s.evals.length === 1 && s.busy === '', 20_000)).evals[0]!;
  assert.equal(zero.n, 64);
  assert.ok(zero.accuracy >= 0 && zero.accuracy <= 1 && zero.devLoss > 0);
  assert.equal(await page.locator('#examples tr').count(), 7, 'six scored examples and a header');
  await page.screenshot({ path: join(SHOTS, 'tune-zero-shot.png'), fullPage: true });

  // k-shot: the accuracy `lmtune eval --shots 2 --train … --limit 16` computes in Node from the same files
  await page.fill('#dev-limit', '16');
  await page.fill('#shots', '2');
  await page.click('#evaluate');
  const kShot = (await until(page, 'the 2-shot evaluation', (s) => s.evals.length === 2 && s.busy === '', 20_000)).evals[1]!;
  const cli = await runEvaluation(asLanguageModel(await loadTransformer(MODEL, { threads: 1 })), { task: 'sst2', data: join(ROOT, 'assets/demo/sst2-dev.jsonl'), train: join(ROOT, 'assets/demo/sst2-train.jsonl'), shots: 2, limit: 16 });
  assert.equal(kShot.n, 16);
  assert.equal(kShot.accuracy, cli.value, '2-shot accuracy, page vs CLI');
  assert.match((await page.textContent('#eval-result')) ?? '', /2-shot accuracy/);
  await page.fill('#shots', '0');
  await page.fill('#dev-limit', '64');

  const STEPS = 24;
  await page.fill('#steps', String(STEPS));
  await page.fill('#lr', '0.01');
  await page.fill('#eval-every', '0');
  await page.click('#train');
  await until(page, 'some steps', (s) => s.steps.length >= 3, 30_000);
  await page.click('#pause');
  const held = await until(page, 'the pause', (s) => s.paused === true, 5_000);
  await new Promise((r) => setTimeout(r, 800));
  const still = await stateOf(page);
  // at most the step under way when pause arrived finishes
  assert.ok(still.steps.length <= held.steps.length + 1 && still.steps.length < STEPS, `paused at ${held.steps.length}, then ${still.steps.length} steps`);
  await page.click('#resume');
  const done = await until(page, 'the run', (s) => s.trained !== null && s.busy === '', 45_000);
  assert.equal(done.trained!.steps, STEPS);
  assert.deepEqual(done.steps.map((s) => s.step), Array.from({ length: STEPS }, (_, i) => i + 1), 'one loss point per step');
  assert.equal(Number(await page.getAttribute('#loss-chart', 'data-points')), STEPS, 'the loss curve has every step');
  const last = done.evals[done.evals.length - 1]!;
  assert.equal(last.step, STEPS);
  assert.ok(last.devLoss < zero.devLoss, `dev loss falls: ${zero.devLoss} → ${last.devLoss}`);
  await page.screenshot({ path: join(SHOTS, 'tune-trained.png'), fullPage: true });

  await page.click('#download');
  const names = (await until(page, 'the downloads', (s) => s.files !== null, 10_000)).files!;
  assert.deepEqual([...names].sort(), ['adapter_config.json', 'adapter_model.safetensors', 'initial_adapter_model.safetensors', 'run.tar', 'trajectory.jsonl']);
  const got = join(tmp, 'downloads');
  mkdirSync(got);
  for (const n of names) {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click(`#dl-${n.replace(/[^a-z0-9]/gi, '-')}`)]);
    assert.equal(dl.suggestedFilename(), n);
    await dl.saveAs(join(got, n));
  }
  assert.equal(readFileSync(join(got, 'trajectory.jsonl'), 'utf8').trim().split('\n').length, STEPS + 1, 'a header and one line per step');

  // the CLI's replay: the base model with the initial adapters, then the browser's trajectory
  const initial = join(tmp, 'initial');
  mkdirSync(initial);
  for (const f of ['config.json', 'vocab.json', 'merges.txt', 'model.safetensors']) copyFileSync(join(MODEL, f), join(initial, f));
  copyFileSync(join(got, 'adapter_config.json'), join(initial, 'adapter_config.json'));
  copyFileSync(join(got, 'initial_adapter_model.safetensors'), join(initial, 'adapter_model.safetensors'));
  const out = join(tmp, 'replay');
  assert.deepEqual(await replayRun(initial, join(got, 'trajectory.jsonl'), out), { steps: STEPS });
  const tensors = (dir: string): Map<string, Float32Array> =>
    new Map([...parseSafetensors(new MemoryFolder(dir, new Map([['a', new Uint8Array(readFileSync(join(dir, 'adapter_model.safetensors')))]])), 'a').tensors].map(([k, t]) => [k, t.data as Float32Array]));
  const browserAdapters = tensors(got);
  const nodeAdapters = tensors(out);
  const before0 = tensors(initial);
  assert.deepEqual([...nodeAdapters.keys()].sort(), [...browserAdapters.keys()].sort());
  let changed = 0;
  for (const [k, b] of browserAdapters) {
    const n = nodeAdapters.get(k)!;
    assert.ok(Buffer.from(n.buffer, n.byteOffset, n.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength)), `adapter ${k}: Node's replay differs from the page's weights`);
    if (!Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(before0.get(k)!.buffer, before0.get(k)!.byteOffset, before0.get(k)!.byteLength))) changed++;
  }
  assert.equal(changed, browserAdapters.size, 'every adapter tensor moved during the run');

  // the same run in Node (onnxruntime-node): the weights differ only through the logged projected
  // gradients, which carry the runtimes' float32 differences (wasm's long reductions, see the notes)
  const s = new TuneSession();
  await s.loadModel(new MemoryFolder('tiny', new Map(['config.json', 'vocab.json', 'merges.txt', 'model.safetensors'].map((f) => [f, new Uint8Array(readFileSync(join(MODEL, f)))]))), 1);
  for (const w of ['train', 'dev'] as const) s.setData(w, s.parseData(`assets/demo/sst2-${w}.jsonl`, readFileSync(join(ROOT, `assets/demo/sst2-${w}.jsonl`), 'utf8')));
  await s.fineTune({ ...DEFAULT_SETTINGS, steps: STEPS, batchSize: 16, lr: 0.01, evalEvery: 0 }, 64);
  const grads = (text: string): number[] => text.trim().split('\n').slice(1).map((l) => (JSON.parse(l) as { grads: number[] }).grads[0]!);
  const gb = grads(readFileSync(join(got, 'trajectory.jsonl'), 'utf8'));
  const gn = grads(new TextDecoder().decode(s.downloads()['trajectory.jsonl']));
  const rel = gb.map((g, i) => Math.abs(g - gn[i]!) / Math.max(1e-12, Math.abs(gn[i]!)));
  t.diagnostic(`projected gradient, browser vs Node: step 0 relative difference ${rel[0]!.toExponential(2)}, largest over ${STEPS} steps ${Math.max(...rel).toExponential(2)}`);
  assert.ok(rel[0]! < 1e-2, `step 0's projected gradient: browser ${gb[0]}, Node ${gn[0]}`);

  // stop: a long run ends after the step under way, and its adapters can still be downloaded
  await page.fill('#steps', '1000');
  await page.click('#train');
  await until(page, 'a second run', (s) => s.trained === null && s.steps.length >= 2, 20_000);
  await page.click('#stop');
  const stopped = await until(page, 'the stop', (s) => s.trained !== null && s.busy === '', 20_000);
  assert.ok(stopped.trained!.steps >= 2 && stopped.trained!.steps < 10, `stopped after ${stopped.trained!.steps} steps`);
  assert.equal(stopped.steps.length, stopped.trained!.steps);
  const mem = (await page.textContent('#stat-mem')) ?? '';
  const weightsMb = (4 * (await loadTransformer(MODEL, { threads: 1 })).weights.numParams()) / 1048576;
  // the weights plus a wasm heap that holds at least one copy of them (they are fed to every run)
  const shownMem = /^memory (\d+) MB \(weights ([\d.]+) MB \+ wasm heap (\d+) MB\)$/.exec(mem);
  assert.ok(shownMem, `memory shown: "${mem}"`);
  assert.equal(shownMem[2], weightsMb.toFixed(1));
  assert.ok(Number(shownMem[3]) > weightsMb, `wasm heap ${shownMem[3]} MB`);
  t.diagnostic(`page memory display: ${mem}`);
  assert.deepEqual(errors, [], 'console errors');
  await page.close();
});

test('npm run build:web: the static files work under a plain static server with the isolation headers', { skip: SKIP, timeout: 40_000 }, async () => {
  const dist = join(tmp, 'dist-web');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/build-web.mjs'), dist], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  // any static server: path → file, the two headers, nothing lmtune-specific
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
  const plain = createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/site\//, '') || 'index.html';
    const file = join(dist, rel);
    if (!file.startsWith(dist) || !existsSync(file)) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream', 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((ok) => plain.listen(0, '127.0.0.1', ok));
  try {
    const port = (plain.address() as { port: number }).port;
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${port}/site/`);
    await until(page, 'the worker', (s) => s.ready, 20_000);
    await page.click('#load-embedded');
    await until(page, 'the model', (s) => s.model !== null && s.busy === '', 20_000);
    await page.click('#load-demo-data');
    await until(page, 'the data', (s) => s.data.dev !== undefined && s.busy === '', 10_000);
    await page.fill('#dev-limit', '16');
    await page.click('#evaluate');
    const ev = (await until(page, 'an evaluation', (s) => s.evals.length === 1 && s.busy === '', 20_000)).evals[0]!;
    assert.equal(ev.n, 16);
    assert.deepEqual(errors, [], `console errors under a plain server: ${errors.join(' | ')}`);
    await page.close();
  } finally {
    await new Promise((ok) => plain.close(ok));
  }
});

test('bad input in the page: a visible message naming what and where, no console error', { skip: SKIP, timeout: 60_000 }, async () => {
  const { page, errors } = await openPage();
  // the parameter count the CLI's loader finds in the same folder
  const loadedParams = (await loadTransformer(MODEL, { threads: 1 })).weights.numParams();
  const shown = async (what: string, n: number): Promise<string> => {
    const s = await page.waitForFunction((k) => (globalThis as unknown as { lmtuneTune: PageState }).lmtuneTune.errors.length >= k, n, { timeout: 10_000 }).then(() => stateOf(page));
    assert.equal(s.errors.length, n, what);
    assert.ok(await page.locator('#messages .error').first().isVisible(), `${what}: the message is visible`);
    await until(page, 'the worker to be idle', (x) => x.busy === '', 5_000, n);
    return s.errors[n - 1]!.message;
  };

  const noWeights = join(tmp, 'no-weights');
  mkdirSync(noWeights);
  for (const f of ['config.json', 'vocab.json', 'merges.txt']) copyFileSync(join(MODEL, f), join(noWeights, f));
  await page.setInputFiles('#model-folder', noWeights);
  assert.match(await shown('a folder without weights', 1), /^no-weights: no weights \(\*\.safetensors\)/);

  const mamba = join(tmp, 'mamba-model');
  mkdirSync(mamba);
  writeFileSync(join(mamba, 'config.json'), JSON.stringify({ model_type: 'mamba', architectures: ['MambaForCausalLM'], hidden_size: 8 }));
  copyFileSync(join(MODEL, 'model.safetensors'), join(mamba, 'model.safetensors'));
  await page.setInputFiles('#model-folder', mamba);
  const arch = await shown('an unsupported architecture', 2);
  assert.match(arch, /mamba/i);
  assert.match(arch, /mamba-model/);

  // a good folder picked from disk loads (its pretraining logs are left out: only model files are read)
  await page.setInputFiles('#model-folder', MODEL);
  const picked = await until(page, 'the picked model', (s) => s.model !== null && s.busy === '', 20_000, 2);
  assert.deepEqual({ ...picked.model, files: [...picked.model!.files].sort() }, { label: 'tiny-english-lm', family: 'gpt2', params: loadedParams, weightBytes: 4 * loadedParams, files: ['config.json', 'merges.txt', 'model.safetensors', 'pretrain_summary.json', 'vocab.json'] });
  await page.setInputFiles('#train-file', { name: 'mine.jsonl', mimeType: 'application/json', buffer: Buffer.from('{"sentence":"fine .","label":1}\n{"sentence":"no label ."}\n') });
  const row = await shown('a malformed data row', 3);
  assert.match(row, /^mine\.jsonl:2: /);
  assert.equal((await stateOf(page)).data.train, undefined, 'the bad file was not taken');

  // a tokenizer from another model: more token ids than the embedding has rows
  const mismatch = join(tmp, 'other-tokenizer');
  mkdirSync(mismatch);
  for (const f of ['config.json', 'merges.txt', 'model.safetensors']) copyFileSync(join(MODEL, f), join(mismatch, f));
  const rows = (JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as { vocab_size: number }).vocab_size;
  const vocab = JSON.parse(readFileSync(join(MODEL, 'vocab.json'), 'utf8')) as Record<string, number>;
  for (let i = 0; i < 300; i++) vocab[`zzextra${i}`] = rows + i;
  writeFileSync(join(mismatch, 'vocab.json'), JSON.stringify(vocab));
  await page.setInputFiles('#model-folder', mismatch);
  const tok = await shown('a tokenizer that does not match', 4);
  assert.match(tok, new RegExp(`^other-tokenizer: the tokenizer has ${rows + 300} token ids but the model's embedding has ${rows} rows`));

  // a model too big for the tab: refused from its config.json, before its weights are read
  const huge = join(tmp, 'llama-7b');
  mkdirSync(huge);
  writeFileSync(join(huge, 'config.json'), JSON.stringify({ model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, vocab_size: 32000 }));
  copyFileSync(join(MODEL, 'model.safetensors'), join(huge, 'model.safetensors'));
  await page.setInputFiles('#model-folder', huge);
  const big = await shown('a model too big for the tab', 5);
  assert.match(big, /^llama-7b: a llama model of about 6\.7B parameters \(config\.json: 32 layers, hidden size 4096, vocabulary 32000\) needs 25 GB for its float32 weights, more than onnxruntime's wasm heap can hold/);
  const after = await stateOf(page);
  assert.equal(after.model!.label, 'tiny-english-lm', 'the loaded model stays');
  await page.screenshot({ path: join(SHOTS, 'tune-bad-input.png'), fullPage: true });
  assert.deepEqual(errors, [], 'console errors');
  await page.close();
});
