/**
 * The `ref` executor: a float64 interpreter of the IR. Slow and simple on purpose; it is the oracle for
 * every numerical test (finite differences, ort-vs-ref agreement) and runs tiny constructions.
 */
import { LmtuneError } from '../util/errors.ts';
import { liveSubgraph, type Value } from './graph.ts';
import type { Executable, Feeds, OutputTensor } from './executor.ts';
import { type RefArray, fmtType, numel } from './types.ts';

function feedToRef(v: Value, a: Feeds[string] | undefined): RefArray {
  if (a === undefined) throw new LmtuneError('GRAPH', `missing feed for ${v.kind} '${v.name}' ${fmtType(v)}`);
  if (a.length !== numel(v.shape)) throw new LmtuneError('SHAPE', `feed '${v.name}': ${a.length} values for ${fmtType(v)}`);
  const data = a instanceof BigInt64Array ? Float64Array.from(a, (x) => Number(x)) : Float64Array.from(a as ArrayLike<number>);
  return { shape: v.shape, data };
}

export function evaluateRef(outputs: Record<string, Value>, feeds: Feeds): Record<string, RefArray> {
  const outList = Object.values(outputs);
  const { nodes, leaves } = liveSubgraph(outList);
  const env = new Map<Value, RefArray>();
  for (const leaf of leaves) {
    if (leaf.kind === 'const') env.set(leaf, { shape: leaf.shape, data: leaf.constData!.data });
    else env.set(leaf, feedToRef(leaf, feeds[leaf.name]));
  }
  for (const n of nodes) {
    const ins = n.inputs.map((x) => env.get(x)!);
    const outs = n.prim.ref(ins, n.attrs, n.outputs);
    n.outputs.forEach((o, i) => env.set(o, { shape: o.shape, data: outs[i]!.data }));
  }
  const result: Record<string, RefArray> = {};
  for (const [k, v] of Object.entries(outputs)) result[k] = env.get(v)!;
  return result;
}

export function compileRef(outputs: Record<string, Value>): Executable {
  return {
    backend: 'ref',
    async run(feeds: Feeds): Promise<Record<string, OutputTensor>> {
      return evaluateRef(outputs, feeds);
    },
  };
}
