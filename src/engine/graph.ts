/**
 * The graph IR: values with static shapes, nodes applying primitives, and a builder API on `Value` that
 * reads like ordinary math (`x.matmul(w, { transB: true }).add(b).gelu()`). Nodes are appended in
 * creation order, so a graph is always topologically sorted; autodiff appends the backward nodes.
 */
import { LmtuneError } from '../util/errors.ts';
import { getPrimitive, type Attrs, type Primitive } from './primitive.ts';
import { type DType, type Shape, type TensorType, fmtType, numel } from './types.ts';
import './ops/index.ts';

export type ValueKind = 'input' | 'param' | 'const' | 'node';

export interface ConstData {
  readonly data: Float64Array; // values (cast to dtype at emission)
}

export class Node {
  constructor(
    readonly id: number,
    readonly prim: Primitive,
    readonly inputs: readonly Value[],
    readonly attrs: Attrs,
    public outputs: Value[],
  ) {}
}

export class Value implements TensorType {
  /** set for kind 'node' */
  producer: Node | null = null;
  /** index among producer's outputs */
  outputIndex = 0;
  constData: ConstData | null = null;

  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly shape: Shape,
    readonly dtype: DType,
    readonly kind: ValueKind,
    readonly name: string,
  ) {}

  get rank(): number {
    return this.shape.length;
  }
  get size(): number {
    return numel(this.shape);
  }
  toString(): string {
    return `${this.name}:${fmtType(this)}`;
  }

  private lift(o: Value | number): Value {
    return typeof o === 'number' ? this.graph.scalar(o, this.dtype) : o;
  }

  // ---- elementwise, broadcasting ----
  add(o: Value | number): Value { return this.graph.apply1('add', [this, this.lift(o)]); }
  sub(o: Value | number): Value { return this.graph.apply1('sub', [this, this.lift(o)]); }
  mul(o: Value | number): Value { return this.graph.apply1('mul', [this, this.lift(o)]); }
  div(o: Value | number): Value { return this.graph.apply1('div', [this, this.lift(o)]); }
  neg(): Value { return this.graph.apply1('neg', [this]); }
  exp(): Value { return this.graph.apply1('exp', [this]); }
  log(): Value { return this.graph.apply1('log', [this]); }
  sqrt(): Value { return this.graph.apply1('sqrt', [this]); }
  rsqrt(): Value { return this.graph.apply1('reciprocal', [this.graph.apply1('sqrt', [this])]); }
  reciprocal(): Value { return this.graph.apply1('reciprocal', [this]); }
  pow(p: number): Value { return this.graph.apply1('powc', [this], { p }); }
  square(): Value { return this.mul(this); }
  tanh(): Value { return this.graph.apply1('tanh', [this]); }
  erf(): Value { return this.graph.apply1('erf', [this]); }
  sigmoid(): Value { return this.graph.apply1('sigmoid', [this]); }
  relu(): Value { return this.graph.apply1('relu', [this]); }
  silu(): Value { return this.mul(this.sigmoid()); }
  gelu(approximate: 'none' | 'tanh' = 'none'): Value { return this.graph.apply1('gelu', [this], { approximate }); }
  lt(o: Value | number): Value { return this.graph.apply1('less', [this, this.lift(o)]); }
  gt(o: Value | number): Value { return this.graph.apply1('greater', [this, this.lift(o)]); }
  eq(o: Value | number): Value { return this.graph.apply1('equal', [this, this.lift(o)]); }
  cast(dtype: DType): Value { return dtype === this.dtype ? this : this.graph.apply1('cast', [this], { to: dtype }); }
  stopGradient(): Value { return this.graph.apply1('stop_gradient', [this]); }

  // ---- reductions ----
  sum(axes?: number | number[], keepdims = false): Value { return this.graph.apply1('reduce_sum', [this], { axes: normAxes(axes, this.rank), keepdims }); }
  mean(axes?: number | number[], keepdims = false): Value { return this.graph.apply1('reduce_mean', [this], { axes: normAxes(axes, this.rank), keepdims }); }
  max(axes?: number | number[], keepdims = false): Value { return this.graph.apply1('reduce_max', [this], { axes: normAxes(axes, this.rank), keepdims }); }
  softmax(axis = -1): Value { return this.graph.apply1('softmax', [this], { axis: ax(axis, this.rank) }); }
  logSoftmax(axis = -1): Value { return this.graph.apply1('log_softmax', [this], { axis: ax(axis, this.rank) }); }
  /** log Σ exp along axis, stable: the max is subtracted under stop-gradient (the gradient stays exact). */
  logsumexp(axis = -1, keepdims = false): Value {
    const a = ax(axis, this.rank);
    const m = this.max(a, true).stopGradient();
    const s = this.sub(m).exp().sum(a, true).log().add(m);
    return keepdims ? s : s.reshape(this.shape.filter((_, i) => i !== a));
  }

  // ---- shape ----
  reshape(shape: readonly number[]): Value {
    const s = resolveReshape(this.shape, shape);
    if (s.length === this.rank && s.every((d, i) => d === this.shape[i])) return this;
    return this.graph.apply1('reshape', [this], { shape: s });
  }
  transpose(perm?: readonly number[]): Value {
    const p = perm ? perm.map((a) => ax(a, this.rank)) : [...this.shape.keys()].reverse();
    return this.graph.apply1('transpose', [this], { perm: p });
  }
  /** slice along one axis: [start, end) with step 1 */
  slice(axis: number, start: number, end: number): Value {
    const a = ax(axis, this.rank);
    const d = this.shape[a]!;
    const s = start < 0 ? start + d : start;
    const e = end < 0 ? end + d : Math.min(end, d);
    if (s === 0 && e === d) return this;
    return this.graph.apply1('slice', [this], { axis: a, start: s, end: e });
  }
  expand(shape: readonly number[]): Value { return this.graph.apply1('expand', [this], { shape: [...shape] }); }
  unsqueeze(axis: number): Value {
    const a = axis < 0 ? axis + this.rank + 1 : axis;
    const s = [...this.shape];
    s.splice(a, 0, 1);
    return this.reshape(s);
  }
  squeeze(axis: number): Value {
    const a = ax(axis, this.rank);
    if (this.shape[a] !== 1) throw new LmtuneError('SHAPE', `squeeze: axis ${axis} of ${this} is not 1`);
    return this.reshape(this.shape.filter((_, i) => i !== a));
  }

  // ---- linear algebra ----
  /** batched matmul with broadcasting batch dims; transA/transB transpose the last two axes */
  matmul(o: Value, opts: { transA?: boolean; transB?: boolean } = {}): Value {
    return this.graph.apply1('matmul', [this, o], { transA: opts.transA ?? false, transB: opts.transB ?? false });
  }
}

