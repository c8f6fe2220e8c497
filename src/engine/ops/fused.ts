/**
 * Fused neural-network primitives whose ONNX forms are single fast kernels: layer normalization and
 * cross-entropy with an ignore index. Their VJPs reuse forward outputs (mean, inverse std, log-probs)
 * so the backward pass adds as few passes over memory as possible.
 */
import { LmtuneError } from '../../util/errors.ts';
import { definePrimitive } from '../primitive.ts';
import { float, int } from '../onnx.ts';
import { fmtType, sameShape } from '../types.ts';
import { arr } from './refkit.ts';

interface LnAttrs extends Record<string, unknown> {
  eps: number;
}

/** y = (x − mean)/sqrt(var + eps)·γ + β over the last axis; outputs [y, mean, invstd] (the last two [..., 1]) */
definePrimitive<LnAttrs>({
  name: 'layer_norm',
  infer([x, g, b]) {
    const d = x!.shape[x!.shape.length - 1]!;
    if (x!.dtype !== 'f32' || !sameShape(g!.shape, [d]) || !sameShape(b!.shape, [d])) {
      throw new LmtuneError('SHAPE', `layer_norm: x ${fmtType(x!)} needs weight and bias of shape [${d}], got ${fmtType(g!)} and ${fmtType(b!)}`);
    }
    const stat = [...x!.shape.slice(0, -1), 1];
    return [
      { shape: x!.shape, dtype: 'f32' },
      { shape: stat, dtype: 'f32' },
      { shape: stat, dtype: 'f32' },
    ];
  },
  ref([x, g, b], { eps }) {
    const d = x!.shape[x!.shape.length - 1]!;
    const rows = x!.data.length / d;
    const y = arr(x!.shape);
    const mean = arr([...x!.shape.slice(0, -1), 1]);
    const inv = arr([...x!.shape.slice(0, -1), 1]);
    for (let r = 0; r < rows; r++) {
      let m = 0;
      for (let j = 0; j < d; j++) m += x!.data[r * d + j]!;
      m /= d;
      let v = 0;
      for (let j = 0; j < d; j++) v += (x!.data[r * d + j]! - m) ** 2;
      v /= d;
      const is = 1 / Math.sqrt(v + eps);
      mean.data[r] = m;
      inv.data[r] = is;
      for (let j = 0; j < d; j++) y.data[r * d + j] = (x!.data[r * d + j]! - m) * is * g!.data[j]! + b!.data[j]!;
    }
    return [y, mean, inv];
  },
  emit(e, [x, g, b], [y, mean, inv], { eps }) {
    e.node('LayerNormalization', [x!, g!, b!], [y!, mean!, inv!], { axis: int(-1), epsilon: float(eps), stash_type: int(1) });
  },
  vjp(_ctx, node, [ct]) {
    if (!ct) return [null, null, null];
    const [x, g] = node.inputs;
    const [, mean, inv] = node.outputs;
    const xhat = x!.sub(mean!).mul(inv!);
    const dxhat = ct.mul(g!);
    // dx = invstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂))
    const dx = dxhat.sub(dxhat.mean(-1, true)).sub(xhat.mul(dxhat.mul(xhat).mean(-1, true))).mul(inv!);
    return [dx, ct.mul(xhat), ct];
  },
});

interface CeAttrs extends Record<string, unknown> {
  ignoreIndex: number;
}

/**
 * Per-row negative log-likelihood of integer labels under logits [N, V]; rows whose label equals
 * ignoreIndex get 0. Outputs [nll [N], logp [N, V]]; the VJP is (softmax − onehot)·ct without
 * differentiating through log-softmax node by node.
 */
