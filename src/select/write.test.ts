/**
 * Selection (spec less.md §5 item 6): the bounded heap agrees with a full sort on data full of ties;
 * |top| = floor(p·N) and --max-samples; scores.csv is in (score desc, index asc) order; selected.jsonl
 * holds the pool's lines byte for byte (unicode, escapes, CRLF) with indices that skip blank lines
 * and invalid rows correctly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { TopK, rankAll } from './topk.ts';
import { selectionCount, topIndices, writeSelection } from './write.ts';
import { readChatFile } from './pool.ts';

test('the top-k heap equals the first k of a brute-force sort, ties by index', () => {
  const rng = new Rng(7);
  for (const [n, k] of [[1000, 50], [100, 100], [37, 1], [10, 0]] as const) {
    const scores = Float64Array.from({ length: n }, () => rng.int(20) / 4); // many ties
    const brute = [...Array(n).keys()].sort((a, b) => scores[b]! - scores[a]! || a - b).slice(0, k);
    const h = new TopK(k);
    // push in a shuffled order: the result may not depend on arrival order
    for (const i of rng.permutation(n)) h.push(scores[i]!, i);
    assert.deepEqual(h.sorted().map((e) => e.index), brute, `n=${n} k=${k}`);
    assert.deepEqual([...rankAll(scores)].slice(0, k), brute);
  }
});

test('counts: floor(p·N) and --max-samples, capped at N', () => {
  assert.equal(selectionCount(270679, { percentage: 0.05 }), 13533); // the reference's warmup and selection size
  assert.equal(selectionCount(100, { percentage: 0.29 }), 29);
  assert.equal(selectionCount(10, { percentage: 0.05 }), 0);
  assert.equal(selectionCount(10, { maxSamples: 50 }), 10);
  assert.throws(() => selectionCount(10, { percentage: 0 }), /--percentage/);
  assert.throws(() => selectionCount(10, { maxSamples: 1.5 }), /--max-samples/);
});

test('scores.csv is ranked and selected.jsonl has the pool lines byte for byte', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-select-write-'));
  try {
    const rows = [
      '{"dataset": "a", "messages": [{"role": "user", "content": "héllo \\u00e9 ✓"}, {"role": "assistant", "content": "x"}]}',
      '{"messages":[{"role":"user","content":"two"},{"role":"assistant","content":"y"}],"dataset":"b"}\r',
      '',
      '{"dataset": "a", "messages": [{"role": "user", "content": "tab\\there"}, {"role": "assistant", "content": "z"}]}',
      'not json',
      '{"dataset": "c",   "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "w"}]}',
    ];
    const poolPath = join(tmp, 'pool.jsonl');
    writeFileSync(poolPath, rows.join('\n') + '\n');
    const pool = readChatFile(poolPath, { skipInvalid: true });
    assert.equal(pool.count, 5); // the blank line has no index
    assert.deepEqual(pool.rows.map((r) => r.index), [0, 1, 2, 4]);
    assert.deepEqual(pool.skipped.map((s) => [s.index, s.line]), [[3, 5]]);
    // index 3 (the invalid row) is unscored; 0 and 4 tie
    const scores = Float64Array.of(0.5, 0.1, 0.9, Number.NaN, 0.5);
    const w = writeSelection(tmp, pool, scores, { percentage: 0.75 });
    assert.equal(w.scored, 4);
    assert.equal(w.selected, 3);
    assert.deepEqual(w.indices, [2, 0, 4]);
    const csv = readFileSync(join(tmp, 'scores.csv'), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'file,index,score');
    assert.deepEqual(csv.slice(1).map((l) => Number(l.split(',').at(-2))), [2, 0, 4, 1]);
    const selected = readFileSync(join(tmp, 'selected.jsonl'));
    const want = Buffer.from([rows[3], rows[0], rows[5]].join('\n') + '\n', 'utf8');
    assert.ok(selected.equals(want), 'selected rows are the pool lines, best first');
    writeSelection(tmp, pool, scores, { maxSamples: 2 });
    assert.ok(readFileSync(join(tmp, 'selected.jsonl')).equals(Buffer.from([rows[3], rows[0]].join('\n') + '\n')));
    assert.deepEqual(topIndices(scores, 10), [2, 0, 4, 1]);
    // the CRLF row keeps its \r when selected
    writeSelection(tmp, pool, Float64Array.of(0, 1, 0, Number.NaN, 0), { maxSamples: 1 });
    assert.ok(readFileSync(join(tmp, 'selected.jsonl')).equals(Buffer.from(rows[1] + '\n')));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
