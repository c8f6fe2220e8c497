/** Tensor types, shapes and the host-side array type shared by the IR and both executors. */
import { LmtuneError } from '../util/errors.ts';

export type DType = 'f32' | 'i64' | 'bool';
export type Shape = readonly number[];

export interface TensorType {
  readonly shape: Shape;
  readonly dtype: DType;
}

/** Host arrays the executors accept and return. Integers travel as BigInt64Array only at the ORT edge. */
export type HostArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** The float64 array the `ref` executor computes with (every dtype is held as float64 there). */
export interface RefArray {
  readonly shape: Shape;
  readonly data: Float64Array;
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function fmtShape(s: Shape): string {
  return `[${s.join(', ')}]`;
}

export function fmtType(t: TensorType): string {
  return `${t.dtype}${fmtShape(t.shape)}`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** NumPy broadcasting of several shapes; null when incompatible. */
export function broadcastShapes(...shapes: Shape[]): number[] | null {
  const r = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(r).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const oi = r - s.length + i;
      const d = s[i]!;
      if (out[oi] === 1) out[oi] = d;
      else if (d !== 1 && d !== out[oi]) return null;
    }
  }
  return out;
}

export function normAxis(axis: number, rank: number, op: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new LmtuneError('SHAPE', `${op}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}
