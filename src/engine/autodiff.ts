/**
 * Reverse-mode autodiff as a graph transformation: `grad(loss, wrt)` appends the backward nodes to the
 * same graph and returns the gradient values, so one compiled graph returns the loss and its gradients.
 *
 * Per-example gradients: for parameters listed in `perExample`, the gradient keeps the batch axis
 * ([B, ...shape]) instead of summing it. VJP rules produce cotangents in the broadcast (batched) shape
 * of their output and this engine reduces them to each input's shape, so "keep the batch axis" is one
 * decision here rather than in every rule; matmul looks at `ctx.perExample` to pick a batched product
 * over a flattened GEMM. The cost is one batched backward pass. Pass a loss that is the *sum* of the
 * per-example losses so row b of the result is the gradient of example b's loss.
 */
import { LmtuneError } from '../util/errors.ts';
import type { Graph, Node, Value } from './graph.ts';
import type { VjpContext } from './primitive.ts';
import { broadcastShapes, fmtShape, sameShape } from './types.ts';

export interface GradOptions {
  /** parameters whose gradients keep the leading batch axis */
  perExample?: readonly Value[];
  /** cotangent of `loss` (defaults to 1 for a scalar loss) */
  seed?: Value;
}

function sumTo(ct: Value, shape: readonly number[]): Value {
  if (sameShape(ct.shape, shape)) return ct;
  const b = broadcastShapes(ct.shape, shape);
  if (b && sameShape(b, shape)) return ct.expand([...shape]); // the contribution was smaller (a broadcast scalar)
  const r = ct.rank;
  const k = shape.length;
  const axes: number[] = [];
  for (let i = 0; i < r; i++) {
    if (i < r - k) axes.push(i);
    else if (shape[i - (r - k)] === 1 && ct.shape[i] !== 1) axes.push(i);
  }
  return ct.sum(axes, true).reshape(shape);
}

function sumToPerExample(ct: Value, param: Value): Value {
  const k = param.rank;
  const r = ct.rank;
  if (r < k + 1) {
    throw new LmtuneError(
      'UNSUPPORTED',
      `per-example gradient of '${param.name}' ${fmtShape(param.shape)}: a use of it produces a cotangent ${fmtShape(ct.shape)} without a batch axis`,
      'per-example parameters must be consumed directly by ops on batched data (matmul, add, mul); apply transposes to the data instead',
    );
  }
  const axes: number[] = [];
  for (let i = 1; i < r; i++) {
    if (i < r - k) axes.push(i);
    else if (param.shape[i - (r - k)] === 1 && ct.shape[i] !== 1) axes.push(i);
  }
  const s = axes.length ? ct.sum(axes, true) : ct;
  return s.reshape([ct.shape[0]!, ...param.shape]);
}

export function grad(loss: Value, wrt: readonly Value[], opts: GradOptions = {}): Value[] {
  const g: Graph = loss.graph;
  const perEx = new Set(opts.perExample ?? []);
  for (const p of perEx) if (!wrt.includes(p)) throw new LmtuneError('GRAPH', `per-example parameter '${p.name}' is not among the differentiated values`);
  if (!opts.seed && loss.rank !== 0) throw new LmtuneError('SHAPE', `grad: the loss must be a scalar, got ${loss}; pass a seed cotangent for non-scalar outputs`);
  if (loss.dtype !== 'f32') throw new LmtuneError('SHAPE', `grad: the loss must be f32, got ${loss}`);

  // values that depend on any differentiated value
  const active = new Set<Value>(wrt);
  const nodes: Node[] = g.nodes.filter((n) => n.id <= (loss.producer?.id ?? -1));
  for (const n of nodes) {
    if (n.prim.name === 'stop_gradient') continue;
    if (n.inputs.some((x) => active.has(x))) for (const o of n.outputs) active.add(o);
  }

  const cts = new Map<Value, Value>();
  const perExBatch = new Map<Value, number>();
  const accumulate = (v: Value, c: Value): void => {
    const prev = cts.get(v);
    cts.set(v, prev ? prev.add(c) : c);
  };
  cts.set(loss, opts.seed ?? g.scalar(1));

  for (let ni = nodes.length - 1; ni >= 0; ni--) {
    const node = nodes[ni]!;
    const outCts = node.outputs.map((o) => cts.get(o) ?? null);
    if (outCts.every((c) => c === null)) continue;
    if (!node.inputs.some((x) => active.has(x))) continue;
    if (!node.prim.vjp) {
      if (node.prim.name === 'stop_gradient') continue;
      throw new LmtuneError('UNSUPPORTED', `no gradient rule for primitive '${node.prim.name}' (node ${node.id}) on the path to the loss`);
    }
    const ctx: VjpContext = { graph: g, perExample: (i: number) => perEx.has(node.inputs[i]!) };
    const inCts = node.prim.vjp(ctx, node, outCts);
    node.inputs.forEach((x, i) => {
      const c = inCts[i];
      if (!c || !active.has(x) || x.dtype !== 'f32') return;
      if (perEx.has(x)) {
        const pe = sumToPerExample(c, x);
        const b = pe.shape[0]!;
        const seen = perExBatch.get(x);
        if (seen !== undefined && seen !== b) throw new LmtuneError('SHAPE', `per-example gradient of '${x.name}': uses disagree on the batch size (${seen} vs ${b})`);
        perExBatch.set(x, b);
        accumulate(x, pe);
      } else {
        accumulate(x, sumTo(c, x.shape));
      }
    });
  }
  return wrt.map((w) => {
    const c = cts.get(w);
    if (c) return c;
    if (perEx.has(w)) throw new LmtuneError('GRAPH', `per-example gradient of '${w.name}': the loss does not depend on it`);
    return g.zeros(w.shape);
  });
}

/** loss and gradients in one graph */
export function valueAndGrad(loss: Value, wrt: readonly Value[], opts: GradOptions = {}): { value: Value; grads: Value[] } {
  return { value: loss, grads: grad(loss, wrt, opts) };
}
