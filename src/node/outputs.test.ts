/**
 * Claiming an output folder while its marker is being written: the ranks of a data-parallel run claim
 * one run folder at the same time, so one rank can look at the folder while another's marker is still
 * atomicWrite's temporary file (found by the kill harness's data-parallel job: rank 0 was refused with
 * "the folder exists and lmtune did not create it"); a kill between that file's creation and its
 * rename leaves it behind. Such a folder is claimable; anything else in it still makes it the user's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimFolder, readMarker } from './outputs.ts';

test('a folder holding only a marker being written is claimable; a user file still refuses it', () => {
  const d = mkdtempSync(join(tmpdir(), 'lmtune-claim-'));
  try {
    const run = join(d, 'run');
    mkdirSync(run);
    // the name atomicWrite (fsx.ts) gives the marker's temporary file in another process
    writeFileSync(join(run, '..lmtune.4242.tmp'), '{"kind":"run"}');
    claimFolder(run, { kind: 'run' }, '--out');
    assert.deepEqual(readMarker(run), { kind: 'run' });
    assert.deepEqual(readdirSync(run).sort(), ['..lmtune.4242.tmp', '.lmtune']);

    const mine = join(d, 'mine');
    mkdirSync(mine);
    writeFileSync(join(mine, '..lmtune.4242.tmp'), '');
    writeFileSync(join(mine, 'notes.txt'), 'mine');
    assert.throws(() => claimFolder(mine, { kind: 'run' }, '--out'), /--out .*mine: the folder exists and lmtune did not create it/);
    assert.equal(readMarker(mine), null);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
