/**
 * Node's settings for the runtime, read once at the edge: LMTUNE_THREADS (intra-op threads, default all
 * cores), LMTUNE_ORT_ARENA=1 (onnxruntime's memory arena), LMTUNE_ORT_MEMPATTERN=1 (its memory-pattern
 * planner). The core never reads the environment; entry points (the CLI, benchmarks) call this.
 * Importing this module also registers Node as the core's host (./host.ts: files by path).
 */
import { availableParallelism } from 'node:os';
import { configureOrt } from '../engine/index.ts';
import './host.ts';

export function configureRuntimeFromEnv(env: NodeJS.ProcessEnv = process.env): void {
  const threads = Number(env.LMTUNE_THREADS);
  const flag = (v: string | undefined): boolean | undefined => (v === undefined || v === '' ? undefined : v === '1');
  configureOrt({
    threads: Number.isInteger(threads) && threads > 0 ? threads : availableParallelism(),
    arena: flag(env.LMTUNE_ORT_ARENA),
    memPattern: flag(env.LMTUNE_ORT_MEMPATTERN),
  });
}
