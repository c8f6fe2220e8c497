/**
 * The fine-tuning page as a set of static files (Node side): the page script, the worker bundled with
 * esbuild for the browser (the core with `#onnxruntime` → onnxruntime-web's wasm build), uPlot,
 * onnxruntime-web's wasm runtime files and the embedded model and demo data. `lmtune serve` serves them
 * from memory; `npm run build:web` writes them to dist/web/. Every URL is relative, so the tree works
 * under any path of any static server that sends the cross-origin isolation headers (`WEB_HEADERS`).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LmtuneError } from '../util/errors.ts';
import { EMBEDDED_DATA, EMBEDDED_MODEL } from './protocol.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HERE = fileURLToPath(new URL('./', import.meta.url));

/** COOP + COEP make the page cross-origin isolated: SharedArrayBuffer, so threaded wasm */
export const WEB_HEADERS: Readonly<Record<string, string>> = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};

/** a file of the app: bytes built in memory, or a file on disk */
export type WebFile = { bytes: Uint8Array } | { path: string };

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.jsonl': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
};

export function contentType(name: string): string {
  const dot = name.lastIndexOf('.');
  return TYPES[dot >= 0 ? name.slice(dot) : ''] ?? 'application/octet-stream';
}

function packageDist(pkg: string): string {
  const require = createRequire(import.meta.url);
  try {
    // onnxruntime-web exports no package.json; its entry points live in dist/
    return pkg === 'onnxruntime-web' ? dirname(require.resolve(pkg)) : join(dirname(require.resolve(`${pkg}/package.json`)), 'dist');
  } catch {
    throw new LmtuneError('IO', `the ${pkg} package is not installed`, 'run `npm install` in the lmtune folder');
  }
}

/** bundles the worker; esbuild is a development dependency, so an installed lmtune without it uses dist/web */
async function bundleWorker(): Promise<Uint8Array> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch {
    const built = join(ROOT, 'dist/web/worker.js');
    if (existsSync(built)) return new Uint8Array(readFileSync(built));
    throw new LmtuneError('IO', 'cannot build the page: esbuild is not installed and dist/web/ was not built', 'run `npm install` and `npm run build:web` in the lmtune folder');
  }
  const res = await esbuild.build({
    entryPoints: [join(HERE, 'worker.ts')],
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    write: false,
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
    // onnxruntime-web's wasm-only build, which loads its .mjs/.wasm from env.wasm.wasmPaths (served by us)
    conditions: ['onnxruntime-web-use-extern-wasm'],
    plugins: [
      {
        name: 'onnxruntime-web',
        setup(b) {
          b.onResolve({ filter: /^#onnxruntime$/ }, () => b.resolve('onnxruntime-web/wasm', { kind: 'import-statement', resolveDir: ROOT }).then((r) => ({ path: r.path })));
        },
      },
    ],
  });
  return res.outputFiles[0]!.contents;
}

/** every file of the app by its relative URL */
export async function webFiles(): Promise<Map<string, WebFile>> {
  const files = new Map<string, WebFile>();
  files.set('index.html', { path: join(HERE, 'index.html') });
  files.set('page.js', { path: join(HERE, 'page.js') });
  files.set('worker.js', { bytes: await bundleWorker() });
  const uplot = packageDist('uplot');
  files.set('uPlot.iife.min.js', { path: join(uplot, 'uPlot.iife.min.js') });
  files.set('uPlot.min.css', { path: join(uplot, 'uPlot.min.css') });
  const ortDist = packageDist('onnxruntime-web');
  for (const f of ['ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm']) files.set(`ort/${f}`, { path: join(ortDist, f) });
  for (const f of EMBEDDED_MODEL.files) files.set(`${EMBEDDED_MODEL.dir}/${f}`, { path: join(ROOT, EMBEDDED_MODEL.dir, f) });
  for (const f of Object.values(EMBEDDED_DATA)) files.set(f, { path: join(ROOT, f) });
  return files;
}

export function fileBytes(f: WebFile): Uint8Array {
  return 'bytes' in f ? f.bytes : new Uint8Array(readFileSync(f.path));
}
