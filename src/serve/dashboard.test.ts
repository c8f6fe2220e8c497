// The runs dashboard and the static report in real headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core; no browser is downloaded): a live training run's loss curve grows on the page and
// ends with one plotted point per log line; an overlay draws one series per run with the moving average
// the test recomputes; a report.html opened from disk shows its numbers and logs no console error.
// Screenshots go to runs/test-screenshots/. Each test skips when Chromium is not installed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM_SKIP, EMBEDDED_MODEL, ROOT, SCREENSHOTS, launchChromium } from './chromium.test-util.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { writeRunReport } from '../train/report.ts';
import { serveRuns, type Dashboard } from './server.ts';

const SKIP = CHROMIUM_SKIP;
const MODEL = EMBEDDED_MODEL;
const SHOTS = SCREENSHOTS;

let browser: Browser | null = null;
let tmp = '';

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'lmtune-dash-'));
  if (SKIP) return;
  mkdirSync(SHOTS, { recursive: true });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** a page that records console errors and uncaught exceptions */
async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  return { page, errors };
}

function lines(path: string): Record<string, number>[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, number>);
}

async function until<T>(what: string, f: () => T | Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** the loss chart draws the raw loss, plus a moving average once the window (n/25 steps, rounded) exceeds 1 */
const lossPoints = (n: number): number => n * (Math.round(n / 25) > 1 ? 2 : 1);

const points = (page: Page, id: string): Promise<number> => page.$eval(`#${id}`, (el) => Number(el.getAttribute('data-points') ?? '0')).catch(() => 0);

/** the moving average of src/report/series.ts, recomputed by a direct sum over each window */
function movingAverageRef(y: number[], w: number): number[] {
  return y.map((_, i) => {
    const lo = Math.max(0, i - w + 1);
    let s = 0;
    for (let j = lo; j <= i; j++) s += y[j]!;
    return s / (i - lo + 1);
  });
}

test('a training run in progress: its loss curve grows on the dashboard, live, to one point per log line', { skip: SKIP }, async () => {
  const runs = join(tmp, 'live');
  mkdirSync(runs);
  const data = join(tmp, 'train.jsonl');
  writeFileSync(data, readFileSync(join(ROOT, 'assets/demo/sst2-train.jsonl'), 'utf8').split('\n').slice(0, 120).join('\n') + '\n');
  const host = join(ROOT, 'src/node/host.ts');
  const args = ['--import', 'tsx', ...(existsSync(host) ? ['--import', host] : []), join(ROOT, 'src/cli/main.ts'), 'train'];
  args.push('--model', MODEL, '--task', 'sst2', '--data', data, '--num-dev', '8', '--optimizer', 'adam', '--lr', '1e-3', '--batch-size', '2', '--max-steps', '400', '--eval-every', '100', '--save-every', '4', '--threads', '1', '--out', join(runs, 'adam-live'));
  const child: ChildProcess = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const dash: Dashboard = await serveRuns({ runs, port: 0, pollMs: 250 });
  try {
    const log = join(runs, 'adam-live', 'log.jsonl');
    await until('the first log lines', () => lines(log).length, (n) => n >= 2 || child.exitCode !== null, 15000);
    assert.equal(child.exitCode, null, `the training run ended early: ${stderr}`);
    const { page, errors } = await openPage();
    await page.goto(dash.url);
    await page.waitForSelector('tr[data-run="adam-live"] .status[data-status="running"]', { timeout: 5000 });
    await page.screenshot({ path: join(SHOTS, 'dashboard-runs.png'), fullPage: true });
    await page.click('a[href="/run?id=adam-live"]');
    await page.waitForSelector('#chart-loss[data-points]', { timeout: 5000 });
    const first = await points(page, 'chart-loss');
    const second = await until('more plotted points', () => points(page, 'chart-loss'), (n) => n > first, 8000);
    assert.ok(second > first, `${first} → ${second} points`);
    await page.screenshot({ path: join(SHOTS, 'dashboard-run-live.png'), fullPage: true });
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    // once the log stops, the page catches up with the file: one point per line and series
    const n = lines(log).length;
    await until('the page to show every log line', () => points(page, 'chart-loss'), (p) => p === lossPoints(n), 5000);
    const shown = await page.$eval('#results', (el) => el.textContent ?? '');
    assert.ok(shown.includes(`steps${n}latest training loss`), `results name step ${n}: ${shown}`);
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await dash.close();
  }
});

/** a synthetic run folder: a real config, a loss with a known formula, evals every 5 steps */
function fakeRun(dir: string, o: { optimizer: string; batch: number; svag?: number; steps: number; lr: number; sde: boolean; broken?: boolean }): number[] {
  mkdirSync(dir, { recursive: true });
  const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: join(ROOT, 'assets/demo/sst2-train.jsonl'), optimizer: o.optimizer, lr: String(o.lr), batchSize: String(o.batch), maxSteps: String(o.steps), svag: String(o.svag ?? 1), evalEvery: '5', numDev: '32' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const loss: number[] = [];
  const log: string[] = [];
  for (let s = 1; s <= o.steps; s++) {
    const l = 0.7 + 0.5 * Math.exp(-s / (o.steps / 3)) + 0.05 * Math.sin(s * (o.svag ?? 1));
    loss.push(l);
    log.push(JSON.stringify({ step: s, loss: l, lr: o.lr, ...(o.sde ? { sde_time: (s * o.lr) / (o.svag ?? 1) } : { projected_grad: 0.1 }) }));
    if (o.broken && s === 3) log.push('{"step": 4, "loss": ');
  }
  writeFileSync(join(dir, 'log.jsonl'), log.join('\n') + '\n');
  const evals = [];
  for (let s = 0; s <= o.steps; s += 5) evals.push(JSON.stringify({ step: s, metric: 'accuracy', value: 0.5 + 0.3 * Math.sin((Math.PI * s) / o.steps), devLoss: 0.8 - 0.004 * s, best: false }));
  writeFileSync(join(dir, 'eval.jsonl'), evals.join('\n') + '\n');
  return loss;
}

test('an overlay of two runs draws two series, each the moving average of its loss; a MeZO run without SDE time is named, not drawn', { skip: SKIP }, async () => {
  const runs = join(tmp, 'overlay');
  const l1 = fakeRun(join(runs, 'svag', 'l1'), { optimizer: 'sgd', batch: 8, steps: 40, lr: 0.1, sde: true });
  const l2 = fakeRun(join(runs, 'svag', 'l2'), { optimizer: 'sgd', batch: 8, svag: 2, steps: 80, lr: 0.1, sde: true });
  fakeRun(join(runs, 'mezo'), { optimizer: 'mezo', batch: 16, steps: 30, lr: 1e-3, sde: false, broken: true });
  const dash = await serveRuns({ runs, port: 0, pollMs: 250 });
  try {
    const { page, errors } = await openPage();
    await page.goto(dash.url);
    for (const id of ['svag/l1', 'svag/l2', 'mezo']) await page.check(`input[name="run"][value="${id}"]`);
    await page.selectOption('select[name="axis"]', 'sde');
    await page.fill('input[name="window"]', '4');
    await Promise.all([page.waitForURL(/\/overlay\?/), page.click('button[type="submit"]')]);
    await page.waitForSelector('#overlay-sde[data-series]', { timeout: 5000 });
    assert.equal(await page.$eval('#overlay-sde', (el) => el.getAttribute('data-series')), '2');
    // uPlot's own data: x aligned on the union of SDE times; each run's y is its smoothed loss at its x
    const data = await page.$eval('#overlay-sde', (el) => (el as unknown as { __lmtuneChart: { u: { data: (number | null)[][] } } }).__lmtuneChart.u.data);
    const x = data[0]!;
    for (const [k, loss, ell] of [[1, l1, 1], [2, l2, 2]] as const) {
      const ref = movingAverageRef(loss, 4);
      const got = x.map((t, i) => [t!, data[k]![i]] as const).filter(([, v]) => v !== null);
      assert.equal(got.length, loss.length);
      got.forEach(([t, v], i) => {
        assert.ok(Math.abs(t - ((i + 1) * 0.1) / ell) < 1e-12, `run ℓ=${ell} point ${i}: SDE time ${t}`);
        assert.ok(Math.abs(v! - ref[i]!) < 1e-12, `run ℓ=${ell} point ${i}: ${v} vs ${ref[i]}`);
      });
    }
    const warn = await page.$eval('#warnings', (el) => el.textContent ?? '');
    assert.match(warn, /mezo: .*left out of this overlay \(no SDE time/);
    assert.match(warn, /mezo\/log\.jsonl:4: malformed line skipped/);
    await page.screenshot({ path: join(SHOTS, 'dashboard-overlay.png'), fullPage: true });
    // in training samples the MeZO run is drawn too: three series, x = step × batch (× 2 under SVAG)
    await page.click('a[href*="axis=samples"]');
    await page.waitForSelector('#overlay-samples[data-series="3"]', { timeout: 5000 });
    // the run page of the run with a malformed line shows the warning and the other lines
    await page.goto(`${dash.url}run?id=mezo`);
    await page.waitForSelector('#chart-loss[data-points]');
    assert.equal(await points(page, 'chart-loss'), lossPoints(30));
    assert.match(await page.$eval('#warnings', (el) => el.textContent ?? ''), /log\.jsonl:4: malformed line skipped/);
    // a run that has only started: empty charts, and its first line arrives live
    mkdirSync(join(runs, 'fresh'));
    writeFileSync(join(runs, 'fresh', 'config.json'), readFileSync(join(runs, 'mezo', 'config.json')));
    writeFileSync(join(runs, 'fresh', 'log.jsonl'), '');
    await page.goto(`${dash.url}run?id=fresh`);
    await page.waitForSelector('#chart-loss[data-points="0"]');
    writeFileSync(join(runs, 'fresh', 'log.jsonl'), '{"step":1,"loss":0.7,"lr":0.001}\n');
    await page.waitForSelector('#chart-loss[data-points="1"]', { timeout: 5000 });
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await dash.close();
  }
});

test('report.html opens from disk with no console errors, names the run and shows its numbers', { skip: SKIP }, async () => {
  const dir = join(tmp, 'report-run');
  fakeRun(dir, { optimizer: 'adam', batch: 4, steps: 40, lr: 1e-3, sde: true });
  const cfg = buildTrainConfig({ model: MODEL, task: 'sst2', data: join(ROOT, 'assets/demo/sst2-train.jsonl'), optimizer: 'adam', lr: '1e-3', batchSize: '4', maxSteps: '40', evalEvery: '5', numDev: '32' });
  const path = writeRunReport(dir, cfg, { sizes: { train: 1000, dev: 32 }, seconds: 12.5 });
  const evals = lines(join(dir, 'eval.jsonl'));
  let best = evals[0]!;
  for (const e of evals) if (e.value! > best.value!) best = e;
  const { page, errors } = await openPage();
  await page.goto(`file://${path}`);
  await page.waitForSelector('#chart-dev-metric[data-points]');
  const text = await page.$eval('body', (el) => el.textContent ?? '');
  assert.match(text, /adam · full/);
  assert.match(text, /1000 train \/ 32 dev examples/);
  assert.match(text, /12\.5 s/);
  assert.match(text, /lmtune train --model /);
  assert.ok(text.includes(`zero-shot devaccuracy ${evals[0]!.value!.toFixed(4)}`), 'zero-shot accuracy');
  assert.ok(text.includes(`best checkpointaccuracy ${best.value!.toFixed(4)} at step ${best.step}`), `best: ${best.value} at ${best.step}`);
  assert.equal(await points(page, 'chart-dev-metric'), evals.length);
  assert.equal(await points(page, 'chart-loss'), lossPoints(40));
  assert.equal(await page.$eval('#chart-dev-metric', (el) => el.querySelector('.u-title')?.textContent), 'Dev accuracy');
  const axisLabels = await page.$$eval('#chart-dev-metric .u-label', (els) => els.map((e) => e.textContent));
  assert.ok(axisLabels.includes('dev accuracy'), `axis labels ${axisLabels.join(', ')}`);
  await page.screenshot({ path: join(SHOTS, 'report.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
