/**
 * The `ort` executor: emits the graph as ONNX and runs it with onnxruntime (onnxruntime-node in Node,
 * onnxruntime-web in a browser: `#onnxruntime` is mapped per platform in package.json's "imports", and
 * both implement onnxruntime-common's API, so this file is the same in both). Parameters are graph
 * inputs wrapped around our own Float32Arrays without copying, so in-place updates (MeZO perturbations,
 * optimizer steps) are seen by the next run. Sessions are cached by the emitted model's bytes, which
 * encode the graph and its static shapes: a training loop compiles each shape bucket once.
 */
import * as ort from '#onnxruntime';
import { LmtuneError } from '../util/errors.ts';
import type { Value } from './graph.ts';
import { emitModel } from './onnx.ts';
import type { Executable, FeedArray, Feeds, OutputTensor } from './executor.ts';
import { fmtType, numel } from './types.ts';

export interface OrtOptions {
  /** intra-op threads; default: `configureOrt`'s, else onnxruntime's (all cores) */
  threads?: number;
}

/** Process-wide runtime settings; the Node edge sets them from LMTUNE_THREADS / LMTUNE_ORT_* (src/node/runtime.ts). */
export interface OrtSettings {
  /** default intra-op threads */
  threads?: number;
  /** onnxruntime's CPU memory arena: keeps every peak allocation for the process's lifetime */
  arena?: boolean;
  /**
   * onnxruntime's memory-pattern planner: one block per run for all intermediates. 'auto' turns it on only
   * for graphs fed at least PATTERN_MIN_INPUT_BYTES (Node's default, src/node/runtime.ts); unset, it is on
   * (onnxruntime's own default, which the page keeps: wasm memory never returns pages, so it cannot churn).
   */
  memPattern?: boolean | 'auto';
}

const settings: OrtSettings = {};

export function configureOrt(s: OrtSettings): void {
  Object.assign(settings, s);
}

const sessions = new Map<string, { bytes: Uint8Array; session: Promise<ort.InferenceSession> }>();
/**
 * Sessions remembered for reuse; beyond this the oldest is forgotten (not released: an executable may
 * still hold it, and it is freed with its last reference). Long runs visit many shape buckets.
 */
const MAX_SESSIONS = 64;
const MEM_PATTERN_DEFAULT = true;
/**
 * 'auto': the pattern planner for graphs whose inputs (weights and batch) reach this size. With the arena
 * off, the planner's one block per run lies above glibc's mmap threshold, so it is mapped and unmapped every
 * run and its pages fault in again: on the demo's 1.3M-parameter model that was 10% of the CPU time in the
 * kernel, and turning it off made the MeZO loop 22% faster. Off, each intermediate is its own malloc and
 * glibc keeps freed mid-size blocks in the heap: on GPT-2-small's AdamW step (0.5 GB of weights) that held
 * 3.5 GB between steps instead of 2.2 and raised the peak by 0.27 GB, for no speed (docs/engine.md,
 * "Runtime, allocation"). Measured at those two ends; the threshold between them is not tuned.
 */
const PATTERN_MIN_INPUT_BYTES = 256 * 2 ** 20;

function inputBytes(inputs: readonly Value[]): number {
  let bytes = 0;
  for (const v of inputs) bytes += numel(v.shape) * (v.dtype === 'i64' ? 8 : v.dtype === 'bool' ? 1 : 4);
  return bytes;
}

function remember(key: string, bytes: Uint8Array, p: Promise<ort.InferenceSession>): void {
  sessions.set(key, { bytes, session: p });
  if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value as string);
}

/** intra-op threads when a compile names none: `configureOrt`'s, else 0, onnxruntime's own default (all cores) */
export function defaultThreads(): number {
  return settings.threads ?? 0;
}

/** FNV-1a over the bytes in two 32-bit lanes: a cache key; a hit is confirmed by comparing the bytes */
function hashBytes(b: Uint8Array): string {
  let h0 = 0x811c9dc5;
  let h1 = 0x050c5d1f;
  for (let i = 0; i < b.length; i++) {
    h0 = Math.imul(h0 ^ b[i]!, 0x01000193) >>> 0;
    h1 = Math.imul(h1 ^ b[i]!, 0x5bd1e995) >>> 0;
  }
  return `${b.length.toString(16)}-${h0.toString(16)}-${h1.toString(16)}`;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * onnxruntime-node hands back every output as a fresh copy, a bound one too (after writing the caller's
 * buffer in place). The copy of a bound output is garbage at once, but V8 frees an ArrayBuffer only at a
 * later full GC, which came after the next run had started: each GPT-2-small Adam step carried the
 * previous step's 0.5 GB of gradient copies through its peak. Transferring the buffer to a closed port
 * frees it now: the transfer detaches it (structured clone), and a closed port drops the message.
 */
let sink: { postMessage(message: unknown, transfer: ArrayBuffer[]): void } | null | undefined;
function release(buf: ArrayBufferLike): void {
  if (sink === undefined) {
    sink = null;
    if (typeof MessageChannel !== 'undefined') {
      const c = new MessageChannel();
      c.port2.close();
      c.port1.close();
      sink = c.port1;
    }
  }
  if (!sink || !(buf instanceof ArrayBuffer) || buf.byteLength === 0) return;
  try {
    sink.postMessage(null, [buf]);
  } catch {
    // not transferable (an external buffer): the GC frees it, as before
  }
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
  const key = `${threads}:${hashBytes(model.bytes)}`;
  const cached = sessions.get(key);
  let sessionP = cached && sameBytes(cached.bytes, model.bytes) ? cached.session : undefined;
  if (!sessionP) {
    sessionP = ort.InferenceSession.create(model.bytes, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Arena off: memory returns to the system between runs (on, the 124M Adam step's peak RSS was
      // 8.0 GB instead of 5.3); the pattern planner by graph size (PATTERN_MIN_INPUT_BYTES)
      enableCpuMemArena: settings.arena ?? false,
      enableMemPattern: settings.memPattern === 'auto' ? inputBytes(model.inputs) >= PATTERN_MIN_INPUT_BYTES : (settings.memPattern ?? MEM_PATTERN_DEFAULT),
    });
    remember(key, model.bytes, sessionP);
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
        const data = t.data as Float32Array | BigInt64Array | Uint8Array;
        const buf = into?.[n];
        // a bound output is returned as the caller's own buffer, which onnxruntime wrote in place
        // (only a copy that owns its whole buffer: freeing a shared one would empty other outputs)
        if (buf && data.buffer !== buf.buffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) release(data.buffer);
        out[n] = { shape: outVals[i]!.shape, data: buf ?? data };
      });
      return out;
    },
  };
}

export function clearSessionCache(): void {
  sessions.clear();
}
