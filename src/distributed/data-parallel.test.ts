/**
 * Data-parallel MeZO end to end: real `lmtune train --data-parallel` processes (one per rank) against a
 * real redis-server, on the tiny GPT-2 and 60 SST-2 rows. Checked against independent values: the
 * single-process run of the same command (byte for byte for one rank; within one float32 ulp of each
 * loss divided by 2ε for two and three ranks), and the ranks against each other (every checkpoint's
 * sha256, the final checkpoint's bytes, the trajectory's bytes).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redisSkipReason, startLocalRedis, type LocalRedis } from './redis-server.ts';

const MAIN = new URL('../cli/main.ts', import.meta.url).pathname;
const MODEL = new URL('../../../shared/data/models/tiny-random-gpt2', import.meta.url).pathname;
const SST2 = new URL('../../../shared/data/sst2/glue_train.jsonl', import.meta.url).pathname;
const skip = redisSkipReason() ?? (existsSync(MODEL) ? undefined : `${MODEL} is absent`);

interface Done {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** ms since the group started */
  endedMs: number;
}

let redis: LocalRedis;
let tmp: string;
let data: string;
let db = 0;

before(async () => {
  if (skip) return;
  redis = await startLocalRedis();
  tmp = mkdtempSync(join(tmpdir(), 'lmtune-dp-'));
  data = join(tmp, 'sst2.jsonl');
  writeFileSync(data, readFileSync(SST2, 'utf8').split('\n').slice(0, 60).join('\n') + '\n');
});

after(async () => {
  if (skip) return;
  await redis.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function common(out: string, lr: string): string[] {
  return ['train', '--model', MODEL, '--task', 'sst2', '--data', data, '--num-dev', '8', '--max-steps', '6', '--batch-size', '6', '--save-every', '2', '--eval-every', '3', '--optimizer', 'mezo', '--lr', lr, '--zo-eps', '1e-3', '--seed', '3', '--out', out];
}

function spawnLmtune(args: string[], env: Record<string, string>, t0: number): Promise<Done> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { env: { ...process.env, LMTUNE_THREADS: '1', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code, signal) => resolve({ code, signal, stderr, endedMs: performance.now() - t0 }));
  });
}

/** every rank of one data-parallel run, concurrently; `extra[r]` adds flags, `env[r]` environment */
function runRanks(world: number, args: string[], o: { url: string; extra?: Record<number, string[]>; env?: Record<number, Record<string, string>>; timeoutS?: string }): Promise<Done[]> {
  const t0 = performance.now();
  return Promise.all(
    Array.from({ length: world }, (_, r) =>
      spawnLmtune([...args, '--data-parallel', o.url, '--world', String(world), '--rank', String(r), '--dp-timeout', o.timeoutS ?? '20', ...(o.extra?.[r] ?? [])], o.env?.[r] ?? {}, t0),
    ),
  );
}

/** a fresh Redis database per run, so no run sees another's keys */
function url(): string {
  db = (db + 1) % 16;
  return `${redis.url}/${db}`;
}

function ok(d: Done[]): void {
  d.forEach((x, r) => assert.equal(x.code, 0, `rank ${r} failed (signal ${x.signal}):\n${x.stderr}`));
}

const rankDir = (out: string, r: number) => (r === 0 ? out : join(out, `rank-${r}`));
const bytes = (p: string) => readFileSync(p);

interface Step {
  grads: number[];
}
function grads(runDir: string): number[] {
  return readFileSync(join(runDir, 'trajectory.jsonl'), 'utf8').trim().split('\n').slice(1).map((l) => (JSON.parse(l) as Step).grads[0]!);
}
function losses(runDir: string): [number, number][] {
  return readFileSync(join(runDir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const o = JSON.parse(l) as { loss: number; loss_minus: number };
    return [o.loss, o.loss_minus];
  });
}
/** one unit in the last place of x as a float32 */
function ulp32(x: number): number {
  return 2 ** (Math.floor(Math.log2(Math.abs(x))) - 23);
}

