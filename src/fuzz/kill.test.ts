/**
 * The CI subset of the random kill tests (`npm run fuzz -- kill` runs 20 per job): one SIGKILL at a
 * seeded random moment for the two jobs src/train/resume.test.ts does not cover at named fault points,
 * then --resume, and for `pretrain` (no --resume: run again into its folder); the outputs equal an
 * uninterrupted run's byte for byte. `select run` and `kernel compute` keep their named fault points
 * (src/select/resume.test.ts, src/cli/kernel.test.ts) in CI; their random kills run with `npm run fuzz`.
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KILL_JOBS, killJob } from './kill.ts';

for (const name of ['train adam full', 'mezo lora', 'pretrain']) {
  test(`random kill + resume reproduces the uninterrupted run (${name}, seed 19)`, async () => {
    const job = KILL_JOBS.find((j) => j.name === name)!;
    const r = await killJob(job, 1, 19, mkdtempSync(join(tmpdir(), 'lmtune-kill-')));
    assert.equal(r.runs, 1);
    assert.equal(r.lost + r.differing, 0, r.problems.join('\n'));
  });
}
