/**
 * The fine-tuning page's Web Worker: holds the session (model, data, MeZO run) and runs onnxruntime-web
 * here, off the page's thread. Every failure becomes an `error` reply the page shows; nothing is left
 * to reach the console uncaught.
 */
import * as ort from '#onnxruntime';
import { LmtuneError } from '../util/errors.ts';
import { MemoryFolder } from '../util/folder.ts';
import { configureOrt } from '../engine/ort.ts';
import { checkModelFits, TuneSession, type TrainHooks } from './session.ts';
import { tarFolder } from './tar.ts';
import { EMBEDDED_DATA, EMBEDDED_MODEL, type Reply, type Request } from './protocol.ts';

interface WorkerScope {
  location: { href: string; search: string };
  crossOriginIsolated?: boolean;
  navigator: { hardwareConcurrency?: number };
  postMessage(m: Reply, transfer?: ArrayBuffer[]): void;
  addEventListener(type: 'message', f: (e: { data: Request }) => void): void;
  addEventListener(type: 'error' | 'unhandledrejection', f: (e: { preventDefault(): void; message?: string; reason?: unknown }) => void): void;
}
const scope = globalThis as unknown as WorkerScope;

// The wasm heap is the run's working memory (onnxruntime's tensors and activations); the threaded build
// creates it with `new WebAssembly.Memory`, so counting the memories made here measures it. It only
// grows, so its size is also its peak.
type WasmMemory = { buffer: ArrayBufferLike };
const wasm = (globalThis as unknown as { WebAssembly: { Memory: new (d: unknown) => WasmMemory } }).WebAssembly;
const memories: WasmMemory[] = [];
wasm.Memory = new Proxy(wasm.Memory, {
  construct(target, args: [unknown]) {
    const m = Reflect.construct(target, args) as WasmMemory;
    memories.push(m);
    return m;
  },
});
const wasmBytes = (): number => memories.reduce((s, m) => s + m.buffer.byteLength, 0);

const here = (rel: string): string => new URL(rel, scope.location.href).href;
const isolated = scope.crossOriginIsolated === true;
const wanted = Number(new URLSearchParams(scope.location.search).get('threads') ?? '0');
// threaded wasm needs SharedArrayBuffer, which only a cross-origin-isolated page has
const threads = isolated ? (wanted >= 1 ? wanted : Math.min(4, scope.navigator.hardwareConcurrency ?? 1)) : 1;
ort.env.wasm.wasmPaths = here('ort/'); // served from this app (node_modules/onnxruntime-web/dist), never a CDN
ort.env.wasm.numThreads = threads;
ort.env.wasm.proxy = false;
configureOrt({ threads });

const session = new TuneSession();
const post = (m: Reply, transfer?: ArrayBuffer[]): void => scope.postMessage(m, transfer);
const postMemory = (): void => post({ type: 'memory', wasmBytes: wasmBytes() });
const control = { paused: false, stop: false, resume: null as (() => void) | null };
let busy = false;

function fail(during: string, e: unknown): void {
  if (e instanceof LmtuneError) post({ type: 'error', during, code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) });
  else post({ type: 'error', during, code: 'INTERNAL', message: e instanceof Error ? e.message : String(e), hint: 'this is an lmtune bug; the page can go on' });
}

async function fetchBytes(rel: string): Promise<Uint8Array> {
  const r = await fetch(here(rel));
  if (!r.ok) throw new LmtuneError('IO', `${rel}: the server answered ${r.status}`, 'serve the page with `lmtune serve` or the files `npm run build:web` writes');
  return new Uint8Array(await r.arrayBuffer());
}

async function fetchText(rel: string): Promise<string> {
  return new TextDecoder().decode(await fetchBytes(rel));
}

const toBuffer = (b: Uint8Array): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
const toMap = (files: Record<string, ArrayBuffer>): Map<string, Uint8Array> => new Map(Object.entries(files).map(([k, v]) => [k, new Uint8Array(v)] as const));

/** what a run's steps report, and where pause and stop act */
function runHooks(): TrainHooks {
  control.paused = false;
  control.stop = false;
  return {
    onStep: (event) => {
      post({ type: 'step', event });
      postMemory();
    },
    onEval: (ev) => post({ type: 'eval', eval: ev }),
    between: async () => {
      // a macrotask turn, so pause/stop messages are delivered between steps
      await new Promise((r) => setTimeout(r, 0));
      while (control.paused && !control.stop) await new Promise<void>((r) => (control.resume = r));
      return control.stop ? 'stop' : 'go';
    },
  };
}

