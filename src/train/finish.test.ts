/**
 * summary.json is the last file a run writes (it marks the run finished; `--resume` of a
 * finished run returns it): a run SIGKILLed just before it (fault point `finishing`, after report.html) resumes and
 * finishes with both; once finished, `--resume` succeeds at once and changes nothing (idempotent). Found by
 * `npm run fuzz -- kill "mezo lora" --seed 2`: a kill between summary.json and report.html left a
 * finished run without its report.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

const CLI = new URL('../../bin/lmtune.js', import.meta.url).pathname;

test('a run killed just before summary.json resumes and finishes with report.html and summary.json', () => {
  const d = mkdtempSync(join(tmpdir(), 'lmtune-finish-'));
  try {
    const data = join(d, 'sst2.jsonl');
    writeFileSync(data, readFileSync(join(SHARED_DATA, 'sst2/glue_train.jsonl'), 'utf8').split('\n').slice(0, 40).join('\n') + '\n');
    const run = join(d, 'run');
    const env = { ...process.env, LMTUNE_THREADS: '1' };
    const args = ['train', '--model', join(SHARED_DATA, 'models/tiny-random-gpt2'), '--task', 'sst2', '--data', data, '--optimizer', 'mezo', '--peft', 'lora', '--lr', '1e-2', '--max-steps', '3', '--batch-size', '4', '--num-dev', '8', '--eval-every', '3', '--out', run];
    const killed = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...env, LMTUNE_FAULT: 'finishing' } });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    assert.ok(existsSync(join(run, 'report.html')) && !existsSync(join(run, 'summary.json')), 'killed between the report and the summary');
    const resumed = spawnSync(process.execPath, [CLI, 'train', '--resume', run], { encoding: 'utf8', env });
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.ok(existsSync(join(run, 'summary.json')) && existsSync(join(run, 'report.html')) && existsSync(join(run, 'final/adapter_model.safetensors')));
    const kept = ['summary.json', 'log.jsonl', 'eval.jsonl', 'trajectory.jsonl', 'report.html', 'checkpoint/state.json', 'final/adapter_model.safetensors'];
    const before = kept.map((f) => readFileSync(join(run, f)));
    const again = spawnSync(process.execPath, [CLI, 'train', '--resume', run], { encoding: 'utf8', env });
    // resuming the finished run again (the seed-2 kill landed after summary.json): succeeds at once, touches nothing
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /the run is finished \(step 3 of 3\); nothing to resume/);
    kept.forEach((f, i) => assert.ok(readFileSync(join(run, f)).equals(before[i]), `${f} unchanged`));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
