/** The interface both executors implement; code above the engine picks one by name. */
import type { Shape } from './types.ts';

export type FeedArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array | readonly number[];
export type Feeds = Record<string, FeedArray>;

export interface OutputTensor {
  readonly shape: Shape;
  /** f32 outputs: Float32Array on ort, Float64Array on ref; i64: BigInt64Array on ort, Float64Array on ref */
  readonly data: Float32Array | Float64Array | BigInt64Array | Uint8Array;
}

export interface Executable {
  readonly backend: Backend;
  run(feeds: Feeds, into?: Record<string, Float32Array>): Promise<Record<string, OutputTensor>>;
}

export type Backend = 'ort' | 'ref';

/** output data as float numbers regardless of backend */
export function toFloat64(t: OutputTensor): Float64Array {
  if (t.data instanceof Float64Array) return t.data;
  if (t.data instanceof BigInt64Array) return Float64Array.from(t.data, (x) => Number(x));
  return Float64Array.from(t.data);
}
