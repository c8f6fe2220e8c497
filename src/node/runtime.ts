/**
 * Node's settings for the runtime, read once at the edge: LMTUNE_THREADS (intra-op threads, default all
 * cores), LMTUNE_ORT_ARENA=1 (onnxruntime's memory arena), LMTUNE_ORT_MEMPATTERN=1/0 (its memory-pattern
 * planner; by graph size when unset), LMTUNE_MEMORY_MB (the memory a model must fit, see memoryFromEnv).
 * The core never reads the environment; entry points (the CLI, benchmarks) call this.
 * Importing this module also registers Node as the core's host (./host.ts: files by path).
 */
import { availableParallelism, freemem } from 'node:os';
import { configureOrt } from '../engine/index.ts';
import { configureMemory } from '../models/memory.ts';
import './host.ts';

/**
 * The memory budget of the up-front check (src/models/memory.ts): LMTUNE_MEMORY_MB (megabytes, or "off"),
 * else what the OS says is available now (process.availableMemory(): free memory within the cgroup limit).
 */
export function memoryFromEnv(env: NodeJS.ProcessEnv = process.env): { bytes: number; source: string } | null {
  const v = env.LMTUNE_MEMORY_MB;
  if (v === 'off') return null;
  if (v !== undefined && v !== '') return { bytes: Number(v) * 2 ** 20, source: `LMTUNE_MEMORY_MB=${v}` };
  const avail = (process as { availableMemory?: () => number }).availableMemory?.() ?? freemem();
  return { bytes: avail, source: 'free memory reported by the OS; LMTUNE_MEMORY_MB overrides it' };
}

export function configureRuntimeFromEnv(env: NodeJS.ProcessEnv = process.env): void {
  configureMemory(memoryFromEnv(env));
  const threads = Number(env.LMTUNE_THREADS);
  const flag = (v: string | undefined): boolean | undefined => (v === undefined || v === '' ? undefined : v === '1');
  configureOrt({
    threads: Number.isInteger(threads) && threads > 0 ? threads : availableParallelism(),
    arena: flag(env.LMTUNE_ORT_ARENA),
    // by graph size unless asked for: in Node the planner's block is mapped and unmapped every run, which
    // small graphs pay for in page faults and large ones save memory with (engine/ort.ts, PATTERN_MIN_INPUT_BYTES)
    memPattern: flag(env.LMTUNE_ORT_MEMPATTERN) ?? 'auto',
  });
}
