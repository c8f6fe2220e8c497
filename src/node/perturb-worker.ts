/** Worker side of PerturbPool: runs its share of a MeZO pass on the shared parameter memory. */
import { parentPort } from 'node:worker_threads';
import { runPass, Scratch, type PassContext, type PassOp, type Segment } from '../optim/mezo-kernels.ts';

interface Job {
  id: number;
  op: PassOp;
  ctx: PassContext;
  segs: Segment[];
}

const scratch = new Scratch();
const port = parentPort;
if (port === null) throw new Error('perturb-worker.ts must run as a worker thread');
port.on('message', (job: Job) => {
  try {
    runPass(job.op, job.ctx, job.segs, scratch);
    port.postMessage({ id: job.id, error: null });
  } catch (e) {
    port.postMessage({ id: job.id, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }
});
