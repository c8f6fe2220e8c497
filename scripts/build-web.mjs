/* global process, console */
// `npm run build:web`: the fine-tuning page as static files in dist/web/ (or the folder given), for any
// static server that sends `Cross-Origin-Opener-Policy: same-origin` and
// `Cross-Origin-Embedder-Policy: require-corp` (needed for threaded wasm). Run through tsx (see package.json).
import { mkdirSync, writeFileSync, renameSync, rmSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileBytes, webFiles, WEB_HEADERS } from '../src/web/build.ts';

const out = resolve(process.argv[2] ?? 'dist/web');
const tmp = `${out}.tmp-${process.pid}`;
rmSync(tmp, { recursive: true, force: true });
let bytes = 0;
const files = await webFiles();
for (const [name, f] of files) {
  const p = join(tmp, name);
  mkdirSync(dirname(p), { recursive: true });
  const b = fileBytes(f);
  writeFileSync(p, b);
  bytes += b.length;
}
// swapped in whole: a half-written build never replaces a working one
if (existsSync(out)) rmSync(out, { recursive: true });
mkdirSync(dirname(out), { recursive: true });
renameSync(tmp, out);
console.log(`wrote ${files.size} files (${(bytes / 1048576).toFixed(1)} MB) to ${out}`);
console.log(`serve it with these headers: ${Object.entries(WEB_HEADERS).map(([k, v]) => `${k}: ${v}`).join(', ')}`);