async function handle(req: Request): Promise<void> {
  switch (req.type) {
    case 'load-embedded-model': {
      const files = new Map<string, Uint8Array>();
      for (const f of EMBEDDED_MODEL.files) files.set(f, await fetchBytes(`${EMBEDDED_MODEL.dir}/${f}`));
      // the name a run's config.json gives it: the model's folder in the lmtune source tree
      post({ type: 'model', info: await session.loadModel(new MemoryFolder(EMBEDDED_MODEL.label, files), undefined, EMBEDDED_MODEL.dir) });
      return;
    }
    case 'check-model': {
      const fits = checkModelFits(req.label, req.config, req.budgetBytes);
      post({ type: 'model-fits', label: req.label, ...fits });
      return;
    }
    case 'load-model':
      post({ type: 'model', info: await session.loadModel(new MemoryFolder(req.label, toMap(req.files))) });
      return;
    case 'set-task':
      session.setTask(req.name);
      post({ type: 'task', name: session.task.name, labels: [...session.task.labelWords] });
      return;
    case 'load-run': {
      const info = session.loadRun(req.label, toMap(req.files));
      post({ type: 'task', name: session.task.name, labels: [...session.task.labelWords] });
      post({ type: 'run', info });
      return;
    }
    case 'continue': {
      const steps = await session.continueRun(runHooks());
      post({ type: 'trained', steps, stopped: control.stop });
      return;
    }
    case 'load-embedded-data': {
      // the demo files are SST-2's
      if (session.task.name !== 'sst2') {
        session.setTask('sst2');
        post({ type: 'task', name: 'sst2', labels: [...session.task.labelWords] });
      }
      for (const which of ['train', 'dev'] as const) {
        const name = EMBEDDED_DATA[which];
        const ex = session.parseData(name, await fetchText(name));
        session.setData(which, ex, name);
        post({ type: 'data', which, name, n: ex.length });
      }
      return;
    }
    case 'load-data': {
      const ex = session.parseData(req.name, req.text);
      session.setData(req.which, ex, req.name);
      post({ type: 'data', which: req.which, name: req.name, n: ex.length });
      return;
    }
    case 'evaluate':
      post({ type: 'eval', eval: await session.evaluateDev(0, req.limit, 16, req.shots) });
      return;
    case 'train': {
      const steps = await session.fineTune(req.settings, req.devLimit, runHooks());
      post({ type: 'trained', steps, stopped: steps < req.settings.steps });
      return;
    }
    case 'download': {
      // the run folder as one archive (a page cannot write folders), for `lmtune train --resume`
      const all = { ...session.downloads(), 'run.tar': tarFolder('lmtune-run', session.runFiles()) };
      const files = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, toBuffer(v)]));
      post({ type: 'files', files }, Object.values(files));
      return;
    }
    default:
      return;
  }
}

scope.addEventListener('message', (e) => {
  const req = e.data;
  // control messages act at once, even while a run holds the worker
  if (req.type === 'pause' || req.type === 'resume' || req.type === 'stop') {
    control.paused = req.type === 'pause';
    if (req.type === 'stop') control.stop = true;
    control.resume?.();
    control.resume = null;
    post({ type: 'paused', paused: control.paused && !control.stop });
    return;
  }
  if (busy) {
    post({ type: 'error', during: req.type, code: 'BUSY', message: `the worker is busy; "${req.type}" was not started`, hint: 'wait for the current task, or stop the run' });
    return;
  }
  busy = true;
  post({ type: 'busy', what: req.type });
  handle(req)
    .catch((err: unknown) => fail(req.type, err))
    .finally(() => {
      busy = false;
      postMemory();
      post({ type: 'busy', what: '' });
    });
});
scope.addEventListener('error', (e) => {
  e.preventDefault();
  fail('worker', new Error(e.message ?? 'error'));
});
scope.addEventListener('unhandledrejection', (e) => {
  e.preventDefault();
  fail('worker', e.reason);
});

post({ type: 'ready', threads, isolated, tasks: TuneSession.tasks() });
