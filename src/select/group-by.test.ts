/**
 * `select run --group-by label` scores each pool row against the target's classes: it must equal the
 * reference's grouping on a target file whose "subtask" is each row's label (bytes of scores.csv and
 * selected.jsonl), and a target row without a label is an error naming file:line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MODEL, POOL, TARGET, runSelect as run } from './select-cli.test-util.ts';

test('select run --group-by label equals grouping by a "subtask" that is the label; a row without a label is an error naming file:line', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-less-groupby-'));
  try {
    const pool = join(tmp, 'pool.jsonl');
    writeFileSync(pool, readFileSync(POOL, 'utf8').split('\n').filter((l, i) => l && i % 500 === 7).join('\n') + '\n');
    const lines = readFileSync(TARGET, 'utf8').split('\n').filter((l, i) => l && i % 4 === 0);
    const target = join(tmp, 'target.jsonl');
    writeFileSync(target, lines.join('\n') + '\n');
    const relabelled = join(tmp, 'target-subtask-is-label.jsonl');
    writeFileSync(relabelled, lines.map((l) => { const r = JSON.parse(l) as { label: string }; return JSON.stringify({ ...r, subtask: r.label }); }).join('\n') + '\n');
    const labels = new Set(lines.map((l) => (JSON.parse(l) as { label: string }).label));
    assert.ok(labels.size >= 4, 'fixture: the target subset has several classes');
    const common = ['select', 'run', '--model', MODEL, '--pool', pool, '--truncation', 'left', '--warmup-percentage', '0.2', '--warmup-epochs', '2', '--warmup-batch-size', '4', '--warmup-lr', '1e-3', '--proj-dim', '64', '--grad-batch-size', '8', '--percentage', '0.25', '--threads', '1', '--no-progress'];
    const a = run([...common, '--target', target, '--group-by', 'label', '--out', join(tmp, 'by-label'), '--json']);
    assert.equal(a.status, 0, a.stderr);
    const b = run([...common, '--target', relabelled, '--out', join(tmp, 'by-subtask')]);
    assert.equal(b.status, 0, b.stderr);
    for (const f of ['selected.jsonl', 'scores.csv']) assert.ok(readFileSync(join(tmp, 'by-label', f)).equals(readFileSync(join(tmp, 'by-subtask', f))), f);
    const summary = JSON.parse(a.stdout) as { match: { subtasks: string[] } };
    assert.deepEqual(new Set(summary.match.subtasks), labels);
    // grouping by task instead (one group) scores differently: the flag is not ignored
    const c = run([...common, '--target', target, '--out', join(tmp, 'by-task')]);
    assert.equal(c.status, 0, c.stderr);
    assert.ok(!readFileSync(join(tmp, 'by-task', 'scores.csv')).equals(readFileSync(join(tmp, 'by-label', 'scores.csv'))));

    const unlabelled = join(tmp, 'unlabelled.jsonl');
    writeFileSync(unlabelled, [lines[0], JSON.stringify({ ...(JSON.parse(lines[1]!) as object), label: undefined })].join('\n') + '\n');
    const bad = run([...common, '--target', unlabelled, '--group-by', 'label', '--out', join(tmp, 'bad')]);
    assert.equal(bad.status, 1);
    // refused before any training: no warmup checkpoint was written
    assert.ok(!existsSync(join(tmp, 'bad', 'warmup')));
    assert.match(bad.stderr, new RegExp(`${unlabelled.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: no "label" to group the target rows by`));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