function ax(a: number, rank: number): number {
  const r = a < 0 ? a + rank : a;
  if (r < 0 || r >= rank) throw new LmtuneError('SHAPE', `axis ${a} out of range for rank ${rank}`);
  return r;
}

function normAxes(axes: number | number[] | undefined, rank: number): number[] {
  if (axes === undefined) return [...Array(rank).keys()];
  const list = Array.isArray(axes) ? axes : [axes];
  return [...new Set(list.map((a) => ax(a, rank)))].sort((x, y) => x - y);
}

function resolveReshape(from: Shape, to: readonly number[]): number[] {
  const n = numel(from);
  const s = [...to];
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = numel(s.filter((_, i) => i !== neg));
    if (rest === 0 || n % rest !== 0) throw new LmtuneError('SHAPE', `reshape: cannot infer -1 reshaping [${from.join(', ')}] to [${to.join(', ')}]`);
    s[neg] = n / rest;
  }
  if (numel(s) !== n) throw new LmtuneError('SHAPE', `reshape: [${from.join(', ')}] (${n} elements) cannot become [${to.join(', ')}] (${numel(s)} elements)`);
  return s;
}

export class Graph {
  readonly values: Value[] = [];
  readonly nodes: Node[] = [];
  private names = new Set<string>();
  private scalarCache = new Map<string, Value>();

  constructor(readonly name = 'lmtune') {}

