/**
 * The coordinator side: enqueue one job per unit of work, wait (bounded) with aggregate progress and
 * ETA, and return the results in submission order. Job ids are a hash of the envelope, so running the
 * same command again after a crash re-attaches to the jobs already done instead of recomputing them.
 */
import { createHash } from 'node:crypto';
import { Job, Queue } from 'bullmq';
import { LmtuneError } from '../util/errors.ts';
import { connectionFromUrl, queueName, type JobEnvelope } from './jobs.ts';

export interface QueueProgress {
  readonly done: number;
  readonly total: number;
  /** sum of the jobs' fractions done, divided by the number of jobs */
  readonly fraction: number;
  readonly etaSeconds: number | undefined;
  readonly workers: number;
  readonly failedAttempts: number;
}

export interface RunJobsOptions {
  /** tries per job before it fails for good (default 3) */
  readonly attempts?: number;
  /** first retry delay; doubles each retry (default 1000 ms) */
  readonly backoffMs?: number;
  readonly pollMs?: number;
  /** give up waiting after this long (default 7 days): every wait here is bounded */
  readonly timeoutMs?: number;
  readonly onProgress?: (p: QueueProgress) => void;
  /**
   * Jobs already completed in Redis under the same id are removed and run again instead of re-attached
   * (for kinds whose result lives in files: the caller enqueues only what is missing on disk, so a
   * completed job there means its file was lost since)
   */
  readonly redoCompleted?: boolean;
  /**
   * Job ids by the envelope alone, not its position (default: hash + position). For kinds whose envelope
   * names its unit of work (a shard, a block): a resumed coordinator that enqueues fewer jobs still finds
   * the ones a previous coordinator left running.
   */
  readonly idsByContent?: boolean;
  /** connection trouble (Redis restarting): reported, and the wait goes on while ioredis reconnects */
  readonly onConnectionError?: (message: string) => void;
}

export function jobIdOf(env: JobEnvelope, index?: number): string {
  const h = createHash('sha256').update(JSON.stringify(env)).digest('hex').slice(0, 24);
  return index === undefined ? `${env.kind}-${h}` : `${env.kind}-${h}-${index}`;
}

export function renderQueueProgress(p: QueueProgress): string {
  const cells = Math.round(p.fraction * 30);
  const eta = p.etaSeconds === undefined ? '--' : p.etaSeconds < 90 ? `${Math.round(p.etaSeconds)}s` : `${(p.etaSeconds / 60).toFixed(1)}min`;
  return `[${'#'.repeat(cells)}${'.'.repeat(30 - cells)}] ${p.done}/${p.total} jobs, ${p.workers} worker(s), ETA ${eta}${p.failedAttempts ? `, ${p.failedAttempts} failed attempt(s) retried` : ''}`;
}

export async function runJobs<R>(queueUrl: string, envelopes: readonly JobEnvelope[], opts: RunJobsOptions = {}): Promise<R[]> {
  if (envelopes.length === 0) return [];
  const kind = envelopes[0]!.kind;
  if (envelopes.some((e) => e.kind !== kind)) throw new LmtuneError('CONFIG', 'runJobs: every envelope of one call must have the same kind');
  const attempts = opts.attempts ?? 3;
  const pollMs = opts.pollMs ?? 250;
  const timeoutMs = opts.timeoutMs ?? 7 * 24 * 3600 * 1000;
  const queue = new Queue<JobEnvelope>(queueName(kind), { connection: connectionFromUrl(queueUrl) });
  // without a listener an 'error' event (Redis restarting) would end the process; ioredis reconnects
  queue.on('error', (e) => opts.onConnectionError?.(e.message));
  try {
    const ids = envelopes.map((e, i) => (opts.idsByContent ? jobIdOf(e) : jobIdOf(e, i)));
    if (new Set(ids).size !== ids.length) throw new LmtuneError('CONFIG', `runJobs: two ${kind} envelopes are identical`);
    if (opts.redoCompleted) {
      for (const id of ids) {
        const old = await Job.fromId(queue, id);
        if (old && (await old.getState()) === 'completed') await old.remove();
      }
    }
    await queue.addBulk(
      envelopes.map((e, i) => ({
        name: kind,
        data: e,
        opts: { jobId: ids[i]!, attempts, backoff: { type: 'exponential', delay: opts.backoffMs ?? 1000 }, removeOnComplete: false, removeOnFail: false },
      })),
    );
    const results = new Array<R | undefined>(envelopes.length);
    const finished = new Array<boolean>(envelopes.length).fill(false);
    const start = performance.now();
    const maxPolls = Math.ceil(timeoutMs / pollMs) + 1;
    for (let poll = 0; poll < maxPolls; poll++) {
      let fracSum = 0;
      let failedAttempts = 0;
      for (let i = 0; i < ids.length; i++) {
        if (finished[i]) {
          fracSum += 1;
          continue;
        }
        const job = await Job.fromId<JobEnvelope, R>(queue, ids[i]!);
        if (!job) throw new LmtuneError('RUNTIME', `job ${ids[i]} vanished from queue ${queueName(kind)}`, 'someone ran `lmtune queue clean` on running jobs; run the command again');
        const state = await job.getState();
        if (state === 'completed') {
          // the hash read by fromId may predate the completion: read it again now that the state is final
          const fresh = await Job.fromId<JobEnvelope, R>(queue, ids[i]!);
          if (!fresh || fresh.returnvalue === null || fresh.returnvalue === undefined) throw new LmtuneError('RUNTIME', `${kind} job ${ids[i]} completed without a result`);
          results[i] = fresh.returnvalue;
          finished[i] = true;
          fracSum += 1;
          continue;
        }
        if (state === 'failed') {
          // as for completion: the hash read above may predate the failure, so read the reason now
          const fresh = (await Job.fromId<JobEnvelope, R>(queue, ids[i]!)) ?? job;
          throw new LmtuneError('RUNTIME', `${kind} job ${ids[i]} (#${i + 1} of ${ids.length}) failed after ${fresh.attemptsMade} attempt(s): ${fresh.failedReason}`, `fix the cause, then \`lmtune queue retry --queue ${queueUrl}\` and run this command again (finished jobs are reused)`);
        }
        failedAttempts += job.attemptsMade;
        fracSum += typeof job.progress === 'number' ? Math.min(100, job.progress) / 100 : 0;
      }
      const done = finished.filter(Boolean).length;
      const fraction = fracSum / ids.length;
      const secs = (performance.now() - start) / 1000;
      opts.onProgress?.({ done, total: ids.length, fraction, etaSeconds: fraction > 0 ? (secs * (1 - fraction)) / fraction : undefined, workers: await queue.getWorkersCount(), failedAttempts });
      if (done === ids.length) return results as R[];
      await new Promise((r) => setTimeout(r, pollMs));
    }
    throw new LmtuneError('RUNTIME', `${kind}: gave up after ${Math.round(timeoutMs / 1000)} s waiting for ${ids.length} jobs`, `check the workers with \`lmtune queue status --queue ${queueUrl}\``);
  } finally {
    await queue.close();
  }
}
