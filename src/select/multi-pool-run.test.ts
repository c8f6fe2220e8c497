/**
 * `lmtune select run --pool a.jsonl,b.jsonl,c.jsonl` end to end (spec less.md §5.6, "the indices across
 * files are correct"), against an independent run on the files' concatenation (one file, LF line ends):
 * the three files form one index space, so both runs must draw the same warmup rows, compute the same
 * features and give every row the same score. pool.test.ts checks the bookkeeping of several files in
 * isolation; this runs the whole pipeline through the CLI over them, with the traps a real pool has: a
 * file with CRLF line ends, a malformed line skipped under --skip-invalid, a blank line, a file without
 * a final newline, and datastore shards that straddle the file boundaries. The pool is part of the run:
 * the files in another order are refused in the same folder, and so is a new selection after a file
 * changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MODEL, POOL, TARGET, runSelect as run } from './select-cli.test-util.ts';


const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

interface Summary {
  warmup: { rows: number; stepsPerEpoch: number };
  grads: { pool: { rows: number; truncated: number; skipped: { index: number; line: number }[] }; target: { rows: number } };
  match: { rows: number; scored: number; sha256: string };
  write: { scored: number; selected: number };
}

/** scores.csv as [file, index, score text] rows, header checked */
function readCsv(path: string): [string, number, string][] {
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  assert.equal(lines[0], 'file,index,score');
  return lines.slice(1).map((l) => {
    const m = /^(.*),(\d+),(-?\d+\.\d{8})$/.exec(l);
    assert.ok(m, `scores.csv line ${JSON.stringify(l)}`);
    return [m[1]!, Number(m[2]), m[3]!];
  });
}

/** the report's "Selection" sentence and "Selected mix against the pool" table */
function reportCounts(html: string): { sentence: string; mix: string } {
  const sentence = /(\d+ of \d+ scored pool rows selected) \([\s\S]*?\); (\d+ rows skipped, \d+ truncated)/.exec(html);
  assert.ok(sentence, 'report.html: the selection sentence');
  const mix = /Selected mix against the pool[\s\S]*?<\/table>/.exec(html);
  assert.ok(mix, 'report.html: the mix table');
  return { sentence: `${sentence[1]}; ${sentence[2]}`, mix: mix[0] };
}

