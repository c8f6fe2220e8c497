/** Elementwise primitives (unary and broadcasting binary), each with its shape, ref, ONNX and VJP rules. */
import { LmtuneError } from '../../util/errors.ts';
import { definePrimitive } from '../primitive.ts';
import { str, int } from '../onnx.ts';
import { type DType, type TensorType, broadcastShapes, fmtType, numel } from '../types.ts';
import { broadcastIndex, mapBinary, mapUnary, erf as erfRef } from './refkit.ts';
import type { Value } from '../graph.ts';

function floatOnly(op: string, t: TensorType): void {
  if (t.dtype !== 'f32') throw new LmtuneError('SHAPE', `${op}: expects f32, got ${fmtType(t)}`);
}

function unary(name: string, onnxOp: string, f: (x: number) => number, vjp: ((x: Value, y: Value, ct: Value) => Value) | null): void {
  definePrimitive({
    name,
    infer([x]) {
      floatOnly(name, x!);
      return [{ shape: x!.shape, dtype: 'f32' }];
    },
    ref([x]) {
      return [mapUnary(x!, f)];
    },
    emit(e, [x], [y]) {
      e.node(onnxOp, [x!], [y!]);
    },
    ...(vjp
      ? {
          vjp(_ctx, node, [ct]) {
            if (!ct) return [null];
            return [vjp(node.inputs[0]!, node.outputs[0]!, ct)];
          },
        }
      : {}),
  });
}

unary('neg', 'Neg', (x) => -x, (_x, _y, ct) => ct.neg());
unary('exp', 'Exp', Math.exp, (_x, y, ct) => ct.mul(y));
unary('log', 'Log', Math.log, (x, _y, ct) => ct.div(x));
unary('sqrt', 'Sqrt', Math.sqrt, (_x, y, ct) => ct.div(y.mul(2)));
unary('reciprocal', 'Reciprocal', (x) => 1 / x, (_x, y, ct) => ct.mul(y.mul(y)).neg());
unary('tanh', 'Tanh', Math.tanh, (_x, y, ct) => ct.mul(y.mul(y).neg().add(1)));
unary('erf', 'Erf', erfRef, (x, _y, ct) => ct.mul(x.mul(x).neg().exp().mul(2 / Math.sqrt(Math.PI))));
unary('sigmoid', 'Sigmoid', (x) => 1 / (1 + Math.exp(-x)), (_x, y, ct) => ct.mul(y.mul(y.neg().add(1))));
unary('relu', 'Relu', (x) => (x > 0 ? x : 0), (x, _y, ct) => ct.mul(x.gt(0).cast('f32')));

definePrimitive<{ p: number }>({
  name: 'powc',
  infer([x]) {
    floatOnly('powc', x!);
    return [{ shape: x!.shape, dtype: 'f32' }];
  },
  ref([x], { p }) {
    return [mapUnary(x!, (v) => Math.pow(v, p))];
  },
  emit(e, [x], [y], { p }) {
    if (p === 2) e.node('Mul', [x!, x!], [y!]);
    else e.node('Pow', [x!, e.constF32([p], [])], [y!]);
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    const { p } = node.attrs as { p: number };
    const x = node.inputs[0]!;
    if (p === 2) return [ct.mul(x).mul(2)];
    if (p === 1) return [ct];
    return [ct.mul(x.pow(p - 1)).mul(p)];
  },
});

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

definePrimitive<{ approximate: 'none' | 'tanh' }>({
  name: 'gelu',
  infer([x]) {
    floatOnly('gelu', x!);
    return [{ shape: x!.shape, dtype: 'f32' }];
  },
  ref([x], { approximate }) {
    return [
      mapUnary(x!, (v) =>
        approximate === 'tanh' ? 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + GELU_C * v * v * v))) : 0.5 * v * (1 + erfRef(v / Math.SQRT2)),
      ),
    ];
  },
  emit(e, [x], [y], { approximate }) {
    e.node('Gelu', [x!], [y!], { approximate: str(approximate) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null];
    const x = node.inputs[0]!;
    if ((node.attrs as { approximate: string }).approximate === 'tanh') {
      // d/dx = 0.5(1+t) + 0.5 x (1-t²) √(2/π)(1 + 3c x²),  t = tanh(√(2/π)(x + c x³))
      const x2 = x.mul(x);
      const t = x.mul(x2.mul(GELU_C).add(1)).mul(SQRT_2_OVER_PI).tanh();
      const dt = t.mul(t).neg().add(1).mul(x2.mul(3 * GELU_C).add(1)).mul(x).mul(0.5 * SQRT_2_OVER_PI);
      return [ct.mul(t.add(1).mul(0.5).add(dt))];
    }
    // d/dx = Φ(x) + x φ(x)
    const cdf = x.mul(Math.SQRT1_2).erf().add(1).mul(0.5);
    const pdf = x.mul(x).mul(-0.5).exp().mul(1 / Math.sqrt(2 * Math.PI));
    return [ct.mul(cdf.add(x.mul(pdf)))];
  },
});