// the uninterrupted three-rank run, which the kill test must reproduce
let threeRanks: string | null = null;

test('N = 1, 2, 3 ranks: replicas bit-identical at every checkpoint; one rank = the single-process run byte for byte; the projected gradients within float32 rounding of it', { skip, timeout: 240_000 }, async () => {
  const single = join(tmp, 'single');
  // the single-process run and the three data-parallel runs at once (they meet in different Redis databases)
  const worlds = [1, 2, 3];
  const [alone, ...results] = await Promise.all([spawnLmtune(common(single, '1e-3'), {}, performance.now()), ...worlds.map((world) => runRanks(world, common(join(tmp, `world${world}`), '1e-3'), { url: url() }))]);
  ok([alone!]);
  results.forEach((d) => ok(d as Done[]));
  const g1 = grads(single);
  const l1 = losses(single);
  for (const world of worlds) {
    const out = join(tmp, `world${world}`);
    const digests = readFileSync(join(out, 'checkpoints.jsonl'), 'utf8');
    assert.deepEqual(digests.trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step), [2, 4, 6]);
    for (let r = 1; r < world; r++) {
      const d = rankDir(out, r);
      assert.equal(readFileSync(join(d, 'checkpoints.jsonl'), 'utf8'), digests, `rank ${r}: a checkpoint differs from rank 0's`);
      assert.ok(bytes(join(d, 'checkpoint', 'trainable.safetensors')).equals(bytes(join(out, 'checkpoint', 'trainable.safetensors'))), `rank ${r}: final checkpoint bytes`);
      assert.ok(bytes(join(d, 'trajectory.jsonl')).equals(bytes(join(out, 'trajectory.jsonl'))), `rank ${r}: trajectory bytes`);
      assert.ok(!existsSync(join(d, 'eval.jsonl')) && !existsSync(join(d, 'final')), 'only rank 0 evaluates and writes final/');
    }
    assert.ok(existsSync(join(out, 'final', 'model.safetensors')) && existsSync(join(out, 'summary.json')) && existsSync(join(out, 'eval.jsonl')));
    if (world === 1) {
      for (const f of ['trajectory.jsonl', 'log.jsonl', 'eval.jsonl', 'checkpoint/trainable.safetensors', 'final/model.safetensors']) {
        assert.ok(bytes(join(out, f)).equals(bytes(join(single, f))), `one rank: ${f} differs from the single-process run`);
      }
      continue;
    }
    // equal shares (6 examples: 3 + 3, 2 + 2 + 2): per rank the float32 loss mean of its share, combined in
    // float64, vs the float32 mean of the whole batch; g inherits those roundings divided by 2ε
    let worst = 0;
    grads(out).forEach((g, k) => {
      const [lp, lm] = l1[k]!;
      worst = Math.max(worst, Math.abs(g - g1[k]!) / ((ulp32(lp) + ulp32(lm)) / (2 * 1e-3)));
    });
    // measured over 30 steps: ≤ 1.0 unit at lr 0 (no compounding), ≤ 3.0 at lr 1e-3 (docs/distributed.md)
    assert.ok(worst <= 4, `${world} ranks: |Δg| reached ${worst} units of (ulp(l₊) + ulp(l₋))/2ε`);
    // the logged loss is the whole batch's (share-weighted), not rank 0's share: at step 1 (same weights)
    // within float32 rounding, later within the weights' tiny drift
    losses(out).forEach(([lp], k) => assert.ok(Math.abs(lp - l1[k]![0]) <= (k === 0 ? 2 * ulp32(lp) : 1e-5 * lp), `step ${k + 1}: loss ${lp} vs ${l1[k]![0]}`));
    if (world === 3) threeRanks = out;
  }
});

