/**
 * Test fixture run as a child process: a worker (1 s job lock) whose model never answers, so the test
 * can SIGKILL it while it holds a job. It prints "took <job id>" once it has one.
 * Usage: node --import tsx src/distributed/hanging-worker.fixture.ts redis://127.0.0.1:PORT
 */
import type { CausalLM } from '../models/api.ts';
import { ToyTokenizer } from '../tasks/test-fixtures.ts';
import './kinds.ts';
import { startWorker } from './worker.ts';

const url = process.argv[2] ?? '';
const hang: CausalLM = {
  kind: 'causal',
  tokenizer: new ToyTokenizer(['x']),
  maxPositions: 64,
  // bounded: the parent kills this process long before the minute is up
  continuationLogprobs: () => new Promise((r) => setTimeout(() => r([]), 60_000)),
  generate: async () => '',
};
await startWorker({ queueUrl: url, name: 'doomed', lockDurationMs: 1000, stalledIntervalMs: 500, loadModel: async () => hang, log: (l) => process.stdout.write(`${l}\n`) });
