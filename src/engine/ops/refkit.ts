/** Helpers for the float64 reference implementations: broadcasting index maps and strided loops. */
import { type RefArray, type Shape, numel, stridesOf } from '../types.ts';

export function arr(shape: Shape, data?: Float64Array): RefArray {
  return { shape: [...shape], data: data ?? new Float64Array(numel(shape)) };
}

/** For each flat index of `out`, the flat index into an input of shape `inp` broadcast to `out`. */
export function broadcastIndex(out: Shape, inp: Shape): Int32Array {
  const n = numel(out);
  const idx = new Int32Array(n);
  const r = out.length;
  const inStrides = stridesOf(inp);
  // effective stride per output axis (0 where the input is broadcast)
  const eff = new Array<number>(r).fill(0);
  for (let i = 0; i < inp.length; i++) {
    const oi = r - inp.length + i;
    eff[oi] = inp[i] === 1 && out[oi] !== 1 ? 0 : inStrides[i]!;
  }
  const counter = new Array<number>(r).fill(0);
  let cur = 0;
  for (let f = 0; f < n; f++) {
    idx[f] = cur;
    for (let a = r - 1; a >= 0; a--) {
      counter[a]!++;
      cur += eff[a]!;
      if (counter[a]! < out[a]!) break;
      cur -= eff[a]! * out[a]!;
      counter[a] = 0;
    }
  }
  return idx;
}

export function mapUnary(x: RefArray, f: (v: number) => number): RefArray {
  const out = new Float64Array(x.data.length);
  for (let i = 0; i < out.length; i++) out[i] = f(x.data[i]!);
  return arr(x.shape, out);
}

export function mapBinary(a: RefArray, b: RefArray, outShape: Shape, f: (x: number, y: number) => number): RefArray {
  const ia = broadcastIndex(outShape, a.shape);
  const ib = broadcastIndex(outShape, b.shape);
  const out = new Float64Array(numel(outShape));
  for (let i = 0; i < out.length; i++) out[i] = f(a.data[ia[i]!]!, b.data[ib[i]!]!);
  return arr(outShape, out);
}

/** Reduce `x` over `axes` with (init, combine); output keeps the rank (size-1 axes). */
export function reduceKeep(x: RefArray, axes: readonly number[], init: number, combine: (acc: number, v: number) => number): RefArray {
  const outShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const out = new Float64Array(numel(outShape)).fill(init);
  const map = broadcastIndex(x.shape, outShape);
  for (let i = 0; i < x.data.length; i++) out[map[i]!] = combine(out[map[i]!]!, x.data[i]!);
  return arr(outShape, out);
}

export { erf } from '../../util/erf.ts';
