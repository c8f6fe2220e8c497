/**
 * report.html: per target subtask, its best and worst pool rows (as match/subtasks.json lists them) with
 * their prompts; rows of a pool of several files named file:index; the stage timings with the match
 * stage's read/checksum/scoring split; self-contained (no script, no external resource).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readChatFile } from './pool.ts';
import { selectionReport } from './report.ts';

const row = (user: string, dataset?: string): string => JSON.stringify({ ...(dataset ? { dataset } : {}), messages: [{ role: 'user', content: user }, { role: 'assistant', content: `reply to ${user}` }] });

test('the report lists the top and bottom rows per subtask, file:index for several files, and the timings', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-report-'));
  try {
    const a = join(tmp, 'flan.jsonl');
    const b = join(tmp, 'dolly.jsonl');
    writeFileSync(a, [row('alpha question'), row('beta question', 'qa')].join('\n') + '\n');
    writeFileSync(b, [row('gamma instruction'), row('delta instruction')].join('\n') + '\n');
    const pool = readChatFile([a, b]);
    const scores = Float64Array.of(0.4, 0.1, 0.3, 0.2);
    const html = selectionReport({
      pool,
      scores,
      selected: [0],
      checkpoints: [{ name: 'epoch-1', lr: 1e-5, weight: 1 }],
      subtasks: ['algebra', 'history'],
      aggregate: 'cos-with-mean-grad',
      timings: [
        { stage: 'warmup', seconds: 1.5 },
        { stage: 'match', seconds: 2.25 },
      ],
      subtaskExtremes: [
        { name: 'algebra', rows: 3, top: [{ index: 2, score: 0.9 }], bottom: [{ index: 1, score: -0.5 }] },
        { name: 'history', rows: 2, top: [{ index: 3, score: 0.7 }], bottom: [{ index: 0, score: -0.25 }] },
      ],
      matchStream: { bytes: 3e9, waitSeconds: 1, verifySeconds: 0.5, computeSeconds: 0.75 },
      skipped: [{ index: 3, line: 2, reason: 'an empty assistant turn' }],
      truncated: 0,
      config: {},
    });
    assert.ok(!/<script|<link|src="http/.test(html), 'self-contained');
    const algebra = html.indexOf('Subtask algebra (3 target rows)');
    const history = html.indexOf('Subtask history (2 target rows)');
    assert.ok(algebra > 0 && history > algebra);
    const algebraPart = html.slice(algebra, history);
    // the top row of algebra is pool index 2 = dolly.jsonl row 0, the bottom one index 1 = flan.jsonl row 1
    assert.ok(algebraPart.includes('dolly.jsonl:0') && algebraPart.includes('gamma instruction') && algebraPart.includes('0.9'));
    assert.ok(algebraPart.includes('flan.jsonl:1') && algebraPart.includes('beta question') && algebraPart.includes('-0.5'));
    assert.ok(html.slice(history).includes('dolly.jsonl:1') && html.slice(history).includes('delta instruction'));
    // sources: `dataset` where a row has one, else its file
    assert.ok(html.includes('>qa<') && html.includes('>dolly.jsonl<') && html.includes('>flan.jsonl<'));
    assert.ok(html.includes('Stage timings') && html.includes('2.25') && html.includes('3.00 GB'));
    assert.ok(html.includes('cosine with the subtask'));
    // a skipped row is named by its file and its line there
    const skippedPart = html.slice(html.indexOf('Skipped rows'));
    assert.ok(skippedPart.includes('dolly.jsonl:1') && skippedPart.includes('an empty assistant turn'));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
