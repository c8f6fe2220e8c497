/** Benchmark helpers: timing (median of reps after a warm-up), peak RSS, and the PyTorch baseline. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { configureRuntimeFromEnv } from '../src/node/runtime.ts';
import { TransformerModel } from '../src/heads/model.ts';
import { WeightStore } from '../src/models/weights.ts';
import { expectedTensors, parseModelConfig } from '../src/models/config.ts';
import { Rng } from '../src/util/rng.ts';

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

/** GPT-2-small (124M: 12 layers, d = 768, 12 heads, 50257 words) with seeded random weights, as the PyTorch baselines build it */
export function gpt2Small(threads: number): TransformerModel {
  const raw = { model_type: 'gpt2', n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024, vocab_size: 50257, activation_function: 'gelu_new', n_inner: null };
  const cfg = parseModelConfig(raw, '(bench)');
  const store = new WeightStore();
  const rng = new Rng(0);
  for (const t of expectedTensors(cfg)) {
    if (t.tiedTo) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (/ln_.*weight$/.test(t.name)) data.fill(1);
    else if (!t.name.endsWith('.bias')) for (let i = 0; i < n; i++) data[i] = rng.normal() * 0.02;
    store.set(t.name, t.shape, data);
  }
  return TransformerModel.fromWeights(raw, store, null, { threads });
}
