/** Reductions and the normalized exponentials (softmax, log-softmax). */
import { LmtuneError } from '../../util/errors.ts';
import { definePrimitive } from '../primitive.ts';
import { int } from '../onnx.ts';
import { type RefArray, type TensorType, fmtType, numel } from '../types.ts';
import { arr, broadcastIndex, reduceKeep } from './refkit.ts';
import type { Value } from '../graph.ts';

interface ReduceAttrs extends Record<string, unknown> {
  axes: number[];
  keepdims: boolean;
}

function reduceInfer(op: string, x: TensorType, { axes, keepdims }: ReduceAttrs): TensorType[] {
  if (x.dtype !== 'f32') throw new LmtuneError('SHAPE', `${op}: expects f32, got ${fmtType(x)}`);
  for (const a of axes) if (a < 0 || a >= x.shape.length) throw new LmtuneError('SHAPE', `${op}: axis ${a} out of range for ${fmtType(x)}`);
  const shape = keepdims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
  return [{ shape, dtype: 'f32' }];
}

function dropAxes(r: RefArray, outShape: readonly number[]): RefArray {
  return arr(outShape, r.data);
}

/** cotangent of a reduction, reshaped to keepdims form and broadcast back to the input shape */
function expandBack(ct: Value, x: Value, axes: readonly number[]): Value {
  const keep = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  return ct.reshape(keep).expand([...x.shape]);
}

definePrimitive<ReduceAttrs>({
  name: 'reduce_sum',
  infer: ([x], a) => reduceInfer('reduce_sum', x!, a),
  ref([x], { axes }, [o]) {
    return [dropAxes(reduceKeep(x!, axes, 0, (s, v) => s + v), o!.shape)];
  },
  emit(e, [x], [y], { axes, keepdims }) {
    if (axes.length === 0) e.node('Identity', [x!], [y!]);
    else e.node('ReduceSum', [x!, e.constI64(axes)], [y!], { keepdims: int(keepdims ? 1 : 0) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    return [expandBack(ct, node.inputs[0]!, (node.attrs as ReduceAttrs).axes)];
  },
});

definePrimitive<ReduceAttrs>({
  name: 'reduce_mean',
  infer: ([x], a) => reduceInfer('reduce_mean', x!, a),
  ref([x], { axes }, [o]) {
    const n = axes.reduce((p, a) => p * x!.shape[a]!, 1);
    const r = reduceKeep(x!, axes, 0, (s, v) => s + v);
    for (let i = 0; i < r.data.length; i++) r.data[i]! /= n;
    return [dropAxes(r, o!.shape)];
  },
  emit(e, [x], [y], { axes, keepdims }) {
    if (axes.length === 0) e.node('Identity', [x!], [y!]);
    else e.node('ReduceMean', [x!, e.constI64(axes)], [y!], { keepdims: int(keepdims ? 1 : 0) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    const x = node.inputs[0]!;
    const { axes } = node.attrs as ReduceAttrs;
    const n = axes.reduce((p, a) => p * x.shape[a]!, 1);
    return [expandBack(ct.mul(1 / n), x, axes)];
  },
});

definePrimitive<ReduceAttrs>({
  name: 'reduce_max',
  infer: ([x], a) => reduceInfer('reduce_max', x!, a),
  ref([x], { axes }, [o]) {
    return [dropAxes(reduceKeep(x!, axes, -Infinity, Math.max), o!.shape)];
  },
  emit(e, [x], [y], { axes, keepdims }) {
    if (axes.length === 0) e.node('Identity', [x!], [y!]);
    else e.node('ReduceMax', [x!, e.constI64(axes)], [y!], { keepdims: int(keepdims ? 1 : 0) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    // the gradient is shared equally among tied maxima (what the subgradient convention of JAX does)
    const x = node.inputs[0]!;
    const { axes } = node.attrs as ReduceAttrs;
    const keep = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const m = node.outputs[0]!.reshape(keep);
    const hit = x.eq(m).cast('f32');
    const count = hit.sum(axes, true);
    return [hit.div(count).mul(ct.reshape(keep))];
  },
});

function softmaxRef(x: RefArray, axis: number, log: boolean): RefArray {
  const outer = numel(x.shape.slice(0, axis));
  const n = x.shape[axis]!;
  const inner = numel(x.shape.slice(axis + 1));
  const out = new Float64Array(x.data.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * n * inner + i;
      let m = -Infinity;
      for (let k = 0; k < n; k++) m = Math.max(m, x.data[base + k * inner]!);
      let s = 0;
      for (let k = 0; k < n; k++) s += Math.exp(x.data[base + k * inner]! - m);
      const ls = Math.log(s);
      for (let k = 0; k < n; k++) {
        const z = x.data[base + k * inner]! - m;
        out[base + k * inner] = log ? z - ls : Math.exp(z - ls);
      }
    }
  }
  return arr(x.shape, out);
}

definePrimitive<{ axis: number }>({
  name: 'softmax',
  infer([x]) {
    if (x!.dtype !== 'f32') throw new LmtuneError('SHAPE', `softmax: expects f32, got ${fmtType(x!)}`);
    return [{ shape: x!.shape, dtype: 'f32' }];
  },
  ref: ([x], { axis }) => [softmaxRef(x!, axis, false)],
  emit(e, [x], [y], { axis }) {
    e.node('Softmax', [x!], [y!], { axis: int(axis) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    const y = node.outputs[0]!;
    const { axis } = node.attrs as { axis: number };
    return [y.mul(ct.sub(ct.mul(y).sum(axis, true)))];
  },
});

definePrimitive<{ axis: number }>({
  name: 'log_softmax',
  infer([x]) {
    if (x!.dtype !== 'f32') throw new LmtuneError('SHAPE', `log_softmax: expects f32, got ${fmtType(x!)}`);
    return [{ shape: x!.shape, dtype: 'f32' }];
  },
  ref: ([x], { axis }) => [softmaxRef(x!, axis, true)],
  emit(e, [x], [y], { axis }) {
    e.node('LogSoftmax', [x!], [y!], { axis: int(axis) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    const y = node.outputs[0]!;
    const { axis } = node.attrs as { axis: number };
    return [ct.sub(y.exp().mul(ct.sum(axis, true)))];
  },
});

export { broadcastIndex };