function binaryInfer(op: string, a: TensorType, b: TensorType, out: DType | null): TensorType[] {
  if (a.dtype !== b.dtype) throw new LmtuneError('SHAPE', `${op}: dtype mismatch ${fmtType(a)} vs ${fmtType(b)}`);
  const s = broadcastShapes(a.shape, b.shape);
  if (!s) throw new LmtuneError('SHAPE', `${op}: shapes ${fmtType(a)} and ${fmtType(b)} do not broadcast`);
  return [{ shape: s, dtype: out ?? a.dtype }];
}

function binary(name: string, onnxOp: string, f: (x: number, y: number) => number, vjp: (a: Value, b: Value, y: Value, ct: Value) => [Value | null, Value | null]): void {
  definePrimitive({
    name,
    infer([a, b]) {
      return binaryInfer(name, a!, b!, null);
    },
    ref([a, b], _attrs, [o]) {
      return [mapBinary(a!, b!, o!.shape, f)];
    },
    emit(e, [a, b], [y]) {
      e.node(onnxOp, [a!, b!], [y!]);
    },
    vjp(_ctx, node, [ct]) {
      if (!ct) return [null, null];
      return vjp(node.inputs[0]!, node.inputs[1]!, node.outputs[0]!, ct);
    },
  });
}

binary('add', 'Add', (x, y) => x + y, (_a, _b, _y, ct) => [ct, ct]);
binary('sub', 'Sub', (x, y) => x - y, (_a, _b, _y, ct) => [ct, ct.neg()]);
binary('mul', 'Mul', (x, y) => x * y, (a, b, _y, ct) => [ct.mul(b), ct.mul(a)]);
binary('div', 'Div', (x, y) => x / y, (_a, b, y, ct) => {
  const ga = ct.div(b);
  return [ga, ga.mul(y).neg()];
});

function comparison(name: string, onnxOp: string, f: (x: number, y: number) => boolean): void {
  definePrimitive({
    name,
    infer([a, b]) {
      return binaryInfer(name, a!, b!, 'bool');
    },
    ref([a, b], _attrs, [o]) {
      return [mapBinary(a!, b!, o!.shape, (x, y) => (f(x, y) ? 1 : 0))];
    },
    emit(e, [a, b], [y]) {
      e.node(onnxOp, [a!, b!], [y!]);
    },
  });
}
comparison('less', 'Less', (x, y) => x < y);
comparison('greater', 'Greater', (x, y) => x > y);
comparison('equal', 'Equal', (x, y) => x === y);

definePrimitive({
  name: 'where',
  infer([c, a, b]) {
    if (c!.dtype !== 'bool') throw new LmtuneError('SHAPE', `where: condition must be bool, got ${fmtType(c!)}`);
    if (a!.dtype !== b!.dtype) throw new LmtuneError('SHAPE', `where: branch dtypes differ: ${fmtType(a!)} vs ${fmtType(b!)}`);
    const s = broadcastShapes(c!.shape, a!.shape, b!.shape);
    if (!s) throw new LmtuneError('SHAPE', `where: shapes ${fmtType(c!)}, ${fmtType(a!)}, ${fmtType(b!)} do not broadcast`);
    return [{ shape: s, dtype: a!.dtype }];
  },
  ref([c, a, b], _attrs, [o]) {
    const shape = o!.shape;
    const ic = broadcastIndex(shape, c!.shape);
    const ia = broadcastIndex(shape, a!.shape);
    const ib = broadcastIndex(shape, b!.shape);
    const out = new Float64Array(numel(shape));
    for (let i = 0; i < out.length; i++) out[i] = c!.data[ic[i]!] ? a!.data[ia[i]!]! : b!.data[ib[i]!]!;
    return [{ shape: [...shape], data: out }];
  },
  emit(e, [c, a, b], [y]) {
    e.node('Where', [c!, a!, b!], [y!]);
  },
  vjp(ctx, node, [ct]) {
    if (!ct) return [null, null, null];
    const [c] = node.inputs;
    const zero = ctx.graph.scalar(0);
    return [null, ctx.graph.where(c!, ct, zero), ctx.graph.where(c!, zero, ct)];
  },
});

const TO: Record<DType, number> = { f32: 1, i64: 7, bool: 9 };
definePrimitive<{ to: DType }>({
  name: 'cast',
  infer([x], { to }) {
    return [{ shape: x!.shape, dtype: to }];
  },
  ref([x], { to }) {
    return [mapUnary(x!, (v) => (to === 'bool' ? (v ? 1 : 0) : to === 'i64' ? Math.trunc(v) : v))];
  },
  emit(e, [x], [y], { to }) {
    e.node('Cast', [x!], [y!], { to: int(TO[to]) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct || node.inputs[0]!.dtype !== 'f32' || (node.attrs as { to: DType }).to !== 'f32') return [null];
    return [ct];
  },
});

definePrimitive({
  name: 'stop_gradient',
  infer([x]) {
    return [{ shape: x!.shape, dtype: x!.dtype }];
  },
  ref([x]) {
    return [x!];
  },
  emit(e, [x], [y]) {
    e.node('Identity', [x!], [y!]);
  },
  // no vjp: the gradient stops here
});

