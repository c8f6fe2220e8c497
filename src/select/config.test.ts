/**
 * A selection folder stores the chat encoding of rows cut on the left (the reply room, tasks/chat.ts):
 * a folder from before the room existed is refused, by a resume with flags and by one with --out alone,
 * instead of mixing its warmup and features with rows encoded another way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { REPLY_ROOM } from '../tasks/chat.ts';
import { CONFIG_FILE, readConfig, saveOrCheckConfig, type SelectConfig } from './config.ts';

function config(truncation: 'left' | 'right'): SelectConfig {
  return {
    version: 1, model: '/m', pool: '/p.jsonl', target: '/t.jsonl', seed: 42, maxLength: 64, truncation, skipInvalid: false, threads: null,
    warmup: { percentage: 0.05, epochs: 4, lr: 2e-5, batchSize: 32, warmupRatio: 0.03, clipNorm: 1, loraRank: 8, loraAlpha: 32, loraTargets: [] },
    grads: { projection: 'rademacher', projDims: [8192], projSeed: 0, dtype: 'f16', batchSize: 16, shardRows: 1024 },
    match: { aggregate: 'max-subtask-mean', dim: 8192 },
    write: { percentage: 0.05 },
  };
}

test('left truncation: the reply room is stored; a folder without it is refused, a right-truncation one is not', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-select-config-'));
  try {
    const now = join(tmp, 'now');
    const stored = saveOrCheckConfig(now, config('left'));
    assert.equal(stored.replyRoom, REPLY_ROOM);
    assert.equal((JSON.parse(readFileSync(join(now, CONFIG_FILE), 'utf8')) as SelectConfig).replyRoom, REPLY_ROOM);
    assert.deepEqual(saveOrCheckConfig(now, config('left')), stored);
    assert.deepEqual(readConfig(now), stored);

    // a folder written before the room: the same config without replyRoom
    const old = join(tmp, 'old');
    saveOrCheckConfig(old, config('right'));
    writeFileSync(join(old, CONFIG_FILE), JSON.stringify(config('left')));
    const refused = (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG' && e.message.startsWith(old) && /just enough to fit/.test(e.message);
    assert.throws(() => saveOrCheckConfig(old, config('left')), refused);
    assert.throws(() => readConfig(old), refused);

    const right = join(tmp, 'right');
    saveOrCheckConfig(right, config('right'));
    assert.equal(readConfig(right).replyRoom, undefined);
    assert.deepEqual(saveOrCheckConfig(right, config('right')), config('right'));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
