/** Benchmark helpers: timing (median of reps after a warm-up), peak RSS, and the PyTorch baseline. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { configureRuntimeFromEnv } from '../src/node/runtime.ts';

configureRuntimeFromEnv();

export async function timeMs(fn: () => Promise<unknown>, reps = 3): Promise<number> {
  await fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    await fn();
    ts.push(performance.now() - t);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)]!;
}

export function peakRssMb(): number {
  return process.resourceUsage().maxRSS / 1024;
}

const TORCH_SCRIPT = new URL('../../shared/bench/torch_gpt2.py', import.meta.url).pathname;

/** Runs the shared PyTorch baseline script (when /usr/bin/python3 can import torch); null otherwise. */
export function torchBaseline(mode: string, args: string[], threads: number): Record<string, number | string> | null {
  if (!existsSync('/usr/bin/python3') || !existsSync(TORCH_SCRIPT)) return null;
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return null;
  const r = spawnSync('/usr/bin/python3', [TORCH_SCRIPT, mode, '--threads', String(threads), ...args], {
    encoding: 'utf8',
    env: { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) },
    maxBuffer: 1 << 20,
  });
  if (r.status !== 0) return { error: (r.stderr || '').trim().split('\n').slice(-1)[0] ?? 'failed' };
  const line = r.stdout.trim().split('\n').pop() ?? '{}';
  return JSON.parse(line) as Record<string, number | string>;
}

export function ratio(a: unknown, b: unknown): number | null {
  return typeof a === 'number' && typeof b === 'number' && b > 0 ? Math.round((a / b) * 1000) / 1000 : null;
}
