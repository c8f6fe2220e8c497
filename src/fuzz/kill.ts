/**
 * Random kill tests: a long job runs in a child process (the real CLI), is SIGKILLed at a random moment
 * (drawn from a seed, anywhere in the job's run time, not at a named fault point), then resumed with
 * `--resume` until it finishes; its outputs must equal an uninterrupted run's byte for byte.
 *
 * Each job is a small `lmtune train` on the tiny random GPT-2 (Adam + LoRA, Adam full, MeZO full,
 * MeZO + LoRA). `pretrain` has no --resume, so it is not a kill target.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

const CLI = new URL('../../bin/lmtune.js', import.meta.url).pathname;
const MODEL = join(SHARED_DATA, 'models/tiny-random-gpt2');
const SST2 = join(SHARED_DATA, 'sst2/glue_train.jsonl');

export interface KillJob {
  name: string;
  flags: string[];
  /** files compared byte for byte with the uninterrupted run */
  outputs: string[];
}

const LOGS = ['log.jsonl', 'eval.jsonl', 'checkpoint/state.json', 'checkpoint/trainable.safetensors'];

export const KILL_JOBS: readonly KillJob[] = [
  { name: 'train adam+lora', flags: ['--optimizer', 'adam', '--lr', '1e-2', '--peft', 'lora'], outputs: ['final/adapter_model.safetensors', 'best/adapter_model.safetensors', 'checkpoint/optimizer.safetensors', ...LOGS] },
  { name: 'train adam full', flags: ['--optimizer', 'adam', '--lr', '1e-3'], outputs: ['final/model.safetensors', 'checkpoint/optimizer.safetensors', ...LOGS] },
  { name: 'mezo full', flags: ['--optimizer', 'mezo', '--lr', '1e-3', '--zo-eps', '1e-3'], outputs: ['final/model.safetensors', 'trajectory.jsonl', ...LOGS] },
  { name: 'mezo lora', flags: ['--optimizer', 'mezo', '--lr', '1e-2', '--peft', 'lora'], outputs: ['final/adapter_model.safetensors', 'initial/adapter_model.safetensors', 'trajectory.jsonl', ...LOGS] },
];

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
}

function runCli(args: string[], killAfterMs?: number): Promise<Exit> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, LMTUNE_THREADS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = killAfterMs !== undefined ? setTimeout(() => p.kill('SIGKILL'), killAfterMs) : null;
    p.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stderr, ms: performance.now() - t0 });
    });
  });
}

export interface KillReport {
  job: string;
  /** runs started */
  runs: number;
  /** runs that really were killed before finishing */
  kills: number;
  /** runs whose resume failed, or whose outputs differ from the uninterrupted run */
  lost: number;
  differing: number;
  problems: string[];
}

function trainArgs(job: KillJob, data: string, out: string): string[] {
  return ['train', '--model', MODEL, '--task', 'sst2', '--data', data, '--num-dev', '16', '--max-steps', '12', '--batch-size', '4', '--save-every', '1', '--eval-every', '4', '--seed', '3', ...job.flags, '--out', out];
}

/** `runs` kills of one job, at moments drawn from `seed`; `root` is a scratch folder (emptied) */
export async function killJob(job: KillJob, runs: number, seed: number, root: string, onRun?: (k: number, note: string) => void): Promise<KillReport> {
  const report: KillReport = { job: job.name, runs: 0, kills: 0, lost: 0, differing: 0, problems: [] };
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const data = join(root, 'sst2.jsonl');
  writeFileSync(data, readFileSync(SST2, 'utf8').split('\n').slice(0, 80).join('\n') + '\n');
  const base = join(root, 'base');
  const b = await runCli(trainArgs(job, data, base));
  if (b.code !== 0) throw new Error(`${job.name}: the uninterrupted run failed: ${b.stderr}`);
  const expected = job.outputs.map((f) => readFileSync(join(base, f)));
  const rng = new Rng(`kill/${seed}/${job.name}`);
  for (let k = 0; k < runs; k++) {
    report.runs++;
    const dir = join(root, `run${k}`);
    // anywhere from process start to a little past the uninterrupted run's end
    const at = Math.floor(rng.uniform() * b.ms * 1.1);
    const first = await runCli(trainArgs(job, data, dir), at);
    const killed = first.signal === 'SIGKILL';
    if (killed) report.kills++;
    let ok = first.code === 0;
    for (let attempt = 0; !ok && attempt < 3; attempt++) {
      // killed before config.json existed: nothing to resume, start it again (same folder)
      const args = existsSync(join(dir, 'config.json')) ? ['train', '--resume', dir] : trainArgs(job, data, dir);
      const r = await runCli(args);
      ok = r.code === 0;
      if (!ok && attempt === 2) report.problems.push(`run ${k} (killed at ${at} ms): resume failed: ${r.stderr.trim().split('\n').pop()}`);
    }
    if (!ok) {
      report.lost++;
      continue;
    }
    const differs = job.outputs.filter((f, i) => !existsSync(join(dir, f)) || !readFileSync(join(dir, f)).equals(expected[i]!));
    if (differs.length) {
      report.differing++;
      report.problems.push(`run ${k} (killed at ${at} ms${killed ? '' : ', finished first'}): ${differs.join(', ')} differ`);
    }
    onRun?.(k, `${killed ? `killed at ${at} ms` : 'finished before the kill'}${differs.length ? `, DIFFERS: ${differs.join(', ')}` : ''}`);
    rmSync(dir, { recursive: true, force: true });
  }
  rmSync(root, { recursive: true, force: true });
  return report;
}
