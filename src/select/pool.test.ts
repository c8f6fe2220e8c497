/**
 * Pools of several files (spec less.md §5.6, "the indices across files are correct", the reference's
 * issue #15): one index space in the order given, skipped rows keeping their own file's line, `locate`
 * back to (file, index in file), scores.csv naming the right file and index, selected rows byte for byte
 * from the right file even when two files hold the same line, and a pool hash that covers every file in
 * order (a single file keeps its own sha256, so older datastores stay valid).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { locate, readChatFile } from './pool.ts';
import { writeSelection } from './write.ts';
import { buildSelectConfig } from '../cli/select.ts';

const row = (user: string, extra = ''): string => `{"messages": [{"role": "user", "content": "${user}"}, {"role": "assistant", "content": "a"}]${extra}}`;

test('several pool files: one index space, locate, scores.csv and selected.jsonl per file, the pool hash', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-pool-'));
  try {
    const a = join(tmp, 'a.jsonl');
    const b = join(tmp, 'b.jsonl');
    const c = join(tmp, 'c.jsonl');
    const linesA = [row('a0'), '', row('same'), row('a2', ', "dataset": "x"')];
    const linesB = [row('same'), 'not json', row('b2')];
    const linesC = [row('c0')];
    writeFileSync(a, linesA.join('\n') + '\n');
    writeFileSync(b, linesB.join('\r\n') + '\r\n');
    writeFileSync(c, linesC.join('\n'));
    const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');

    const one = readChatFile(a);
    assert.equal(one.sha256, sha(a), 'one file: its own sha256, as before multi-file pools');
    assert.deepEqual(one.parts, [{ path: a, sha256: sha(a), count: 3, offset: 0 }]);

    const pool = readChatFile([a, b, c], { skipInvalid: true });
    assert.equal(pool.count, 7);
    assert.deepEqual(pool.parts.map((p) => [p.path, p.count, p.offset]), [[a, 3, 0], [b, 3, 3], [c, 1, 6]]);
    assert.deepEqual(pool.rows.map((r) => r.index), [0, 1, 2, 3, 5, 6]);
    assert.deepEqual(pool.skipped.map((s) => [s.index, s.line]), [[4, 2]], "the invalid row: pool index 4, line 2 of b.jsonl");
    assert.equal(pool.sha256, createHash('sha256').update([sha(a), sha(b), sha(c)].join('\n')).digest('hex'));
    assert.notEqual(readChatFile([b, a, c], { skipInvalid: true }).sha256, pool.sha256, 'the order of the files is part of the pool');
    assert.deepEqual([0, 2, 3, 4, 5, 6].map((i) => locate(pool, i)), [
      { file: a, index: 0 },
      { file: a, index: 2 },
      { file: b, index: 0 },
      { file: b, index: 1 },
      { file: b, index: 2 },
      { file: c, index: 0 },
    ]);
    assert.throws(() => locate(pool, 7), /outside/);
    assert.throws(() => readChatFile([a, b, a]), /lists .*a\.jsonl twice/);

    // a.jsonl index 1 and b.jsonl index 0 are the same line; the best rows are b:0, then c:0, then a:1
    const scores = Float64Array.of(0.1, 0.5, 0.2, 0.9, Number.NaN, 0.3, 0.7);
    const w = writeSelection(tmp, pool, scores, { maxSamples: 3 });
    assert.deepEqual(w.indices, [3, 6, 1]);
    const csv = readFileSync(join(tmp, 'scores.csv'), 'utf8').trim().split('\n');
    assert.deepEqual(csv, ['file,index,score', `${b},0,0.90000000`, `${c},0,0.70000000`, `${a},1,0.50000000`, `${b},2,0.30000000`, `${a},2,0.20000000`, `${a},0,0.10000000`]);
    const selected = readFileSync(join(tmp, 'selected.jsonl'));
    assert.ok(selected.equals(Buffer.from(`${linesB[0]}\r\n${linesC[0]}\n${linesA[2]}\n`)), 'rows byte for byte from their own files (b keeps its \\r)');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('--pool takes a comma-separated list; one file stays a string in select.json', () => {
  const model = 'assets/tiny-english-lm';
  const base = { model, target: 't.jsonl', out: 'o' };
  const many = buildSelectConfig({ ...base, pool: 'a.jsonl,b.jsonl' });
  assert.deepEqual(many.pool, [resolve('a.jsonl'), resolve('b.jsonl')]);
  assert.equal(buildSelectConfig({ ...base, pool: 'a.jsonl' }).pool, resolve('a.jsonl'));
  assert.throws(() => buildSelectConfig({ ...base, pool: 'a.jsonl,,b.jsonl' }), /empty file name/);
});