test('a rank killed mid-run: the others stop within the timeout naming it; the same command resumes and finishes as if uninterrupted', { skip, timeout: 240_000 }, async () => {
  const out = join(tmp, 'killed');
  const u = url();
  // rank 1 dies (SIGKILL) while writing its step-4 checkpoint: ranks 0 and 2 have theirs, rank 1 only step 2's
  const first = await runRanks(3, common(out, '1e-3'), { url: u, timeoutS: '5', env: { 1: { LMTUNE_FAULT: 'checkpoint:4:partial' } } });
  assert.equal(first[1]!.signal, 'SIGKILL', first[1]!.stderr);
  for (const r of [0, 2]) {
    assert.notEqual(first[r]!.code, 0, `rank ${r} should have stopped`);
    assert.match(first[r]!.stderr, /rank 1 stopped responding \(no heartbeat for 5 s/, `rank ${r}: ${first[r]!.stderr}`);
    // detected within the 5 s heartbeat lifetime + 0.2 s polling, then the exit (slack for a loaded machine)
    const late = first[r]!.endedMs - first[1]!.endedMs;
    assert.ok(late < 15_000, `rank ${r} stopped ${late.toFixed(0)} ms after rank 1 died`);
  }
  assert.ok(!existsSync(join(out, 'summary.json')));
  const again = await runRanks(3, common(out, '1e-3'), { url: u });
  ok(again);
  assert.match(again[0]!.stderr, /going back to step 2, the newest checkpoint all 3 ranks have/);
  assert.match(again[1]!.stderr, /starting at step 2/);
  const steps = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);
  if (threeRanks) {
    for (let r = 0; r < 3; r++) {
      for (const f of ['trajectory.jsonl', 'checkpoints.jsonl', 'checkpoint/trainable.safetensors']) {
        assert.ok(bytes(join(rankDir(out, r), f)).equals(bytes(join(rankDir(threeRanks, r), f))), `rank ${r}: ${f} differs from the uninterrupted run`);
      }
    }
  }
});

test('mismatched commands are refused by name (a different --seed, a different --world); a rank that fails stops the others at once with its error', { skip, timeout: 240_000 }, async () => {
  const t0 = performance.now();
  const [u1, u2, u3] = [url(), url(), url()];
  const worldCmd = (world: number, rank: number) => [...common(join(tmp, 'mismatch-world'), '1e-3'), '--data-parallel', u2, '--world', String(world), '--rank', String(rank)];
  const [seeds, failing, ...worlds] = await Promise.all([
    runRanks(2, common(join(tmp, 'mismatch-seed'), '1e-3'), { url: u1, extra: { 1: ['--seed', '4'] } }),
    // rank 1's disk fills after step 3's log line: rank 0, waiting at step 3, stops with that error
    runRanks(2, common(join(tmp, 'failing'), '1e-3'), { url: u3, env: { 1: { LMTUNE_FAULT: 'logged:3:enospc' } } }),
    spawnLmtune(worldCmd(2, 0), {}, t0),
    spawnLmtune(worldCmd(3, 1), {}, t0),
  ]);
  assert.match(failing![1]!.stderr, /ENOSPC/);
  assert.notEqual(failing![0]!.code, 0);
  assert.match(failing![0]!.stderr, /data-parallel step 3: rank 1 stopped: ENOSPC: no space left on device/);
  // at once: the next check after the error (1 s), not the heartbeat's 20 s
  assert.ok(failing![0]!.endedMs - failing![1]!.endedMs < 10_000, `${failing![0]!.endedMs - failing![1]!.endedMs} ms`);
  seeds!.forEach((d, r) => {
    assert.notEqual(d.code, 0, `rank ${r} must be refused`);
    assert.match(d.stderr, /was started with a different command .*seed: [34] vs [34]; refusing to start/, `rank ${r}: ${d.stderr}`);
  });
  assert.match(seeds![0]!.stderr, /rank 1 \(/);
  worlds.forEach((d, r) => {
    assert.notEqual(d.code, 0);
    assert.match(d.stderr, /was started with --world [23], rank [01] \(.*\) with --world [23]; refusing to start/, `rank ${r}: ${d.stderr}`);
  });
});
