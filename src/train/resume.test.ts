/**
 * kill -9 at several points (after a step's log line, after a step, while a checkpoint is half
 * written, between the checkpoint renames) and `--resume`: the final weights, optimizer state and
 * trajectory equal an uninterrupted run's byte for byte. Covers Adam+LoRA and MeZO (full).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CLI = new URL('../../bin/lmtune.js', import.meta.url).pathname;
const MODEL = '../shared/data/models/tiny-random-gpt2';

function run(args: string[], fault?: string): { status: number | null; signal: NodeJS.Signals | null; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, LMTUNE_THREADS: '1', ...(fault ? { LMTUNE_FAULT: fault } : {}) } });
  return { status: r.status, signal: r.signal, stderr: r.stderr };
}

function files(dir: string, names: string[]): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const n of names) if (existsSync(join(dir, n))) out[n] = readFileSync(join(dir, n));
  return out;
}

for (const variant of [
  { name: 'adam + lora', flags: ['--optimizer', 'adam', '--lr', '1e-2', '--peft', 'lora'], outputs: ['final/adapter_model.safetensors', 'checkpoint/optimizer.safetensors', 'checkpoint/trainable.safetensors', 'checkpoint/state.json'] },
  { name: 'mezo full', flags: ['--optimizer', 'mezo', '--lr', '1e-3', '--zo-eps', '1e-3'], outputs: ['final/model.safetensors', 'checkpoint/trainable.safetensors', 'checkpoint/state.json', 'trajectory.jsonl'] },
]) {
  test(`kill -9 and --resume reproduce the uninterrupted run bit for bit (${variant.name})`, () => {
    const tmp = mkdtempSync(join(tmpdir(), 'lmtune-resume-'));
    try {
      const data = join(tmp, 'sst2.jsonl');
      writeFileSync(data, readFileSync('../shared/data/sst2/glue_train.jsonl', 'utf8').split('\n').slice(0, 80).join('\n') + '\n');
      const common = ['train', '--model', MODEL, '--task', 'sst2', '--data', data, '--num-dev', '16', '--max-steps', '8', '--batch-size', '4', '--save-every', '1', '--eval-every', '4', '--seed', '3', ...variant.flags];
      const base = join(tmp, 'base');
      const r0 = run([...common, '--out', base]);
      assert.equal(r0.status, 0, r0.stderr);
      const expected = files(base, variant.outputs);
      assert.equal(Object.keys(expected).length, variant.outputs.length);
      // step:8 is after the last checkpoint, before final/ and summary.json: the run is not finished yet
      for (const fault of ['logged:3', 'step:5', 'checkpoint:6:partial', 'checkpoint:7:swapping', 'step:8']) {
        const dir = join(tmp, fault.replace(/:/g, '_'));
        const killed = run([...common, '--out', dir], fault);
        assert.equal(killed.signal, 'SIGKILL', `${fault}: the process should have been killed (status ${killed.status}, ${killed.stderr})`);
        assert.ok(!existsSync(join(dir, 'final')), `${fault}: killed before the end`);
        const resumed = run(['train', '--resume', dir]);
        assert.equal(resumed.status, 0, `${fault}: ${resumed.stderr}`);
        const got = files(dir, variant.outputs);
        for (const n of variant.outputs) assert.ok(got[n]!.equals(expected[n]!), `${fault}: ${n} differs from the uninterrupted run`);
        // the step log has each step exactly once
        const steps = readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
        assert.deepEqual(steps, [1, 2, 3, 4, 5, 6, 7, 8], fault);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}
