/**
 * Emits a graph as an ONNX model (opset 20 + com.microsoft contrib ops present in the stock CPU build).
 * Parameters and inputs become graph inputs, so weights are fed at run time from our own arrays;
 * constants become initializers. Only the subgraph the requested outputs need is emitted.
 */
import onnxProto from 'onnx-proto';
import { LmtuneError } from '../util/errors.ts';
import { liveSubgraph, type Value } from './graph.ts';
import type { DType } from './types.ts';

const { onnx } = onnxProto;
type NodeProtoInit = onnxProto.onnx.INodeProto;
type TensorProtoInit = onnxProto.onnx.ITensorProto;
type AttributeProtoInit = onnxProto.onnx.IAttributeProto;

export const OPSET = 20;

export type AttrValue = { i: number } | { f: number } | { s: string } | { ints: readonly number[] } | { floats: readonly number[] };
export const int = (i: number): AttrValue => ({ i });
export const float = (f: number): AttrValue => ({ f });
export const str = (s: string): AttrValue => ({ s });
export const ints = (v: readonly number[]): AttrValue => ({ ints: v });

export function onnxElemType(d: DType): number {
  switch (d) {
    case 'f32':
      return onnx.TensorProto.DataType.FLOAT;
    case 'i64':
      return onnx.TensorProto.DataType.INT64;
    case 'bool':
      return onnx.TensorProto.DataType.BOOL;
  }
}

function attrProto(name: string, v: AttrValue): AttributeProtoInit {
  const T = onnx.AttributeProto.AttributeType;
  if ('i' in v) return { name, type: T.INT, i: v.i };
  if ('f' in v) return { name, type: T.FLOAT, f: v.f };
  if ('s' in v) return { name, type: T.STRING, s: new TextEncoder().encode(v.s) };
  if ('ints' in v) return { name, type: T.INTS, ints: [...v.ints] };
  return { name, type: T.FLOATS, floats: [...v.floats] };
}

export class Emitter {
  readonly nodes: NodeProtoInit[] = [];
  readonly initializers: TensorProtoInit[] = [];
  private counter = 0;
  private constCache = new Map<string, string>();

  tmp(hint = 't'): string {
    return `_${hint}${this.counter++}`;
  }

  node(op: string, inputs: readonly string[], outputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain = ''): void {
    this.nodes.push({
      opType: op,
      domain,
      input: [...inputs],
      output: [...outputs],
      name: `${op}_${this.nodes.length}`,
      attribute: Object.entries(attrs).map(([k, v]) => attrProto(k, v)),
    });
  }

  /** one-output node into a fresh temp name */
  op(op: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    const out = this.tmp(op);
    this.node(op, inputs, [out], attrs, domain);
    return out;
  }

  constI64(values: readonly number[], shape: readonly number[] = [values.length]): string {
    const key = `i64:${shape.join('x')}:${values.join(',')}`;
    let name = this.constCache.get(key);
    if (!name) {
      name = this.tmp('ci');
      this.initializers.push({ name, dataType: onnx.TensorProto.DataType.INT64, dims: [...shape], int64Data: values.map((v) => v) });
      this.constCache.set(key, name);
    }
    return name;
  }

  constF32(values: ArrayLike<number>, shape: readonly number[]): string {
    const small = values.length <= 16;
    const key = small ? `f32:${shape.join('x')}:${Array.from(values).join(',')}` : '';
    if (small) {
      const hit = this.constCache.get(key);
      if (hit) return hit;
    }
    const name = this.tmp('cf');
    const f = Float32Array.from(values);
    this.initializers.push({ name, dataType: onnx.TensorProto.DataType.FLOAT, dims: [...shape], rawData: new Uint8Array(f.buffer) });
    if (small) this.constCache.set(key, name);
    return name;
  }

  constOf(dtype: DType, values: ArrayLike<number>, shape: readonly number[], name?: string): string {
    const n = name ?? this.tmp('c');
    if (dtype === 'f32') {
      const f = Float32Array.from(values);
      this.initializers.push({ name: n, dataType: onnx.TensorProto.DataType.FLOAT, dims: [...shape], rawData: new Uint8Array(f.buffer) });
    } else if (dtype === 'i64') {
      const b = BigInt64Array.from(Array.from(values, (x) => BigInt(Math.trunc(x))));
      this.initializers.push({ name: n, dataType: onnx.TensorProto.DataType.INT64, dims: [...shape], rawData: new Uint8Array(b.buffer) });
    } else {
      const u = Uint8Array.from(values, (x) => (x ? 1 : 0));
      this.initializers.push({ name: n, dataType: onnx.TensorProto.DataType.BOOL, dims: [...shape], rawData: u });
    }
    return n;
  }
}

export interface EmittedModel {
  bytes: Uint8Array;
  /** graph input names in order, with their types */
  inputs: Value[];
  outputNames: string[];
}

function valueInfo(name: string, v: Value): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: onnxElemType(v.dtype), shape: { dim: v.shape.map((d) => ({ dimValue: d })) } } },
  };
}

/** ONNX value name of a graph value */
export function onnxName(v: Value): string {
  return v.kind === 'input' || v.kind === 'param' ? v.name : `v${v.id}`;
}

export function emitModel(outputs: Record<string, Value>): EmittedModel {
  const outList = Object.values(outputs);
  const { nodes, leaves } = liveSubgraph(outList);
  const e = new Emitter();
  const inputs: Value[] = [];
  for (const leaf of leaves) {
    if (leaf.kind === 'const') e.constOf(leaf.dtype, leaf.constData!.data, leaf.shape, onnxName(leaf));
    else if (leaf.kind === 'input' || leaf.kind === 'param') inputs.push(leaf);
    else throw new LmtuneError('GRAPH', `value ${leaf} has no producer`);
  }
  for (const n of nodes) {
    n.prim.emit(e, n.inputs.map(onnxName), n.outputs.map(onnxName), n.attrs, n);
  }
  // graph outputs get the user's names via Identity (an output may also be a leaf or appear twice)
  const outputNames = Object.keys(outputs);
  for (const [name, v] of Object.entries(outputs)) e.node('Identity', [onnxName(v)], [`out:${name}`]);
  const graph: onnxProto.onnx.IGraphProto = {
    name: 'lmtune',
    node: e.nodes,
    initializer: e.initializers,
    input: inputs.map((v) => valueInfo(v.name, v)),
    output: Object.entries(outputs).map(([name, v]) => valueInfo(`out:${name}`, v)),
  };
  const model: onnxProto.onnx.IModelProto = {
    irVersion: 9,
    producerName: 'lmtune',
    opsetImport: [
      { domain: '', version: OPSET },
      { domain: 'com.microsoft', version: 1 },
    ],
    graph,
  };
  const bytes = onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
  return { bytes, inputs, outputNames };
}
