/**
 * `lmtune tint run` / `tint size` library side on a real folder: tokenize a text with the folder's
 * tokenizer, run TinT, report losses; resolve --inner presets and folders.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer } from '../models/tokenizer.ts';
import { LmtuneError } from '../util/errors.ts';
import { runTintOnText, tintSizeFor } from './hf.ts';
import { INNER_PRESETS } from './inner.ts';
import { innerLogits, nextTokenLosses } from './oracle.ts';
import { tintSize } from './size.ts';
import { loadTinyGpt2, TINY_GPT2_DIR } from './test-helpers.ts';

test('runTintOnText on tiny-random-gpt2: loss before = the inner model on the test half; TinT tracks the oracle', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tint-'));
  const file = join(dir, 'text.txt');
  const text = 'First Citizen: Before we proceed any further, hear me speak. All: Speak, speak.';
  writeFileSync(file, text);
  const r = await runTintOnText({ innerDir: TINY_GPT2_DIR, textFile: file, settings: { lr: 1e-4, gates: 'hard' }, maxTokens: 16 });
  assert.deepEqual([r.tokens, r.trainTokens, r.evalTokens], [16, 8, 8]);

  // independently: the first 16 tokens, the explicit model, mean CE of predicting tokens 8..15
  const tokens = (await loadTokenizer(TINY_GPT2_DIR)).encode(text, { addSpecialTokens: true }).slice(0, 16);
  const losses = nextTokenLosses(innerLogits(loadTinyGpt2(), { tokens, trainMask: tokens.map(() => 0) }), tokens);
  const expected = losses.slice(7).reduce((a, b) => a + b, 0) / 8;
  assert.ok(Math.abs(r.lossBefore - expected) <= 1e-9, `${r.lossBefore} vs ${expected}`);

  assert.ok(r.lossAfter !== r.lossBefore);
  assert.ok(Math.abs(r.lossAfter - r.oracleLossAfter) <= 1e-10);
  assert.ok(r.approximationGap > 0 && Number.isFinite(r.exactLossAfter));
  assert.equal(r.layout.H, 160);
  await assert.rejects(runTintOnText({ innerDir: TINY_GPT2_DIR, textFile: join(dir, 'missing.txt'), settings: { lr: 1e-4 } }), LmtuneError);
});

test('tintSizeFor resolves presets and folders', () => {
  assert.equal(tintSizeFor('GPT2', {}).params, tintSize(INNER_PRESETS['gpt2']!).params);
  const tiny = tintSizeFor(TINY_GPT2_DIR, {});
  assert.deepEqual([tiny.layout.d, tiny.layout.P, tiny.layout.H, tiny.layout.seqLength], [32, 8, 160, 512]);
  assert.throws(() => tintSizeFor('no-such-model', {}), /not a folder and not a known configuration/);
});
