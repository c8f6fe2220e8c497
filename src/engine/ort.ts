/**
 * The `ort` executor: emits the graph as ONNX and runs it with onnxruntime-node. Parameters are graph
 * inputs wrapped around our own Float32Arrays without copying, so in-place updates (MeZO perturbations,
 * optimizer steps) are seen by the next run. Sessions are cached by the emitted model's bytes, which
 * encode the graph and its static shapes: a training loop compiles each shape bucket once.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-node';
import { LmtuneError } from '../util/errors.ts';
import type { Value } from './graph.ts';
import { emitModel } from './onnx.ts';
import type { Executable, FeedArray, Feeds, OutputTensor } from './executor.ts';
import { fmtType, numel } from './types.ts';

export interface OrtOptions {
  /** intra-op threads; default: all cores (LMTUNE_THREADS overrides) */
  threads?: number;
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();
/**
 * Sessions remembered for reuse; beyond this the oldest is forgotten (not released: an executable may
 * still hold it, and it is freed with its last reference). Long runs visit many shape buckets.
 */
const MAX_SESSIONS = 64;

function remember(key: string, p: Promise<ort.InferenceSession>): void {
  sessions.set(key, p);
  if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value as string);
}

export function defaultThreads(): number {
  const env = Number(process.env.LMTUNE_THREADS);
  return Number.isInteger(env) && env > 0 ? env : availableParallelism();
}

function toTensor(v: Value, a: FeedArray | undefined): ort.Tensor {
  if (a === undefined) throw new LmtuneError('GRAPH', `missing feed for ${v.kind} '${v.name}' ${fmtType(v)}`);
  if (a.length !== numel(v.shape)) throw new LmtuneError('SHAPE', `feed '${v.name}': ${a.length} values for ${fmtType(v)}`);
  const dims = [...v.shape];
  switch (v.dtype) {
    case 'f32':
      return new ort.Tensor('float32', a instanceof Float32Array ? a : Float32Array.from(a as ArrayLike<number>), dims);
    case 'i64':
      return new ort.Tensor('int64', a instanceof BigInt64Array ? a : BigInt64Array.from(Array.from(a as ArrayLike<number>, (x) => BigInt(x))), dims);
    case 'bool':
      return new ort.Tensor('bool', a instanceof Uint8Array ? a : Uint8Array.from(a as ArrayLike<number>, (x) => (x ? 1 : 0)), dims);
  }
}

export async function compileOrt(outputs: Record<string, Value>, opts: OrtOptions = {}): Promise<Executable> {
  const model = emitModel(outputs);
  const threads = opts.threads ?? defaultThreads();
  const key = `${threads}:${createHash('sha1').update(model.bytes).digest('hex')}`;
  let sessionP = sessions.get(key);
  if (!sessionP) {
    sessionP = ort.InferenceSession.create(model.bytes, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // the arena keeps every peak allocation for the process's lifetime; off, memory returns to the
      // system between runs (LMTUNE_ORT_ARENA=1 turns it back on)
      enableCpuMemArena: process.env.LMTUNE_ORT_ARENA === '1',
    });
    remember(key, sessionP);
  }
  let session: ort.InferenceSession;
  try {
    session = await sessionP;
  } catch (e) {
    sessions.delete(key);
    throw new LmtuneError('RUNTIME', `onnxruntime could not load the emitted graph: ${(e as Error).message}`, 'this is an lmtune bug: the graph passed shape inference but ONNX rejected it');
  }
  const outNames = model.outputNames;
  const outVals = Object.values(outputs);
  return {
    backend: 'ort',
    async run(feeds: Feeds, into?: Record<string, Float32Array>): Promise<Record<string, OutputTensor>> {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const v of model.inputs) ortFeeds[v.name] = toTensor(v, feeds[v.name]);
      let fetches: Record<string, ort.Tensor | null> | string[] = outNames.map((n) => `out:${n}`);
      if (into) {
        const f: Record<string, ort.Tensor | null> = {};
        outNames.forEach((n, i) => {
          const buf = into[n];
          const v = outVals[i]!;
          if (buf && buf.length !== numel(v.shape)) throw new LmtuneError('SHAPE', `output buffer '${n}': ${buf.length} values for ${fmtType(v)}`);
          f[`out:${n}`] = buf ? new ort.Tensor('float32', buf, [...v.shape]) : null;
        });
        fetches = f;
      }
      let res: ort.InferenceSession.ReturnType;
      try {
        res = await session.run(ortFeeds, fetches as ort.InferenceSession.FetchesType);
      } catch (e) {
        throw new LmtuneError('RUNTIME', `onnxruntime failed while running the graph: ${(e as Error).message}`);
      }
      const out: Record<string, OutputTensor> = {};
      outNames.forEach((n, i) => {
        const t = res[`out:${n}`]!;
        out[n] = { shape: outVals[i]!.shape, data: t.data as Float32Array | BigInt64Array | Uint8Array };
      });
      return out;
    },
  };
}

export function clearSessionCache(): void {
  sessions.clear();
}
