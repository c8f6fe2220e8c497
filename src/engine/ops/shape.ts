/** Shape primitives: reshape, transpose, slice/pad, concat, expand, gather/scatter-add. */
import { LmtuneError } from '../../util/errors.ts';
import { definePrimitive } from '../primitive.ts';
import { int, ints, str } from '../onnx.ts';
import { type RefArray, type Shape, broadcastShapes, fmtShape, fmtType, numel, sameShape, stridesOf } from '../types.ts';
import { arr, broadcastIndex } from './refkit.ts';

definePrimitive<{ shape: number[] }>({
  name: 'reshape',
  infer([x], { shape }) {
    if (numel(shape) !== numel(x!.shape)) throw new LmtuneError('SHAPE', `reshape: ${fmtType(x!)} cannot become ${fmtShape(shape)}`);
    return [{ shape, dtype: x!.dtype }];
  },
  ref: ([x], { shape }) => [arr(shape, x!.data)],
  emit(e, [x], [y], { shape }) {
    e.node('Reshape', [x!, e.constI64(shape)], [y!]);
  },
  vjp(_ctx, node, [ct]) {
    return [ct ? ct.reshape(node.inputs[0]!.shape) : null];
  },
});

function permute(x: RefArray, perm: readonly number[]): RefArray {
  const outShape = perm.map((p) => x.shape[p]!);
  const inStrides = stridesOf(x.shape);
  const r = perm.length;
  const out = new Float64Array(x.data.length);
  const counter = new Array<number>(r).fill(0);
  const eff = perm.map((p) => inStrides[p]!);
  let cur = 0;
  for (let f = 0; f < out.length; f++) {
    out[f] = x.data[cur]!;
    for (let a = r - 1; a >= 0; a--) {
      counter[a]!++;
      cur += eff[a]!;
      if (counter[a]! < outShape[a]!) break;
      cur -= eff[a]! * outShape[a]!;
      counter[a] = 0;
    }
  }
  return arr(outShape, out);
}