  private newValue(shape: Shape, dtype: DType, kind: ValueKind, name: string): Value {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new LmtuneError('SHAPE', `value '${name}': invalid dimension ${d} in [${shape.join(', ')}]`);
    }
    const v = new Value(this, this.values.length, [...shape], dtype, kind, name);
    this.values.push(v);
    return v;
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new LmtuneError('GRAPH', `graph '${this.name}': the name '${name}' is used twice`);
    this.names.add(name);
    return name;
  }

  /** data fed at run time (token ids, masks) */
  input(name: string, shape: Shape, dtype: DType = 'f32'): Value {
    return this.newValue(shape, dtype, 'input', this.claim(name));
  }

  /** a weight: fed at run time from our own Float32Array (zero-copy on the ort executor) */
  param(name: string, shape: Shape): Value {
    return this.newValue(shape, 'f32', 'param', this.claim(name));
  }

  /** a constant baked into the graph */
  constant(data: ArrayLike<number>, shape: Shape, dtype: DType = 'f32'): Value {
    if (data.length !== numel(shape)) throw new LmtuneError('SHAPE', `constant: ${data.length} values for shape [${shape.join(', ')}]`);
    const v = this.newValue(shape, dtype, 'const', `const_${this.values.length}`);
    v.constData = { data: Float64Array.from(data) };
    return v;
  }

  scalar(x: number, dtype: DType = 'f32'): Value {
    const key = `${dtype}:${Object.is(x, -0) ? '-0' : x}`;
    let v = this.scalarCache.get(key);
    if (!v) {
      v = this.constant([x], [], dtype);
      this.scalarCache.set(key, v);
    }
    return v;
  }

  zeros(shape: Shape): Value {
    return this.scalar(0).expand([...shape]);
  }

  /** apply a primitive; returns all outputs */
  apply(name: string, inputs: readonly Value[], attrs: Attrs = {}): Value[] {
    const prim = getPrimitive(name);
    for (const x of inputs) {
      if (x.graph !== this) throw new LmtuneError('GRAPH', `${name}: input ${x} belongs to another graph`);
    }
    let types: TensorType[];
    try {
      types = prim.infer(inputs, attrs);
    } catch (e) {
      if (e instanceof LmtuneError && e.code === 'SHAPE') {
        throw new LmtuneError('SHAPE', `${e.message} (inputs: ${inputs.map(String).join(', ')})`);
      }
      throw e;
    }
    const node = new Node(this.nodes.length, prim, inputs, attrs, []);
    node.outputs = types.map((t, i) => {
      const v = this.newValue(t.shape, t.dtype, 'node', `${name}_${node.id}${types.length > 1 ? `_${i}` : ''}`);
      v.producer = node;
      v.outputIndex = i;
      return v;
    });
    this.nodes.push(node);
    return node.outputs;
  }

  apply1(name: string, inputs: readonly Value[], attrs: Attrs = {}): Value {
    return this.apply(name, inputs, attrs)[0]!;
  }

  where(cond: Value, a: Value | number, b: Value | number): Value {
    const av = typeof a === 'number' ? this.scalar(a) : a;
    const bv = typeof b === 'number' ? this.scalar(b) : b;
    return this.apply1('where', [cond, av, bv]);
  }

  concat(xs: readonly Value[], axis: number): Value {
    if (xs.length === 1) return xs[0]!;
    const a = ax(axis, xs[0]!.rank);
    return this.apply1('concat', xs, { axis: a });
  }

  params(): Value[] {
    return this.values.filter((v) => v.kind === 'param');
  }
  inputs(): Value[] {
    return this.values.filter((v) => v.kind === 'input');
  }
}

/** Values needed to compute `outputs`, and the nodes producing them, in topological order. */
export function liveSubgraph(outputs: readonly Value[]): { nodes: Node[]; leaves: Value[] } {
  const seenNodes = new Set<Node>();
  const leaves = new Set<Value>();
  const stack: Value[] = [...outputs];
  while (stack.length) {
    const v = stack.pop()!;
    if (v.producer) {
      if (seenNodes.has(v.producer)) continue;
      seenNodes.add(v.producer);
      stack.push(...v.producer.inputs);
    } else leaves.add(v);
  }
  const nodes = [...seenNodes].sort((a, b) => a.id - b.id);
  const leafList = [...leaves].sort((a, b) => a.id - b.id);
  return { nodes, leaves: leafList };
}
