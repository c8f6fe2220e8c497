/**
 * The core runs in a browser: every non-test file of the core layers (docs/ARCHITECTURE.md) bundles for
 * `platform: 'browser'` with esbuild — `#onnxruntime` resolving to onnxruntime-web — and the bundle holds
 * no Node import. The lint rule forbids the imports by name; this test catches what a name does not show
 * (a dependency that pulls in Node, a condition that resolves to the Node build).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const CORE = ['src/util', 'src/engine', 'src/projection', 'src/models', 'src/heads', 'src/tasks', 'src/peft', 'src/optim'];

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (p.endsWith('.ts') && !/\.test(-util)?\.ts$|test-fixtures\.ts$|testing\.ts$/.test(p)) out.push(p);
  }
  return out;
}

test('the core bundles for the browser with no Node import', { timeout: 120_000 }, async () => {
  const entries = CORE.flatMap((d) => sources(d));
  assert.ok(entries.length > 50, `found ${entries.length} core files`);
  const res = await build({
    entryPoints: entries,
    bundle: true,
    platform: 'browser',
    format: 'esm',
    write: false,
    outdir: 'core-bundle',
    splitting: true,
    logLevel: 'silent',
    metafile: true,
  }).catch((e: { errors?: { text: string; location?: { file: string; line: number } | null }[] }) => {
    const lines = (e.errors ?? []).map((m) => `${m.location?.file}:${m.location?.line}: ${m.text}`);
    assert.fail(`the core does not bundle for the browser:\n${[...new Set(lines)].join('\n')}`);
  });
  const inputs = Object.keys(res.metafile.inputs);
  const nodeOnly = inputs.filter((f) => /onnxruntime-node|^node:/.test(f));
  assert.deepEqual(nodeOnly, [], 'Node-only modules in the browser bundle');
  assert.ok(inputs.some((f) => f.includes('onnxruntime-web')), '#onnxruntime resolved to onnxruntime-web');
});
