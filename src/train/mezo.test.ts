/**
 * MeZO through the real model: the projected gradient equals the directional derivative ⟨∇L, z⟩ of the
 * backprop gradient (finite-difference accuracy), and `lmtune mezo replay` rebuilds a run's final
 * weights bit for bit from the initial checkpoint and trajectory.jsonl (full and LoRA).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TransformerModel } from '../heads/model.ts';
import { randomWeights, tinyConfig } from '../models/testing.ts';
import { packBatch } from '../models/batch.ts';
import { padTargets } from '../heads/objective.ts';
import { MezoOptimizer } from '../optim/mezo.ts';
import { fillZ } from '../optim/zstream.ts';

const CLI = new URL('../../bin/lmtune.js', import.meta.url).pathname;

test('projected gradient (l+ − l−)/2ε equals ⟨∇L, z⟩ from backprop (float64 ref executor)', async () => {
  const raw = tinyConfig('llama');
  const m = TransformerModel.fromWeights(raw, randomWeights(raw, 4), null, { backend: 'ref' });
  const batch = packBatch([[3, 14, 15, 9, 26], [5, 35, 8]], { side: 'right', padId: 0, seq: 8, batch: 2 });
  const targets = padTargets([0, 1, 2, 3, 8, 9], [14, 15, 9, 26, 35, 8], 8);
  const req = { batch, targets, objective: { kind: 'token' as const, weight: new Float32Array(8).fill(1 / 6) } };
  const names = m.trainableNames();
  const { grads } = await m.loss(req, names);
  const params = names.map((name) => ({ name, data: m.tensor(name) }));
  const seed = 1234;
  const errs: number[] = [];
  for (const eps of [1e-2, 1e-3, 1e-4]) {
    // ⟨∇L, z⟩ with z regenerated exactly as the optimizer draws it (parameter index i, offset 0)
    let dot = 0;
    params.forEach((p, i) => {
      const z = new Float64Array(p.data.length);
      fillZ(z, seed, i, 0, 'gaussian');
      const g = grads!.get(p.name)!;
      for (let j = 0; j < z.length; j++) dot += g[j]! * z[j]!;
    });
    const before = params.map((p) => Float32Array.from(p.data));
    const opt = new MezoOptimizer(params, { eps });
    const r = await opt.step(seed, async () => (await m.loss(req)).loss, 0);
    const rel = Math.abs(r.projectedGrad - dot) / Math.abs(dot);
    errs.push(rel);
    params.forEach((p, i) => p.data.set(before[i]!));
  }
  // central differences: the O(ε²) truncation error shrinks ~100× per decade of ε until float32 rounding of θ ± εz
  assert.ok(errs[1]! < errs[0]! / 30, `errors ${errs}`);
  assert.ok(errs[1]! < 1e-3 && errs[2]! < 1e-3, `ε=1e-3, 1e-4: rel errors ${errs[1]}, ${errs[2]}`);
});

for (const peft of ['full', 'lora']) {
  test(`mezo replay rebuilds the final weights bit for bit (${peft})`, () => {
    const tmp = mkdtempSync(join(tmpdir(), 'lmtune-replay-'));
    try {
      const data = join(tmp, 'sst2.jsonl');
      writeFileSync(data, readFileSync('../shared/data/sst2/glue_train.jsonl', 'utf8').split('\n').slice(0, 60).join('\n') + '\n');
      const run = join(tmp, 'run');
      const model = '../shared/data/models/tiny-random-gpt2';
      const env = { ...process.env, LMTUNE_THREADS: '1' };
      const t = spawnSync(process.execPath, [CLI, 'train', '--model', model, '--task', 'sst2', '--data', data, '--optimizer', 'mezo', '--lr', '1e-3', '--peft', peft, '--max-steps', '12', '--batch-size', '4', '--num-dev', '8', '--eval-every', '0', '--out', run], { encoding: 'utf8', env });
      assert.equal(t.status, 0, t.stderr);
      const initial = peft === 'full' ? model : join(run, 'initial');
      const r = spawnSync(process.execPath, [CLI, 'mezo', 'replay', '--model', initial, '--trajectory', join(run, 'trajectory.jsonl'), '--out', join(tmp, 'replayed')], { encoding: 'utf8', env });
      assert.equal(r.status, 0, r.stderr);
      const file = peft === 'full' ? 'model.safetensors' : 'adapter_model.safetensors';
      const a = readFileSync(join(run, 'final', file));
      const b = readFileSync(join(tmp, 'replayed', file));
      assert.ok(a.equals(b), 'replayed weights differ from the trained ones');
      const init = readFileSync(join(initial, file));
      assert.ok(!init.equals(a), 'training changed the weights');
      const lines = readFileSync(join(run, 'trajectory.jsonl'), 'utf8').trim().split('\n');
      assert.equal(lines.length, 13); // header + 12 steps
      assert.ok(lines[1]!.length < 300, 'a step record is a few bytes');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}
