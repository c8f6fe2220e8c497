/**
 * Worker-thread parallel MeZO passes. The parameters (and momentum/Adam state) must live in
 * SharedArrayBuffers; the tiles of all parameters are cut into `threads` contiguous runs, the calling
 * thread does the first and workers the rest. Each element's value depends only on (seed, parameter,
 * index) and its own old value, so the result is the same bytes for any thread count.
 */
import { Worker } from 'node:worker_threads';
import { LmtuneError } from '../util/errors.ts';
import { partition, runPass, Scratch, type PassContext, type PassOp } from '../optim/mezo-kernels.ts';
import type { PassRunner } from '../optim/mezo.ts';

interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
}

export class PerturbPool implements PassRunner {
  readonly threads: number;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly scratch = new Scratch();
  private nextId = 0;
  private closed = false;

  /** `threads` counts the calling thread: 2 on a 2-core machine starts one worker. */
  constructor(threads: number) {
    if (!Number.isInteger(threads) || threads < 1) throw new LmtuneError('CONFIG', `perturbation threads must be an integer >= 1, got ${threads}`);
    this.threads = threads;
    for (let k = 1; k < threads; k++) {
      const w = new Worker(bootstrap(), { eval: true });
      w.on('message', (m: { id: number; error: string | null }) => {
        const p = this.pending.get(m.id);
        if (p === undefined) return;
        this.pending.delete(m.id);
        if (this.pending.size === 0) for (const x of this.workers) x.unref();
        if (m.error === null) p.resolve();
        else p.reject(new LmtuneError('RUNTIME', `perturbation worker failed: ${m.error}`));
      });
      w.on('error', (e) => {
        for (const p of this.pending.values()) p.reject(new LmtuneError('RUNTIME', `perturbation worker died: ${e.message}`));
        this.pending.clear();
      });
      w.unref(); // an idle pool never keeps the process alive
      this.workers.push(w);
    }
  }

  async run(op: PassOp, ctx: PassContext): Promise<void> {
    if (this.closed) throw new LmtuneError('RUNTIME', 'perturbation pool used after close()');
    const parts = partition(ctx.xs.map((x) => x.length), this.threads);
    if (this.workers.length > 0) checkShared(ctx);
    const jobs: Promise<void>[] = [];
    for (let k = 1; k < this.threads; k++) {
      if (parts[k]!.length === 0) continue;
      const id = this.nextId++;
      const w = this.workers[k - 1]!;
      jobs.push(new Promise<void>((resolve, reject) => this.pending.set(id, { resolve, reject })));
      w.ref();
      w.postMessage({ id, op, ctx, segs: parts[k] });
    }
    let mine: unknown = null;
    try {
      runPass(op, ctx, parts[0]!, this.scratch);
    } catch (e) {
      mine = e;
    }
    await Promise.all(jobs);
    if (mine !== null) throw mine;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Workers do not inherit tsx's loader hooks on Node 20, so each worker registers tsx itself before
 * importing the TypeScript worker module.
 */
function bootstrap(): string {
  const api = import.meta.resolve('tsx/esm/api');
  const target = new URL('./perturb-worker.ts', import.meta.url).href;
  return `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
}

function checkShared(ctx: PassContext): void {
  ctx.xs.forEach((x, p) => {
    if (!(x.buffer instanceof SharedArrayBuffer)) {
      throw new LmtuneError('CONFIG', `parameter #${p} is not backed by a SharedArrayBuffer`, 'allocate trainable tensors with new Float32Array(new SharedArrayBuffer(4 * n)) to use perturbation threads, or use threads = 1');
    }
  });
  for (const slots of ctx.slots) {
    for (const s of slots) {
      if (!(s.buffer instanceof SharedArrayBuffer)) throw new LmtuneError('CONFIG', 'optimizer state is not in shared memory (load it after creating the optimizer with shared parameters)');
    }
  }
}
