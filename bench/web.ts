/**
 * `npm run bench -- web`: one MeZO-LoRA step (SST-2 demo data, batch 16) of the embedded model and of a
 * GPT-2-small-shaped model (124M, seeded random weights, the embedded model's tokenizer) in headless
 * Chromium (the fine-tuning page's worker: onnxruntime-web, wasm, `threads` threads) against the same
 * step in Node (the same session code on onnxruntime-node, same threads), in one run.
 *
 * Step times are medians over the steps after a warm-up. Peaks: Node's is this process's maximum RSS,
 * taken before the browser starts; the browser's is the maximum resident set (VmHWM) of the renderer
 * process that holds the page and its worker (wasm heap included), read from /proc; the worker's wasm heap
 * (onnxruntime's working memory) is reported too.
 */
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { MemoryFolder } from '../src/util/folder.ts';
import { configureOrt } from '../src/engine/ort.ts';
import { DEFAULT_SETTINGS, TuneSession } from '../src/web/session.ts';
import { serveRuns } from '../src/serve/server.ts';
import { peakRssMb, ratio } from './harness.ts';

const ROOT = new URL('../', import.meta.url).pathname;
const MODEL = join(ROOT, 'assets/tiny-english-lm');
const CHROMIUM = '/usr/bin/chromium';
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

interface Case {
  name: string;
  /** the model folder (tokenizer included) */
  dir: string;
  /** null: the page's embedded-model button */
  pick: boolean;
  steps: number;
  warmup: number;
}

/** where a long run stands, on stderr (stdout is the JSON line) */
const progress = (m: string): void => void process.stderr.write(`[bench web ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

function modelFiles(dir: string): MemoryFolder {
  return new MemoryFolder(dir, new Map(readdirSync(dir).filter((f) => !f.startsWith('pretrain')).map((f) => [f, new Uint8Array(readFileSync(join(dir, f)))])));
}

async function nodeSteps(c: Case, threads: number): Promise<number> {
  configureOrt({ threads });
  const s = new TuneSession();
  await s.loadModel(modelFiles(c.dir), threads);
  s.setData('train', s.parseData('sst2-train.jsonl', readFileSync(join(ROOT, 'assets/demo/sst2-train.jsonl'), 'utf8')));
  s.setData('dev', s.parseData('sst2-dev.jsonl', readFileSync(join(ROOT, 'assets/demo/sst2-dev.jsonl'), 'utf8')));
  const ms: number[] = [];
  await s.fineTune({ ...DEFAULT_SETTINGS, steps: c.steps, batchSize: BATCH, evalEvery: 0 }, 4, { onStep: (e) => ms.push(e.ms) });
  progress(`${c.name}: Node steps (ms) ${ms.map((x) => x.toFixed(0)).join(' ')}`);
  return median(ms.slice(c.warmup));
}

/**
 * GPT-2-small's shape (bench/harness.ts's gpt2Small) saved as a model folder with the embedded model's
 * tokenizer (its ids are all below 50257). Built in a child process, so this process's peak RSS is the
 * session's alone.
 */
function gpt2SmallFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-bench-gpt2-'));
  const script = `import { gpt2Small } from ${JSON.stringify(join(ROOT, 'bench/harness.ts'))}; gpt2Small(1).save(${JSON.stringify(dir)});`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', join(ROOT, 'src/node/host.ts'), '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building the GPT-2-small folder failed: ${r.stderr}`);
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(MODEL, f), join(dir, f));
  return dir;
}

async function browserSteps(c: Case, threads: number): Promise<{ ms: number; peakMb: number; wasmMb: number }> {
  const server = await serveRuns({ port: 0 });
  // a browser per model, so its renderer's peak is this model's
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
        if (Date.now() - t0 > 600_000) throw new Error('the page did not finish in 10 minutes');
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    await until((s) => s.ready);
    if (c.pick) await page.setInputFiles('#model-folder', c.dir);
    else await page.click('#load-embedded');
    await until((s) => s.model !== null && s.busy === '');
    await page.click('#load-demo-data');
    await until((s) => s.data.dev !== undefined && s.busy === '');
    await page.fill('#dev-limit', '4');
    await page.fill('#steps', String(c.steps));
    await page.fill('#batch', String(BATCH));
    await page.fill('#eval-every', '0');
    await page.click('#train');
    progress(`${c.name}: the page is training`);
    const done = await until((s) => s.trained !== null && s.busy === '');
    progress(`${c.name}: browser steps (ms) ${done.steps.map((x) => x.ms.toFixed(0)).join(' ')}`);
    const renderers = descendants(process.pid, /--type=renderer/);
    return { ms: median(done.steps.slice(c.warmup).map((s) => s.ms)), peakMb: Math.max(0, ...renderers.map(peakKb)) / 1024, wasmMb: done.wasmBytes / 1048576 };
  } finally {
    await browser.close();
    await server.close();
  }
}

export async function benchWeb(threads: number): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { bench: 'web', threads, batch: BATCH, method: 'mezo-lora' };
  const cases: Case[] = [{ name: 'tiny-english-lm', dir: MODEL, pick: false, steps: 23, warmup: 3 }];
  let gptDir = '';
  try {
    for (let i = 0; i < 2; i++) {
      // Node first for each model: its peak RSS is then that model's (plus the smaller one's before it)
      if (i === 1) cases.push({ name: 'gpt2-small-shaped', dir: (gptDir = gpt2SmallFolder()), pick: true, steps: 5, warmup: 1 });
      const c = cases[i]!;
      const node = await nodeSteps(c, threads);
      const nodePeak = peakRssMb();
      const r: Record<string, unknown> = { steps_timed: c.steps - c.warmup, node_mezo_step_ms: node, node_peak_rss_mb: nodePeak };
      if (!existsSync(CHROMIUM)) r.browser = `skipped: no Chromium at ${CHROMIUM}`;
      else {
        const b = await browserSteps(c, threads);
        Object.assign(r, { browser_mezo_step_ms: b.ms, browser_over_node: ratio(b.ms, node), browser_peak_mb: b.peakMb, browser_wasm_heap_mb: b.wasmMb });
      }
      out[c.name] = r;
    }
  } finally {
    if (gptDir) rmSync(gptDir, { recursive: true, force: true });
  }
  return out;
}
