/**
 * `lmtune select run --projection kronecker` end to end on the embedded model: the datastore headers
 * record the kind (and the factored Adam feature of the pool), the dimension is --proj-dim exactly, and a
 * kill -9 between gradient shards resumes to a byte-identical selection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const MODEL = join(ROOT, 'assets/tiny-english-lm');

const HARNESS = `
const { Command } = await import(${JSON.stringify(join(ROOT, 'node_modules/commander/index.js'))});
await import(${JSON.stringify(join(ROOT, 'src/node/host.ts'))});
const { register } = await import(${JSON.stringify(join(ROOT, 'src/cli/select.ts'))});
const program = new Command();
program.exitOverride();
register(program);
await program.parseAsync(['node', 'lmtune', ...process.argv.slice(1)]);
`;

function run(args: string[], fault?: string): { status: number | null; signal: NodeJS.Signals | null; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', HARNESS, ...args], {
    encoding: 'utf8',
    cwd: ROOT,
    env: { ...process.env, LMTUNE_THREADS: '1', ...(fault ? { LMTUNE_FAULT: fault } : {}) },
  });
  return { status: r.status, signal: r.signal, stderr: r.stderr };
}

test('select run --projection kronecker: headers record the kind, kill -9 between shards resumes byte-identically', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-less-kron-'));
  try {
    const pool = join(tmp, 'pool.jsonl');
    writeFileSync(pool, readFileSync(join(SHARED_DATA, 'instruct-pool/pool.jsonl'), 'utf8').split('\n').filter((l, i) => l && i % 500 === 7).join('\n') + '\n');
    const target = join(tmp, 'target.jsonl');
    writeFileSync(target, readFileSync(join(SHARED_DATA, 'instruct-pool/targets/trec_target.jsonl'), 'utf8').split('\n').filter((l, i) => l && i % 4 === 0).join('\n') + '\n');
    const common = ['select', 'run', '--model', MODEL, '--pool', pool, '--target', target, '--truncation', 'left', '--warmup-percentage', '0.2', '--warmup-epochs', '2', '--warmup-batch-size', '4', '--warmup-lr', '1e-3', '--projection', 'kronecker', '--proj-dim', '64', '--shard-rows', '16', '--grad-batch-size', '8', '--percentage', '0.25', '--threads', '1', '--no-progress'];
    const base = join(tmp, 'base');
    const r0 = run([...common, '--out', base]);
    assert.equal(r0.status, 0, r0.stderr);
    const selected = readFileSync(join(base, 'selected.jsonl'));
    assert.equal(selected.toString().trim().split('\n').length, 15);
    const pHeader = JSON.parse(readFileSync(join(base, 'grads/epoch-1/pool/dim64/header.json'), 'utf8')) as { projection: { kind: string }; feature: string; dim: number };
    const tHeader = JSON.parse(readFileSync(join(base, 'grads/epoch-1/target/dim64/header.json'), 'utf8')) as { projection: { kind: string }; feature: string };
    assert.equal(pHeader.projection.kind, 'kronecker');
    assert.equal(pHeader.feature, 'adam-factored');
    assert.equal(pHeader.dim, 64);
    assert.equal(tHeader.feature, 'sgd');
    const dir = join(tmp, 'killed');
    const killed = run([...common, '--out', dir], 'select:grads:epoch-1:pool:1');
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    const resumed = run(['select', 'run', '--out', dir, '--no-progress']);
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.ok(readFileSync(join(dir, 'selected.jsonl')).equals(selected), 'the resumed selection differs');
    assert.ok(readFileSync(join(dir, 'scores.csv')).equals(readFileSync(join(base, 'scores.csv'))), 'the resumed scores differ');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