definePrimitive<{ perm: number[] }>({
  name: 'transpose',
  infer([x], { perm }) {
    const r = x!.shape.length;
    if (perm.length !== r || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
      throw new LmtuneError('SHAPE', `transpose: perm [${perm.join(', ')}] is not a permutation of the axes of ${fmtType(x!)}`);
    }
    return [{ shape: perm.map((p) => x!.shape[p]!), dtype: x!.dtype }];
  },
  ref: ([x], { perm }) => [permute(x!, perm)],
  emit(e, [x], [y], { perm }) {
    e.node('Transpose', [x!], [y!], { perm: ints(perm) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    const { perm } = node.attrs as { perm: number[] };
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [ct.transpose(inv)];
  },
});

interface SliceAttrs extends Record<string, unknown> {
  axis: number;
  start: number;
  end: number;
}

function sliceRef(x: RefArray, axis: number, start: number, end: number): RefArray {
  const outer = numel(x.shape.slice(0, axis));
  const n = x.shape[axis]!;
  const inner = numel(x.shape.slice(axis + 1));
  const m = end - start;
  const out = new Float64Array(outer * m * inner);
  for (let o = 0; o < outer; o++) out.set(x.data.subarray(o * n * inner + start * inner, o * n * inner + end * inner), o * m * inner);
  const shape = [...x.shape];
  shape[axis] = m;
  return arr(shape, out);
}

definePrimitive<SliceAttrs>({
  name: 'slice',
  infer([x], { axis, start, end }) {
    const d = x!.shape[axis];
    if (d === undefined || start < 0 || end > d || start >= end) {
      throw new LmtuneError('SHAPE', `slice: [${start}, ${end}) along axis ${axis} is empty or outside ${fmtType(x!)}`);
    }
    const shape = [...x!.shape];
    shape[axis] = end - start;
    return [{ shape, dtype: x!.dtype }];
  },
  ref: ([x], { axis, start, end }) => [sliceRef(x!, axis, start, end)],
  emit(e, [x], [y], { axis, start, end }) {
    e.node('Slice', [x!, e.constI64([start]), e.constI64([end]), e.constI64([axis])], [y!]);
  },
  vjp(ctx, node, [ct]) {
    if (!ct) return [null];
    const { axis, start } = node.attrs as SliceAttrs;
    const d = node.inputs[0]!.shape[axis]!;
    return [ctx.graph.apply1('pad', [ct], { axis, before: start, after: d - start - ct.shape[axis]! })];
  },
});

interface PadAttrs extends Record<string, unknown> {
  axis: number;
  before: number;
  after: number;
}

definePrimitive<PadAttrs>({
  name: 'pad',
  infer([x], { axis, before, after }) {
    if (before < 0 || after < 0) throw new LmtuneError('SHAPE', `pad: negative padding ${before}/${after}`);
    const shape = [...x!.shape];
    shape[axis] = shape[axis]! + before + after;
    return [{ shape, dtype: x!.dtype }];
  },
  ref([x], { axis, before }, [o]) {
    const out = arr(o!.shape);
    const outer = numel(x!.shape.slice(0, axis));
    const n = x!.shape[axis]!;
    const N = o!.shape[axis]!;
    const inner = numel(x!.shape.slice(axis + 1));
    for (let i = 0; i < outer; i++) out.data.set(x!.data.subarray(i * n * inner, (i + 1) * n * inner), i * N * inner + before * inner);
    return [out];
  },
  emit(e, [x], [y], { axis, before, after }) {
    e.node('Pad', [x!, e.constI64([before, after]), '', e.constI64([axis])], [y!], { mode: str('constant') });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    const { axis, before } = node.attrs as PadAttrs;
    return [ct.slice(axis, before, before + node.inputs[0]!.shape[axis]!)];
  },
});

definePrimitive<{ axis: number }>({
  name: 'concat',
  infer(xs, { axis }) {
    const first = xs[0]!;
    let total = 0;
    for (const x of xs) {
      if (x.dtype !== first.dtype || x.shape.length !== first.shape.length || x.shape.some((d, i) => i !== axis && d !== first.shape[i])) {
        throw new LmtuneError('SHAPE', `concat along axis ${axis}: ${xs.map(fmtType).join(', ')} do not match off the axis`);
      }
      total += x.shape[axis]!;
    }
    const shape = [...first.shape];
    shape[axis] = total;
    return [{ shape, dtype: first.dtype }];
  },
  ref(xs, { axis }, [o]) {
    const out = arr(o!.shape);
    const outer = numel(o!.shape.slice(0, axis));
    const inner = numel(o!.shape.slice(axis + 1));
    const N = o!.shape[axis]!;
    let off = 0;
    for (const x of xs) {
      const n = x.shape[axis]!;
      for (let i = 0; i < outer; i++) out.data.set(x.data.subarray(i * n * inner, (i + 1) * n * inner), i * N * inner + off * inner);
      off += n;
    }
    return [out];
  },
  emit(e, xs, [y], { axis }) {
    e.node('Concat', xs, [y!], { axis: int(axis) });
  },
  vjp(_ctx, node, [ct]) {
    const { axis } = node.attrs as { axis: number };
    let off = 0;
    return node.inputs.map((x) => {
      const n = x.shape[axis]!;
      const g = ct ? ct.slice(axis, off, off + n) : null;
      off += n;
      return g;
    });
  },
});

definePrimitive<{ shape: number[] }>({
  name: 'expand',
  infer([x], { shape }) {
    const s = broadcastShapes(x!.shape, shape);
    if (!s || !sameShape(s, shape)) throw new LmtuneError('SHAPE', `expand: ${fmtType(x!)} does not broadcast to ${fmtShape(shape)}`);
    return [{ shape, dtype: x!.dtype }];
  },
  ref([x], { shape }) {
    const idx = broadcastIndex(shape, x!.shape);
    const out = new Float64Array(idx.length);
    for (let i = 0; i < idx.length; i++) out[i] = x!.data[idx[i]!]!;
    return [arr(shape, out)];
  },
  emit(e, [x], [y], { shape }) {
    e.node('Expand', [x!, e.constI64(shape)], [y!]);
  },
  vjp(_ctx, _node, [ct]) {
    return [ct]; // the engine sums the broadcast axes down to the input shape
  },
});

/** rows of `data` (axis 0) picked by integer `indices` of any shape: the embedding lookup */
definePrimitive({
  name: 'gather',
  infer([data, idx]) {
    if (idx!.dtype !== 'i64') throw new LmtuneError('SHAPE', `gather: indices must be i64, got ${fmtType(idx!)}`);
    if (data!.shape.length < 1) throw new LmtuneError('SHAPE', `gather: data must have rank >= 1, got ${fmtType(data!)}`);
    return [{ shape: [...idx!.shape, ...data!.shape.slice(1)], dtype: data!.dtype }];
  },
  ref([data, idx], _a, [o]) {
    const row = numel(data!.shape.slice(1));
    const out = arr(o!.shape);
    const V = data!.shape[0]!;
    for (let i = 0; i < idx!.data.length; i++) {
      const r = idx!.data[i]!;
      if (r < 0 || r >= V) throw new LmtuneError('RUNTIME', `gather: index ${r} out of range [0, ${V})`);
      out.data.set(data!.data.subarray(r * row, (r + 1) * row), i * row);
    }
    return [out];
  },
  emit(e, [data, idx], [y]) {
    e.node('Gather', [data!, idx!], [y!], { axis: int(0) });
  },
  vjp(ctx, node, [ct]) {
    if (!ct) return [null, null];
    const [data, idx] = node.inputs;
    if (ctx.perExample(0)) throw new LmtuneError('UNSUPPORTED', `per-example gradients of an embedding table (${data}) are not supported; freeze it or use LoRA`);
    return [ctx.graph.apply1('scatter_add', [idx!, ct], { rows: data!.shape[0]! }), null];
  },
});

/** zeros[rows, ...] with updates added at the rows given by indices (repeats accumulate) */
definePrimitive<{ rows: number }>({
  name: 'scatter_add',
  infer([idx, upd], { rows }) {
    if (idx!.dtype !== 'i64') throw new LmtuneError('SHAPE', `scatter_add: indices must be i64, got ${fmtType(idx!)}`);
    const k = idx!.shape.length;
    if (!sameShape(upd!.shape.slice(0, k), idx!.shape)) throw new LmtuneError('SHAPE', `scatter_add: updates ${fmtType(upd!)} do not start with the indices shape ${fmtType(idx!)}`);
    return [{ shape: [rows, ...upd!.shape.slice(k)], dtype: upd!.dtype }];
  },
  ref([idx, upd], _a, [o]) {
    const out = arr(o!.shape);
    const row = numel(o!.shape.slice(1));
    for (let i = 0; i < idx!.data.length; i++) {
      const r = idx!.data[i]!;
      for (let j = 0; j < row; j++) out.data[r * row + j]! += upd!.data[i * row + j]!;
    }
    return [out];
  },
  emit(e, [idx, upd], [y], { rows }, node) {
    const updT = node.inputs[1]!;
    const k = node.inputs[0]!.shape.length;
    const rowShape = updT.shape.slice(k);
    const n = numel(node.inputs[0]!.shape);
    const idx2 = e.op('Reshape', [idx!, e.constI64([n, 1])]);
    const upd2 = e.op('Reshape', [upd!, e.constI64([n, ...rowShape])]);
    const zeros = e.op('ConstantOfShape', [e.constI64([rows, ...rowShape])]);
    e.node('ScatterND', [zeros, idx2, upd2], [y!], { reduction: str('add') });
  },
  vjp(ctx, node, [ct]) {
    if (!ct) return [null, null];
    return [null, ctx.graph.apply1('gather', [ct, node.inputs[0]!])];
  },
});

export type { Shape };
