/** Driving the fine-tuning page in Chromium for the tests: its state (`window.lmtuneTune`), waits on it. */
import type { Browser, Page } from 'playwright-core';

export interface PageState {
  ready: boolean;
  busy: string;
  model: { label: string; family: string; params: number; weightBytes: number; files: string[] } | null;
  task: string;
  data: Record<string, { n: number; name: string }>;
  run: { step: number; maxSteps: number; method: string; losses: { step: number; loss: number }[] } | null;
  steps: { step: number; loss: number; ms: number }[];
  evals: { step: number; metric: string; accuracy: number; devLoss: number; n: number }[];
  errors: { during: string; message: string; hint: string }[];
  trained: { steps: number; stopped: boolean } | null;
  files: string[] | null;
  paused?: boolean;
}

/** a new page of the app at `url`, its console errors collected, once its worker is ready */
export async function openPage(browser: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1400 }, acceptDownloads: true });
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await until(page, 'the worker', (s) => s.ready, 20_000);
  return { page, errors };
}

export const stateOf = (page: Page): Promise<PageState> => page.evaluate(() => JSON.parse(JSON.stringify((globalThis as unknown as { lmtuneTune: unknown }).lmtuneTune)) as PageState);

/** waits for the page's state to satisfy `ok`; a message shown on the page fails the wait, beyond the `expectedErrors` */
export async function until(page: Page, what: string, ok: (s: PageState) => boolean, timeoutMs: number, expectedErrors = 0): Promise<PageState> {
  const t0 = Date.now();
  for (;;) {
    const s = await stateOf(page);
    if (ok(s)) return s;
    if (s.errors.length > expectedErrors) throw new Error(`waiting for ${what}, the page shows: ${JSON.stringify(s.errors)}`);
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what} (steps ${s.steps.length}, busy "${s.busy}")`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** the files a page's download links give, saved under `dir` */
export async function saveDownloads(page: Page, names: readonly string[], dir: string): Promise<void> {
  const { join } = await import('node:path');
  for (const n of names) {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click(`#dl-${n.replace(/[^a-z0-9]/gi, '-')}`)]);
    if (dl.suggestedFilename() !== n) throw new Error(`download ${n} came as ${dl.suggestedFilename()}`);
    await dl.saveAs(join(dir, n));
  }
}
