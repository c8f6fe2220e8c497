/**
 * The worker side of the job queue: one BullMQ Worker per registered job kind, all sharing a model
 * cache keyed by fingerprint. A job whose code version or model fingerprint differs from this worker's
 * fails at once (UnrecoverableError: no retry) with the reason as its error, so `lmtune queue status`
 * shows why. `close()` stops taking jobs and waits for the current one to finish (SIGTERM in the CLI).
 */
import { hostname } from 'node:os';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { LanguageModel } from '../models/api.ts';
import { LmtuneError } from '../util/errors.ts';
import { CODE_VERSION, JobRefused, connectionFromUrl, fingerprintModelDir, getJobKind, jobKindNames, mismatchReason, queueName, type JobEnvelope } from './jobs.ts';

export interface WorkerOptions {
  readonly queueUrl: string;
  /** job kinds to serve (default: every registered kind) */
  readonly kinds?: readonly string[];
  readonly loadModel: (dir: string) => Promise<LanguageModel>;
  readonly fingerprint?: (dir: string) => string;
  /** what this worker believes the code version is (tests use it to build a mismatched worker) */
  readonly codeVersion?: string;
  /** how long a job's lock lives without renewal: a SIGKILLed worker's job is taken over after ~this */
  readonly lockDurationMs?: number;
  readonly stalledIntervalMs?: number;
  readonly name?: string;
  readonly log?: (line: string) => void;
}

export interface RunningWorker {
  readonly name: string;
  /** finish (or, when `force`, release) the current job and disconnect */
  close(force?: boolean): Promise<void>;
}

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const connection = connectionFromUrl(opts.queueUrl);
  const name = opts.name ?? `${hostname()}:${process.pid}`;
  const codeVersion = opts.codeVersion ?? CODE_VERSION;
  const fingerprint = opts.fingerprint ?? fingerprintModelDir;
  const log = opts.log ?? (() => undefined);
  const fingerprints = new Map<string, string>();
  const models = new Map<string, Promise<LanguageModel>>();

  const process_ = async (job: Job<JobEnvelope>): Promise<unknown> => {
    const env = job.data;
    let local: string;
    try {
      local = fingerprints.get(env.model.dir) ?? fingerprint(env.model.dir);
    } catch (e) {
      throw new UnrecoverableError(`worker ${name} refused job ${job.id}: ${(e as Error).message}`);
    }
    fingerprints.set(env.model.dir, local);
    const why = mismatchReason(env, { codeVersion, fingerprint: local });
    if (why) {
      log(`refused ${env.kind} job ${job.id}: ${why}`);
      throw new UnrecoverableError(`worker ${name} refused job ${job.id}: ${why}`);
    }
    const loadModel = (): Promise<LanguageModel> => {
      let model = models.get(local);
      if (!model) {
        model = opts.loadModel(env.model.dir);
        models.set(local, model);
        model.catch(() => models.delete(local));
      }
      return model;
    };
    const kind = getJobKind(env.kind);
    log(`${env.kind} job ${job.id} (attempt ${job.attemptsMade + 1})`);
    let result: unknown;
    try {
      result = await kind.run(
        { model: loadModel, modelDir: env.model.dir, progress: (f) => job.updateProgress(Math.round(Math.min(1, Math.max(0, f)) * 1000) / 10), log },
        kind.parsePayload(env.payload),
      );
    } catch (e) {
      // a refusal, or a configuration that differs from the coordinator's, fails the same way on every try
      if (e instanceof JobRefused || (e instanceof LmtuneError && e.code === 'CONFIG')) {
        log(`refused ${env.kind} job ${job.id}: ${e.message}`);
        throw new UnrecoverableError(`worker ${name} refused job ${job.id}: ${e.message}`);
      }
      throw e;
    }
    log(`${env.kind} job ${job.id} done`);
    return result;
  };

  const workers = (opts.kinds ?? jobKindNames()).map((k) => {
    getJobKind(k);
    return new Worker<JobEnvelope>(queueName(k), process_, {
      connection,
      name,
      concurrency: 1,
      lockDuration: opts.lockDurationMs ?? 30_000,
      stalledInterval: opts.stalledIntervalMs ?? 30_000,
      maxStalledCount: 2,
    });
  });
  // a lost connection (Redis restarting) is reported and retried by ioredis; without a listener the
  // 'error' event would end the process
  let lastError = 0;
  for (const w of workers) {
    w.on('error', (e) => {
      if (performance.now() - lastError > 1000) log(`queue connection: ${e.message} (reconnecting)`);
      lastError = performance.now();
    });
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return {
    name,
    close: async (force = false) => {
      await Promise.all(workers.map((w) => w.close(force)));
    },
  };
}
