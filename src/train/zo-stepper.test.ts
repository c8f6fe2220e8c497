/**
 * `lmtune train --optimizer mezo --zo-method …` through the real loop: the run logs a ZO trajectory and
 * zo-method.json, and replaying the trajectory onto the run's initial LoRA adapters gives the final
 * adapters bit for bit (Sparse MeZO, whose thresholds come from the initial weights; HiZOO, which has
 * state; FZOO, several scalars per step).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../node/host.ts';
import { loadAdapters } from '../models/index.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { readRunConfig, train } from './loop.ts';
import { LmtuneError } from '../util/errors.ts';
import { replayZoTrajectory } from '../optim/zo/trajectory.ts';
import { readZoTrajectory } from './zo-trajectory-file.ts';
import { replayRun } from '../cli/mezo.ts';

for (const method of ['sparse-magnitude', 'hizoo', 'fzoo']) {
  test(`train --zo-method ${method}: replaying trajectory.jsonl onto the initial adapters gives the final ones bit for bit`, async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'lmtune-zo-train-'));
    try {
      const data = join(tmp, 'sst2.jsonl');
      writeFileSync(data, readFileSync('assets/demo/sst2-train.jsonl', 'utf8').split('\n').slice(0, 40).join('\n') + '\n');
      const run = join(tmp, 'run');
      const cfg = buildTrainConfig({ model: '../shared/data/models/tiny-random-gpt2', task: 'sst2', data, optimizer: 'mezo', zoMethod: method, lr: '1e-2', zoEps: '1e-2', peft: 'lora', maxSteps: '4', batchSize: '4', numDev: '4', evalEvery: '0', threads: '1', ...(method === 'fzoo' ? { zoSamples: '3' } : {}) });
      await train(cfg, run);
      assert.equal(readRunConfig(run).optimizer.zoMethod, method, 'config.json keeps --zo-method (resume reads it)');
      const info = JSON.parse(readFileSync(join(run, 'zo-method.json'), 'utf8')) as { method: string; forwardPassesPerStep: number; extraMemoryBytes: number };
      assert.equal(info.method, method);
      assert.equal(info.forwardPassesPerStep, { 'sparse-magnitude': 2, hizoo: 3, fzoo: 4 }[method]);
      const t = readZoTrajectory(join(run, 'trajectory.jsonl'));
      assert.equal(t.records.length, 4);
      const init = loadAdapters(join(run, 'initial')).adapters;
      const fin = loadAdapters(join(run, 'final')).adapters;
      const params = t.header.params.map((p) => ({ name: p.name, data: Float32Array.from(init.get(p.name).data) }));
      assert.ok(params.some((p) => !Buffer.from(p.data.buffer).equals(Buffer.from(fin.get(p.name).data.buffer, fin.get(p.name).data.byteOffset, fin.get(p.name).data.byteLength))), 'training moved the adapters');
      await replayZoTrajectory(params, t);
      for (const p of params) {
        const f = fin.get(p.name).data;
        assert.ok(Buffer.from(p.data.buffer).equals(Buffer.from(f.buffer, f.byteOffset, f.byteLength)), `${p.name} differs after replay`);
      }
      // the same through `lmtune mezo replay`, which recognizes the ZO trajectory format
      const out = join(tmp, 'replayed');
      assert.equal((await replayRun(join(run, 'initial'), join(run, 'trajectory.jsonl'), out)).steps, 4);
      const rep = loadAdapters(out).adapters;
      for (const p of params) {
        const a = rep.get(p.name).data;
        const f = fin.get(p.name).data;
        assert.ok(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(f.buffer, f.byteOffset, f.byteLength)), `${p.name}: lmtune mezo replay differs from final/`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test('--zo-method: only with --optimizer mezo, only registry names', () => {
  const base = { model: 'm', task: 'sst2', data: 'd' };
  const isConfig = (e: unknown): boolean => e instanceof LmtuneError && e.code === 'CONFIG';
  assert.throws(() => buildTrainConfig({ ...base, optimizer: 'adam', zoMethod: 'fzoo' }), isConfig);
  assert.throws(() => buildTrainConfig({ ...base, optimizer: 'mezo', zoMethod: 'forward-gradient' }), isConfig);
  assert.equal(buildTrainConfig({ ...base, optimizer: 'mezo', zoMethod: 'block' }).optimizer.zoMethod, 'block');
  assert.equal(buildTrainConfig({ ...base, optimizer: 'mezo' }).optimizer.zoMethod, undefined);
});
