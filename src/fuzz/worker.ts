/** Worker side of `npm run fuzz`: runs one target and reports each case before running it. */
import '../node/host.ts';
import { parentPort, workerData } from 'node:worker_threads';
import { TARGETS } from './targets.ts';
import { fuzz } from './runner.ts';

const d = workerData as { target: string; runs: number; seed: number; timeLimitMs: number; startAt: number };
const port = parentPort!;
const target = TARGETS.find((t) => t.name === d.target)!;
try {
  const report = await fuzz(target, { runs: d.runs, seed: d.seed, timeLimitMs: d.timeLimitMs, startAt: d.startAt, onCase: (index, input) => port.postMessage({ kind: 'case', index, input: input.slice(0, 2000) }) });
  port.postMessage({ kind: 'done', report });
} catch (e) {
  port.postMessage({ kind: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
}
