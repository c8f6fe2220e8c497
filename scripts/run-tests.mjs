/* global process, console */
// Runs every *.test.ts under src/ with Node's built-in test runner (Node 20 has no --test globs), with Node as the
// core's host (files by path), a 5-minute limit per test, and a forced exit so an open handle cannot hang CI.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}
const filter = process.argv.slice(2);
let files = find('src', []).sort();
if (filter.length) files = files.filter((f) => filter.some((s) => f.includes(s)));
if (!files.length) { console.error('no test files matched'); process.exit(1); }
const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', './src/node/host.ts', '--test', '--test-timeout=300000', '--test-force-exit', '--test-concurrency=2', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
