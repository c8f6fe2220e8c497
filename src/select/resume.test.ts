/**
 * kill -9 during `lmtune select run` (in the warmup's training loop, between a warmup checkpoint and
 * its epoch copy, between gradient shards, after the scores, after the selection) and `select run
 * --out DIR` again: selected.jsonl and scores.csv are byte-identical to an uninterrupted run's, and a
 * finished run returns without recomputing anything.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MODEL, POOL, TARGET, runSelect as run } from './select-cli.test-util.ts';


test('kill -9 at 6 points of select run, then resume: byte-identical selection', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-less-kill-'));
  try {
    // 60 pool rows from every source (every 500th line) and 12 target rows
    const pool = join(tmp, 'pool.jsonl');
    writeFileSync(pool, readFileSync(POOL, 'utf8').split('\n').filter((l, i) => l && i % 500 === 7).join('\n') + '\n');
    const target = join(tmp, 'target.jsonl');
    writeFileSync(target, readFileSync(TARGET, 'utf8').split('\n').filter((l, i) => l && i % 4 === 0).join('\n') + '\n');
    const common = ['select', 'run', '--model', MODEL, '--pool', pool, '--target', target, '--truncation', 'left', '--warmup-percentage', '0.2', '--warmup-epochs', '2', '--warmup-batch-size', '4', '--warmup-lr', '1e-3', '--proj-dim', '64', '--shard-rows', '16', '--grad-batch-size', '8', '--percentage', '0.25', '--threads', '1', '--no-progress'];
    const base = join(tmp, 'base');
    const r0 = run([...common, '--out', base]);
    assert.equal(r0.status, 0, r0.stderr);
    const expected = ['selected.jsonl', 'scores.csv'].map((f) => readFileSync(join(base, f)));
    assert.equal(expected[0]!.toString().trim().split('\n').length, 15);
    // the report is one self-contained file with the mix table and the score plot
    const html = readFileSync(join(base, 'report.html'), 'utf8');
    assert.ok(html.includes('<svg') && html.includes('Selected mix against the pool') && !/<script|<link|src="http/.test(html));

    // a finished run returns at once: nothing is rewritten
    const before = statSync(join(base, 'selected.jsonl')).mtimeMs;
    const again = run(['select', 'run', '--out', base, '--no-progress']);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(statSync(join(base, 'selected.jsonl')).mtimeMs, before);

    for (const fault of ['checkpoint:3:partial', 'select:warmup:snapshot:2', 'select:grads:epoch-1:pool:1', 'select:grads:epoch-2:target:0', 'select:match:scores-written', 'select:write:selection-written']) {
      const dir = join(tmp, fault.replace(/:/g, '_'));
      const killed = run([...common, '--out', dir], fault);
      assert.equal(killed.signal, 'SIGKILL', `${fault}: the process should have been killed (status ${killed.status}, ${killed.stderr})`);
      const resumed = run(['select', 'run', '--out', dir, '--no-progress']);
      assert.equal(resumed.status, 0, `${fault}: ${resumed.stderr}`);
      ['selected.jsonl', 'scores.csv'].forEach((f, i) => assert.ok(readFileSync(join(dir, f)).equals(expected[i]!), `${fault}: ${f} differs from the uninterrupted run`));
    }

    // another model, projection or pool in the same folder is refused
    const other = run([...common, '--proj-seed', '1', '--out', base]);
    assert.equal(other.status, 1);
    assert.match(other.stderr, /holds a selection run with grads/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
