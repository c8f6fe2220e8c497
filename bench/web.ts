/**
 * `npm run bench -- web`: one MeZO-LoRA step of the embedded model (SST-2 demo data, batch 16) in headless
 * Chromium (the fine-tuning page's worker: onnxruntime-web, wasm, `threads` threads) against the same
 * step in Node (the same session code on onnxruntime-node, same threads), in one run.
 *
 * Step times are medians over the steps after a warm-up. Peaks: Node's is this process's maximum RSS,
 * taken before the browser starts; the browser's is the maximum resident set (VmHWM) of the renderer
 * process that holds the page and its worker (wasm heap included), read from /proc; the worker's wasm heap
 * (onnxruntime's working memory) is reported too.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { MemoryFolder } from '../src/util/folder.ts';
import { configureOrt } from '../src/engine/ort.ts';
import { DEFAULT_SETTINGS, TuneSession } from '../src/web/session.ts';
import { serveRuns } from '../src/serve/server.ts';
import { peakRssMb } from './harness.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const MODEL = join(ROOT, 'assets/tiny-english-lm');
const CHROMIUM = '/usr/bin/chromium';
const STEPS = 23;
const WARMUP = 3;
const BATCH = 16;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** processes descended from `root` whose command line matches `re` */
function descendants(root: number, re: RegExp): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited meanwhile
    }
  }
  const under = (p: number): boolean => {
    for (let q = parent.get(p); q !== undefined && q > 1; q = parent.get(q)) if (q === root) return true;
    return false;
  };
  return [...parent.keys()].filter((p) => {
    try {
      return under(p) && re.test(readFileSync(`/proc/${p}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  });
}

function peakKb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function nodeSteps(threads: number): Promise<number> {
  configureOrt({ threads });
  const s = new TuneSession();
  await s.loadModel(new MemoryFolder('tiny', new Map(readdirSync(MODEL).filter((f) => !f.startsWith('pretrain')).map((f) => [f, new Uint8Array(readFileSync(join(MODEL, f)))]))), threads);
  s.setData('train', s.parseData('sst2-train.jsonl', readFileSync(join(ROOT, 'assets/demo/sst2-train.jsonl'), 'utf8')));
  s.setData('dev', s.parseData('sst2-dev.jsonl', readFileSync(join(ROOT, 'assets/demo/sst2-dev.jsonl'), 'utf8')));
  const ms: number[] = [];
  await s.fineTune({ ...DEFAULT_SETTINGS, steps: STEPS, batchSize: BATCH, evalEvery: 0 }, 16, { onStep: (e) => ms.push(e.ms) });
  return median(ms.slice(WARMUP));
}

export async function benchWeb(threads: number): Promise<Record<string, unknown>> {
  const node = await nodeSteps(threads);
  const nodePeak = peakRssMb();
  if (!existsSync(CHROMIUM)) return { model: 'tiny-english-lm', threads, batch: BATCH, node_mezo_step_ms: node, node_peak_rss_mb: nodePeak, browser: `skipped: no Chromium at ${CHROMIUM}` };
  const server = await serveRuns({ port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  try {
    const page = await browser.newPage();
    await page.goto(`${server.tuneUrl}?threads=${threads}`);
    type S = { ready: boolean; busy: string; model: unknown; data: Record<string, unknown>; trained: unknown; errors: unknown[]; steps: { ms: number }[]; wasmBytes: number };
    const until = async (ok: (s: S) => boolean): Promise<S> => {
      for (const t0 = Date.now(); ; ) {
        const s = (await page.evaluate(() => JSON.parse(JSON.stringify((globalThis as unknown as { lmtuneTune: unknown }).lmtuneTune)))) as S;
        if (s.errors.length) throw new Error(`the page shows ${JSON.stringify(s.errors)}`);
        if (ok(s)) return s;
        if (Date.now() - t0 > 300_000) throw new Error('the page did not finish in 5 minutes');
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    await until((s) => s.ready);
    await page.click('#load-embedded');
    await until((s) => s.model !== null && s.busy === '');
    await page.click('#load-demo-data');
    await until((s) => s.data.dev !== undefined && s.busy === '');
    await page.fill('#dev-limit', '16');
    await page.fill('#steps', String(STEPS));
    await page.fill('#batch', String(BATCH));
    await page.fill('#eval-every', '0');
    await page.click('#train');
    const done = await until((s) => s.trained !== null && s.busy === '');
    const renderers = descendants(process.pid, /--type=renderer/);
    const browserPeak = Math.max(0, ...renderers.map(peakKb)) / 1024;
    const browserMs = median(done.steps.slice(WARMUP).map((s) => s.ms));
    return {
      model: 'tiny-english-lm',
      threads,
      batch: BATCH,
      steps_timed: STEPS - WARMUP,
      browser_mezo_step_ms: browserMs,
      node_mezo_step_ms: node,
      browser_over_node: browserMs / node,
      browser_peak_mb: browserPeak,
      browser_wasm_heap_mb: done.wasmBytes / 1048576,
      node_peak_rss_mb: nodePeak,
    };
  } finally {
    await browser.close();
    await server.close();
  }
}
