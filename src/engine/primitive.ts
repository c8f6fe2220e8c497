/**
 * A primitive is one definition holding, side by side: its shape/dtype rule, its float64 reference
 * implementation, its ONNX emission and its vector-Jacobian product written in terms of other
 * primitives (the JAX pattern). Adding an op means adding one of these in `ops/`.
 */
import type { Node, Value, Graph } from './graph.ts';
import type { RefArray, TensorType } from './types.ts';
import type { Emitter } from './onnx.ts';
import { LmtuneError } from '../util/errors.ts';

export type Attrs = Record<string, unknown>;

export interface VjpContext {
  readonly graph: Graph;
  /**
   * The shape the cotangent of input i must have: the input's own shape, or [B, ...shape] when the
   * caller asked for per-example gradients of that input. Rules that can compute a per-example
   * cotangent cheaply (matmul) look at this; all others return a cotangent broadcastable to the output
   * and the autodiff engine reduces it.
   */
  perExample(i: number): boolean;
}

export interface Primitive<A extends Attrs = Attrs> {
  readonly name: string;
  /** output types from input types; throws LmtuneError('SHAPE') naming the op and the shapes */
  infer(inputs: readonly TensorType[], attrs: A): TensorType[];
  /** float64 reference semantics */
  ref(inputs: readonly RefArray[], attrs: A, outputs: readonly TensorType[]): RefArray[];
  /** ONNX nodes computing the outputs (names given) from the inputs (names given) */
  emit(e: Emitter, inputs: readonly string[], outputs: readonly string[], attrs: A, node: Node): void;
  /**
   * Cotangents of the inputs given the cotangents of the outputs (null = zero). Returning null for an
   * input means it gets no gradient (indices, masks). A returned cotangent may have the output's
   * broadcast shape; the engine sums it down to the input's shape.
   */
  vjp?(ctx: VjpContext, node: Node, cts: readonly (Value | null)[]): (Value | null)[];
}

const registry = new Map<string, Primitive>();

export function definePrimitive<A extends Attrs>(p: Primitive<A>): Primitive<A> {
  if (registry.has(p.name)) throw new Error(`primitive ${p.name} defined twice`);
  registry.set(p.name, p as unknown as Primitive);
  return p;
}

export function getPrimitive(name: string): Primitive {
  const p = registry.get(name);
  if (!p) throw new LmtuneError('GRAPH', `unknown primitive '${name}'`);
  return p;
}

export function allPrimitives(): Primitive[] {
  return [...registry.values()];
}
