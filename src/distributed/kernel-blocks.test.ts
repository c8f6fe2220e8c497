/**
 * `kernel compute` on a real local Redis: 2 `lmtune worker` child processes compute the parameter blocks
 * of an eNTK on the embedded model, and the merged kernels.safetensors is byte-identical to the one a
 * single process writes (the shares are added in block order with one addition per value, as one process
 * adds them). A rerun reuses block files already whole; a worker whose computation differs (here: another
 * code version) is refused.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../node/host.ts';
import { Command } from 'commander';
import { register as registerKernel } from '../cli/kernel.ts';
import { loadTransformer } from '../heads/model.ts';
import { computeKernelSets } from '../kernel/compute.ts';
import { readKernelFolder } from '../kernel/store.ts';
import './kinds.ts';
import { KERNEL_BLOCK, computeKernelSetsQueued, kernelRequest, type KernelSpec } from './kernel-blocks.ts';
import { redisSkipReason, startLocalRedis, type LocalRedis } from './redis-server.ts';
import { startWorker } from './worker.ts';
import { ROOT, spawnWorker, type ChildWorker } from './queue-workers.test-util.ts';

const skip = redisSkipReason();
const MODEL = join(ROOT, 'assets/tiny-english-lm');
const tmp = mkdtempSync(join(tmpdir(), 'lmtune-dist-kernel-'));
let redis: LocalRedis | undefined;
const children: ChildWorker[] = [];

// 6 training and 5 eval phrases, every parameter, blocks of ≈ 350k parameters (32 MiB / (8 · 6 · 2)): 4 blocks
const spec: KernelSpec = {
  task: join(ROOT, 'src/kernel/tasks/sst2-single-token.yaml'),
  sets: { train: { file: join(ROOT, 'assets/demo/sst2-train.jsonl'), limit: 6 }, eval: { file: join(ROOT, 'assets/demo/sst2-dev.jsonl'), limit: 5 } },
  formula: 'sgd',
  params: 'all',
  binary: false,
  projDim: null,
  projSeed: 0,
  batch: 4,
  memBytes: 32 * 2 ** 20,
  threads: 1,
};

before(async () => {
  if (!skip) redis = await startLocalRedis();
});
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await redis?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

test('2 workers compute the parameter blocks; kernels.safetensors is byte-identical to the single-process one', { skip, timeout: 90_000 }, async () => {
  const single = join(tmp, 'single');
  const res = await computeKernelSets(kernelRequest(await loadTransformer(MODEL, { threads: 1 }), spec, single));
  assert.ok(res.meta.blocks >= 3, `${res.meta.blocks} blocks`);
  const url = `${redis!.url}/1`;
  const ws = [spawnWorker(url, ['--kinds', KERNEL_BLOCK]), spawnWorker(url, ['--kinds', KERNEL_BLOCK])];
  children.push(...ws);
  const queued = join(tmp, 'queued');
  const messages: string[] = [];
  const q = await computeKernelSetsQueued(await loadTransformer(MODEL, { threads: 1 }), spec, queued, { queueUrl: url, modelDir: MODEL, pollMs: 100, timeoutMs: 80_000, onMessage: (m) => messages.push(m) });
  assert.match(messages.join('\n'), new RegExp(`kernel: ${res.meta.blocks} of ${res.meta.blocks} parameter blocks to compute`));
  assert.ok(readFileSync(join(queued, 'kernels.safetensors')).equals(readFileSync(join(single, 'kernels.safetensors'))), 'kernels.safetensors differs');
  // meta.json agrees except for the timings and memory of the run
  const strip = (m: Record<string, unknown>) => ({ ...m, timings: null, peakRssMb: null });
  assert.deepEqual(strip({ ...q.meta }), strip({ ...res.meta }));
  assert.deepEqual(strip({ ...readKernelFolder(queued).meta }), strip({ ...readKernelFolder(single).meta }));
  // the command line: `lmtune kernel compute … --queue URL` (commander, in this process)
  const viaCli = join(tmp, 'cli');
  const program = new Command().exitOverride();
  registerKernel(program);
  await program.parseAsync(['node', 'lmtune', 'kernel', 'compute', '--model', MODEL, '--task', spec.task, '--train', spec.sets.train!.file, '--limit-train', '6', '--eval', spec.sets.eval!.file, '--limit-eval', '5', '--formula', 'sgd', '--batch', '4', '--mem-mb', '32', '--threads', '1', '--out', viaCli, '--queue', url]);
  assert.ok(readFileSync(join(viaCli, 'kernels.safetensors')).equals(readFileSync(join(single, 'kernels.safetensors'))), 'kernels.safetensors (CLI) differs');
  // both workers took blocks
  for (const w of ws) assert.ok(w.lines.some((l) => /kernel-block job \S+ done/.test(l)), w.lines.join('\n'));
  for (const w of ws) w.kill('SIGTERM');
  assert.deepEqual(await Promise.all(ws.map((w) => w.exited)), [0, 0]);
});

test('a worker on another code version refuses kernel blocks at once', { skip, timeout: 60_000 }, async () => {
  const url = `${redis!.url}/2`;
  const old = await startWorker({ queueUrl: url, name: 'old', kinds: [KERNEL_BLOCK], codeVersion: 'lmtune@0.0.1/jobs-0', loadModel: () => Promise.reject(new Error('unused')) });
  try {
    await assert.rejects(
      computeKernelSetsQueued(await loadTransformer(MODEL, { threads: 1 }), spec, join(tmp, 'refused'), { queueUrl: url, modelDir: MODEL, pollMs: 50, timeoutMs: 30_000 }),
      /kernel-block job \S+ \(#\d+ of \d+\) failed after 1 attempt\(s\): worker old refused job .*code version mismatch/,
    );
  } finally {
    await old.close();
  }
});
