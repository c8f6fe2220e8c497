/** Debian's Chromium for the browser tests, driven by playwright-core (no browser download). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
/** false, or why the browser tests skip */
export const CHROMIUM_SKIP: string | false = existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM} (apt-get install -y chromium); browser tests skipped`;
export const ROOT = new URL('../../', import.meta.url).pathname;
export const EMBEDDED_MODEL = join(ROOT, 'assets/tiny-english-lm');
/** where the tests leave screenshots of the main views (gitignored) */
export const SCREENSHOTS = join(ROOT, 'runs/test-screenshots');

/** headless, with the background networking off: this machine's closed network refuses it */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
