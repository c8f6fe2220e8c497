/** The engine's public API: build graphs, differentiate them, run them on `ort` or `ref`. */
import './ops/index.ts';
import type { Value } from './graph.ts';
import type { Backend, Executable } from './executor.ts';
import { compileOrt, type OrtOptions } from './ort.ts';
import { compileRef } from './ref.ts';

export { Graph, Value, Node, liveSubgraph } from './graph.ts';
export { grad, valueAndGrad, type GradOptions } from './autodiff.ts';
export { evaluateRef, compileRef } from './ref.ts';
export { compileOrt, defaultThreads, clearSessionCache, configureOrt, type OrtSettings } from './ort.ts';
export type { Backend, Executable, Feeds, FeedArray, OutputTensor } from './executor.ts';
export { toFloat64 } from './executor.ts';
export * from './types.ts';
export * as nn from './composites.ts';

export async function compile(outputs: Record<string, Value>, backend: Backend = 'ort', opts: OrtOptions = {}): Promise<Executable> {
  return backend === 'ref' ? compileRef(outputs) : compileOrt(outputs, opts);
}
