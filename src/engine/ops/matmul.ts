/**
 * Batched matrix product with broadcasting batch axes and free transposes of the last two axes. Emitted
 * as Gemm (2-D), MatMul (no transposes) or com.microsoft FusedMatMul (batched with transposes), so a
 * transpose never costs a pass over memory.
 */
import { LmtuneError } from '../../util/errors.ts';
import { definePrimitive } from '../primitive.ts';
import { float, int } from '../onnx.ts';
import { broadcastShapes, fmtType, numel } from '../types.ts';
import { arr, broadcastIndex } from './refkit.ts';
import type { Value } from '../graph.ts';

interface MatmulAttrs extends Record<string, unknown> {
  transA: boolean;
  transB: boolean;
}

function dims(t: { shape: readonly number[] }, trans: boolean): [number, number] {
  const r = t.shape.length;
  const a = t.shape[r - 2]!;
  const b = t.shape[r - 1]!;
  return trans ? [b, a] : [a, b];
}

definePrimitive<MatmulAttrs>({
  name: 'matmul',
  infer([a, b], { transA, transB }) {
    if (a!.dtype !== 'f32' || b!.dtype !== 'f32') throw new LmtuneError('SHAPE', `matmul: expects f32 operands, got ${fmtType(a!)} and ${fmtType(b!)}`);
    if (a!.shape.length < 2 || b!.shape.length < 2) throw new LmtuneError('SHAPE', `matmul: operands need rank >= 2, got ${fmtType(a!)} and ${fmtType(b!)}`);
    const [m, k] = dims(a!, transA);
    const [k2, n] = dims(b!, transB);
    if (k !== k2) {
      throw new LmtuneError('SHAPE', `matmul: inner dimensions differ: ${fmtType(a!)}${transA ? 'ᵀ' : ''} @ ${fmtType(b!)}${transB ? 'ᵀ' : ''} (${k} vs ${k2})`);
    }
    const batch = broadcastShapes(a!.shape.slice(0, -2), b!.shape.slice(0, -2));
    if (!batch) throw new LmtuneError('SHAPE', `matmul: batch axes of ${fmtType(a!)} and ${fmtType(b!)} do not broadcast`);
    return [{ shape: [...batch, m, n], dtype: 'f32' }];
  },
  ref([a, b], { transA, transB }, [o]) {
    const [m, k] = dims(a!, transA);
    const [, n] = dims(b!, transB);
    const batchShape = o!.shape.slice(0, -2);
    const nb = numel(batchShape);
    const ia = broadcastIndex(batchShape, a!.shape.slice(0, -2));
    const ib = broadcastIndex(batchShape, b!.shape.slice(0, -2));
    const out = arr(o!.shape);
    const sa = m * k;
    const sb = k * n;
    for (let bi = 0; bi < nb; bi++) {
      const ao = ia[bi]! * sa;
      const bo = ib[bi]! * sb;
      const oo = bi * m * n;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) {
            const av = a!.data[ao + (transA ? p * m + i : i * k + p)]!;
            const bv = b!.data[bo + (transB ? j * k + p : p * n + j)]!;
            s += av * bv;
          }
          out.data[oo + i * n + j] = s;
        }
      }
    }
    return [out];
  },
  emit(e, [a, b], [y], { transA, transB }, node) {
    const [A, B] = node.inputs;
    if (A!.rank === 2 && B!.rank === 2) {
      e.node('Gemm', [a!, b!], [y!], { transA: int(transA ? 1 : 0), transB: int(transB ? 1 : 0) });
    } else if (!transA && !transB) {
      e.node('MatMul', [a!, b!], [y!]);
    } else {
      e.node('FusedMatMul', [a!, b!], [y!], { transA: int(transA ? 1 : 0), transB: int(transB ? 1 : 0), alpha: float(1) }, 'com.microsoft');
    }
  },
  vjp(ctx, node, [ct]) {
    if (!ct) return [null, null];
    const [A, B] = node.inputs as [Value, Value];
    const { transA, transB } = node.attrs as MatmulAttrs;
    // dA: C = op(A) op(B)  ⇒  d op(A) = dC op(B)ᵀ
    let dA: Value;
    if (!transA) dA = flatGrad(ct, B, false, !transB, A, ctx.perExample(0), 'left');
    else dA = transB ? B.matmul(ct, { transA: true, transB: true }) : B.matmul(ct, { transB: true });
    let dB: Value;
    if (!transB) dB = flatGrad(A, ct, !transA, false, B, ctx.perExample(1), 'right');
    else dB = transA ? ct.matmul(A, { transA: true, transB: true }) : flatGrad(ct, A, true, false, B, ctx.perExample(1), 'right');
    return [dA, dB];
  },
});

/**
 * x @ y (with transposes) producing the gradient of `target`. When target is a plain 2-D weight used
 * with batched data, flatten the batch axes into one GEMM instead of a batched product and a sum:
 * same FLOPs, no [batch, m, n] intermediate. For per-example targets keep the batched product.
 */
function flatGrad(x: Value, y: Value, tx: boolean, ty: boolean, target: Value, perExample: boolean, side: 'left' | 'right'): Value {
  const batched = x.rank > 2 || y.rank > 2;
  if (!perExample && target.rank === 2 && batched) {
    const rows = (v: Value) => numel(v.shape.slice(0, -1));
    if (side === 'right' && tx && !ty && x.rank > 2 && y.rank === x.rank && rows(x) === rows(y)) {
      // dB = Aᵀ dC with A [..., M, K], dC [..., M, N]  →  [K, N] from [(...M), K]ᵀ [(...M), N]
      const K = x.shape[x.rank - 1]!;
      const N = y.shape[y.rank - 1]!;
      return x.reshape([-1, K]).matmul(y.reshape([-1, N]), { transA: true });
    }
  }
  return x.matmul(y, { transA: tx, transB: ty });
}