test('select run over three pool files equals the run over their concatenation', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-less-multi-'));
  try {
    // 40 pool rows from every source (every 750th line), split 14 / 14 / 12; 12 target rows
    const rows = readFileSync(POOL, 'utf8').split('\n').filter((l, i) => l && i % 750 === 7);
    assert.equal(rows.length, 40);
    const broken = '{"dataset": "trec", "messages": [{"role": "user", "content": "cut off';
    // a: LF with a blank line (not a row: indices count non-blank lines); b: CRLF with a malformed
    // line as its 4th; c: LF without a final newline
    const linesA = [...rows.slice(0, 6), '', ...rows.slice(6, 14)];
    const linesB = [...rows.slice(14, 17), broken, ...rows.slice(17, 28)];
    const linesC = rows.slice(28, 40);
    const a = join(tmp, 'a.jsonl');
    const b = join(tmp, 'b.jsonl');
    const c = join(tmp, 'c.jsonl');
    const cat = join(tmp, 'all.jsonl');
    writeFileSync(a, linesA.join('\n') + '\n');
    writeFileSync(b, linesB.join('\r\n') + '\r\n');
    writeFileSync(c, linesC.join('\n'));
    writeFileSync(cat, [...linesA, ...linesB, ...linesC].join('\n') + '\n');
    // file → (first pool index, its non-blank lines)
    const nonBlank = (ls: string[]): string[] => ls.filter((l) => l !== '');
    const parts = new Map([
      [a, { offset: 0, lines: nonBlank(linesA), eol: '\n' }],
      [b, { offset: 14, lines: nonBlank(linesB), eol: '\r\n' }],
      [c, { offset: 29, lines: nonBlank(linesC), eol: '\n' }],
    ]);
    const brokenIndex = 14 + 3;
    const concatLines = nonBlank([...linesA, ...linesB, ...linesC]);
    assert.equal(concatLines.length, 41);

    const target = join(tmp, 'target.jsonl');
    writeFileSync(target, readFileSync(TARGET, 'utf8').split('\n').filter((l, i) => l && i % 4 === 0).join('\n') + '\n');
    // resume.test.ts's settings, one warmup epoch; shards of 16 rows straddle both file boundaries (14, 29)
    const common = ['select', 'run', '--model', MODEL, '--target', target, '--truncation', 'left', '--skip-invalid', '--warmup-percentage', '0.2', '--warmup-epochs', '1', '--warmup-batch-size', '4', '--warmup-lr', '1e-3', '--proj-dim', '64', '--shard-rows', '16', '--grad-batch-size', '8', '--percentage', '0.25', '--threads', '1', '--json'];

    const multiOut = join(tmp, 'multi');
    const catOut = join(tmp, 'cat');
    const rm = run([...common, '--pool', `${a},${b},${c}`, '--out', multiOut]);
    assert.equal(rm.status, 0, rm.stderr);
    const rc = run([...common, '--pool', cat, '--out', catOut]);
    assert.equal(rc.status, 0, rc.stderr);
    const sm = JSON.parse(rm.stdout) as Summary;
    const sc = JSON.parse(rc.stdout) as Summary;

    // the counts: 41 pool rows, the malformed one skipped at the same pool index (its line: in b, and in the concatenation)
    for (const s of [sm, sc]) {
      assert.equal(s.grads.pool.rows, 41);
      assert.equal(s.match.rows, 41);
      assert.equal(s.match.scored, 40);
      assert.equal(s.write.scored, 40);
      assert.equal(s.write.selected, 10);
      assert.equal(s.warmup.rows, 8);
      assert.equal(s.grads.target.rows, 12);
    }
    assert.deepEqual(sm.grads.pool.skipped.map((x) => [x.index, x.line]), [[brokenIndex, 4]]);
    assert.deepEqual(sc.grads.pool.skipped.map((x) => [x.index, x.line]), [[brokenIndex, 15 + 4]]);
    assert.equal(sm.grads.pool.truncated, sc.grads.pool.truncated);

    // the same warmup rows (the CRLF rows keep their \r in the subset file, which JSON ignores), so the same features and scores
    assert.equal(readFileSync(join(multiOut, 'warmup/data.jsonl'), 'utf8').replace(/\r\n/g, '\n'), readFileSync(join(catOut, 'warmup/data.jsonl'), 'utf8'));
    assert.equal(sm.match.sha256, sc.match.sha256, 'match/scores.f64: the same float64 scores in the same pool order');
    const f64 = new Float64Array(new Uint8Array(readFileSync(join(multiOut, 'match/scores.f64'))).buffer);
    assert.ok(Number.isNaN(f64[brokenIndex]!) && f64.filter((x) => Number.isNaN(x)).length === 1);

    // the pool hash: one file's sha256, or the sha256 of the files' sha256s joined by \n, in order
    const header = (out: string): { data: { file: string; sha256: string } } => JSON.parse(readFileSync(join(out, 'grads/epoch-1/pool/dim64/header.json'), 'utf8'));
    const files = [a, b, c].map((p) => readFileSync(p));
    assert.deepEqual(header(multiOut).data, { file: `${a},${b},${c}`, sha256: sha(files.map((f) => sha(f)).join('\n')) });
    assert.deepEqual(header(catOut).data, { file: cat, sha256: sha(readFileSync(cat)) });

    // scores.csv: file:index ↔ concatenated index, the same rows in the same order with the same printed scores
    const csvM = readCsv(join(multiOut, 'scores.csv'));
    const csvC = readCsv(join(catOut, 'scores.csv'));
    assert.equal(csvM.length, 40);
    const mapped = csvM.map(([file, index, score]) => {
      const p = parts.get(file);
      assert.ok(p && index < p.lines.length, `scores.csv names ${file}:${index}`);
      return [cat, p.offset + index, score] as [string, number, string];
    });
    assert.deepEqual(mapped, csvC);
    assert.ok(!mapped.some(([, i]) => i === brokenIndex), 'the skipped row has no score');
    assert.deepEqual(new Set(csvM.map(([f]) => f)), new Set([a, b, c]));

    // selected.jsonl: the top 10 of scores.csv, each line byte for byte from its own file with that file's line end
    const top = csvM.slice(0, 10);
    const expected = top.map(([file, index]) => parts.get(file)!.lines[index]! + parts.get(file)!.eol).join('');
    const selM = readFileSync(join(multiOut, 'selected.jsonl'));
    const selC = readFileSync(join(catOut, 'selected.jsonl'));
    assert.ok(selM.equals(Buffer.from(expected)), 'multi-file selected.jsonl: the rows of its scores.csv, line ends of their own files');
    assert.ok(selC.equals(Buffer.from(mapped.slice(0, 10).map(([, i]) => concatLines[i]! + '\n').join(''))));
    assert.ok(top.some(([f]) => f === b), 'the selection holds a CRLF row (else the line-end check is empty)');
    assert.ok(Buffer.from(selM.toString('utf8').replace(/\r\n/g, '\n')).equals(selC), 'the same selection but for the line ends');

    // the report: the same counts and mix; the multi-file one names rows as file:index
    const htmlM = readFileSync(join(multiOut, 'report.html'), 'utf8');
    const htmlC = readFileSync(join(catOut, 'report.html'), 'utf8');
    assert.deepEqual(reportCounts(htmlM), reportCounts(htmlC));
    assert.equal(reportCounts(htmlM).sentence, '10 of 40 scored pool rows selected; 1 rows skipped, ' + `${sm.grads.pool.truncated} truncated`);
    assert.ok(htmlM.includes('b.jsonl:3'), 'the skipped row as b.jsonl:3');

    // the pool is part of the run's identity: the same files in the same order (--pool repeated) resume the
    // finished run without rewriting it; another order is refused, naming the pool
    const before = statSync(join(multiOut, 'selected.jsonl')).mtimeMs;
    const same = run([...common, '--pool', a, '--pool', b, '--pool', c, '--out', multiOut]);
    assert.equal(same.status, 0, same.stderr);
    const reordered = run([...common, '--pool', `${b},${a},${c}`, '--out', multiOut]);
    assert.equal(reordered.status, 1, reordered.stderr);
    assert.match(reordered.stderr, /holds a selection run with pool = \[.*a\.jsonl.*b\.jsonl.*c\.jsonl.*\]; this call has \[.*b\.jsonl.*a\.jsonl.*c\.jsonl.*\] \(the same files in another order: the order numbers the pool rows/);
    assert.equal(statSync(join(multiOut, 'selected.jsonl')).mtimeMs, before);
    assert.ok(readFileSync(join(multiOut, 'selected.jsonl')).equals(selM));

    // a pool file edited after the scores (c.jsonl gets a final newline: same rows, other bytes): a new
    // selection from those scores is refused rather than copying rows the scores were not computed from
    writeFileSync(c, linesC.join('\n') + '\n');
    const edited = run(['select', 'write', '--out', multiOut, '--max-samples', '5', '--json']);
    assert.equal(edited.status, 1, edited.stderr);
    assert.match(edited.stderr, /--pool .*a\.jsonl,.*b\.jsonl,.*c\.jsonl: changed since the scores were computed/);
    assert.ok(readFileSync(join(multiOut, 'selected.jsonl')).equals(selM));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