definePrimitive<CeAttrs>({
  name: 'cross_entropy',
  infer([logits, labels]) {
    if (logits!.dtype !== 'f32' || logits!.shape.length !== 2) throw new LmtuneError('SHAPE', `cross_entropy: logits must be f32 [N, V], got ${fmtType(logits!)}`);
    if (labels!.dtype !== 'i64' || !sameShape(labels!.shape, [logits!.shape[0]!])) {
      throw new LmtuneError('SHAPE', `cross_entropy: labels must be i64 [${logits!.shape[0]}], got ${fmtType(labels!)}`);
    }
    return [
      { shape: [logits!.shape[0]!], dtype: 'f32' },
      { shape: logits!.shape, dtype: 'f32' },
    ];
  },
  ref([logits, labels], { ignoreIndex }) {
    const [n, v] = logits!.shape as [number, number];
    const nll = arr([n]);
    const logp = arr([n, v]);
    for (let i = 0; i < n; i++) {
      let m = -Infinity;
      for (let j = 0; j < v; j++) m = Math.max(m, logits!.data[i * v + j]!);
      let s = 0;
      for (let j = 0; j < v; j++) s += Math.exp(logits!.data[i * v + j]! - m);
      const lse = m + Math.log(s);
      for (let j = 0; j < v; j++) logp.data[i * v + j] = logits!.data[i * v + j]! - lse;
      const y = labels!.data[i]!;
      if (y === ignoreIndex) continue;
      if (y < 0 || y >= v) throw new LmtuneError('RUNTIME', `cross_entropy: label ${y} out of range [0, ${v})`);
      nll.data[i] = -logp.data[i * v + y]!;
    }
    return [nll, logp];
  },
  emit(e, [logits, labels], [nll, logp], { ignoreIndex }) {
    e.node('LogSoftmax', [logits!], [logp!], { axis: int(1) });
    const ign = e.constOf('i64', [ignoreIndex], []);
    const isIgn = e.op('Equal', [labels!, ign]);
    const safe = e.op('Where', [isIgn, e.constOf('i64', [0], []), labels!]);
    const col = e.op('Unsqueeze', [safe, e.constI64([1])]);
    const picked = e.op('GatherElements', [logp!, col], { axis: int(1) });
    const flat = e.op('Squeeze', [picked, e.constI64([1])]);
    const neg = e.op('Neg', [flat]);
    e.node('Where', [isIgn, e.constF32([0], []), neg], [nll!]);
  },
  vjp(ctx, node, [ctNll, ctLogp]) {
    const [logits, labels] = node.inputs;
    const [, logp] = node.outputs;
    const g = ctx.graph;
    let d = null;
    if (ctNll) {
      const { ignoreIndex } = node.attrs as CeAttrs;
      const valid = labels!.eq(g.scalar(ignoreIndex, 'i64')).cast('f32').neg().add(1);
      const w = ctNll.mul(valid).unsqueeze(1);
      const onehot = g.apply1('one_hot', [labels!], { depth: logits!.shape[1]! });
      d = logp!.exp().sub(onehot).mul(w);
    }
    if (ctLogp) {
      const dl = ctLogp.sub(logp!.exp().mul(ctLogp.sum(1, true)));
      d = d ? d.add(dl) : dl;
    }
    return [d, null];
  },
});

/** one_hot(labels [N], depth) → f32 [N, depth]; labels outside [0, depth) give a zero row */
definePrimitive<{ depth: number }>({
  name: 'one_hot',
  infer([labels], { depth }) {
    if (labels!.dtype !== 'i64') throw new LmtuneError('SHAPE', `one_hot: labels must be i64, got ${fmtType(labels!)}`);
    return [{ shape: [...labels!.shape, depth], dtype: 'f32' }];
  },
  ref([labels], { depth }, [o]) {
    const out = arr(o!.shape);
    for (let i = 0; i < labels!.data.length; i++) {
      const y = labels!.data[i]!;
      if (y >= 0 && y < depth) out.data[i * depth + y] = 1;
    }
    return [out];
  },
  emit(e, [labels], [y], { depth }) {
    const range = e.constOf('i64', Array.from({ length: depth }, (_, i) => i), [depth]);
    const col = e.op('Unsqueeze', [labels!, e.constI64([-1])]);
    const eq = e.op('Equal', [col, range]);
    e.node('Cast', [eq], [y!], { to: int(1) });
  },
});

