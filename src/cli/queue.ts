/**
 * `lmtune queue status|retry|clean --queue redis://…`: what the job queues hold (waiting, active,
 * delayed, failed with their errors, completed), the workers connected, and the two repairs: retry the
 * failed jobs, remove finished ones.
 */
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';

export interface QueueCommandDeps {
  readonly stdout?: (s: string) => void;
}

interface QueueFlags {
  queue: string;
  kinds?: string;
  json?: boolean;
  olderThan: string;
}

export interface KindStatus {
  readonly kind: string;
  readonly counts: Record<string, number>;
  readonly workers: string[];
  readonly failed: { id: string; attempts: number; error: string }[];
}

export async function queueStatus(url: string, kinds: readonly string[], maxFailed = 20): Promise<KindStatus[]> {
  const { Queue } = await import('bullmq');
  const { connectionFromUrl, queueName } = await import('../distributed/jobs.ts');
  const out: KindStatus[] = [];
  for (const kind of kinds) {
    const q = new Queue(queueName(kind), { connection: connectionFromUrl(url) });
    try {
      const counts = await q.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
      // BullMQ names a worker's connection "<queue client name>:w:<worker name>"
      const workers = (await q.getWorkers()).map((w) => {
        const raw = String(w['rawname'] ?? '');
        const at = raw.indexOf(':w:');
        return at >= 0 ? raw.slice(at + 3) : `unnamed@${String(w['addr'] ?? '?')}`;
      });
      const failed = (await q.getFailed(0, maxFailed - 1)).map((j) => ({ id: String(j.id), attempts: j.attemptsMade, error: j.failedReason }));
      out.push({ kind, counts, workers, failed });
    } finally {
      await q.close();
    }
  }
  return out;
}

export function renderQueueStatus(s: readonly KindStatus[]): string {
  const lines: string[] = [];
  for (const k of s) {
    const c = k.counts;
    lines.push(`${k.kind}: ${c['waiting'] ?? 0} waiting, ${c['active'] ?? 0} active, ${c['delayed'] ?? 0} delayed (retry backoff), ${c['failed'] ?? 0} failed, ${c['completed'] ?? 0} completed; ${k.workers.length} worker(s)${k.workers.length ? `: ${k.workers.join(', ')}` : ''}`);
    for (const f of k.failed) lines.push(`  failed ${f.id} after ${f.attempts} attempt(s): ${f.error}`);
  }
  return lines.join('\n') + '\n';
}

export function register(program: Command, deps: QueueCommandDeps = {}): void {
  const out = deps.stdout ?? ((s: string) => void process.stdout.write(s));
  const q = program.command('queue').description('inspect and repair the Redis job queues used by `lmtune worker`');
  const common = (c: Command) =>
    c.requiredOption('--queue <url>', 'Redis server: redis://HOST:PORT[/DB]').option('--kinds <list>', 'comma-separated job kinds (default: all)');
  const kindsOf = async (flags: QueueFlags): Promise<string[]> => {
    const { jobKindNames } = await import('../distributed/kinds.ts');
    const { connectionFromUrl, getJobKind } = await import('../distributed/jobs.ts');
    connectionFromUrl(flags.queue);
    const ks = flags.kinds ? flags.kinds.split(',').map((k) => k.trim()).filter(Boolean) : jobKindNames();
    ks.forEach((k) => getJobKind(k));
    return ks;
  };
  common(q.command('status').description('jobs waiting / active / failed (with errors) and workers alive'))
    .option('--json', 'one JSON object')
    .action(async (flags: QueueFlags) => {
      const s = await queueStatus(flags.queue, await kindsOf(flags));
      out(flags.json ? JSON.stringify(s) + '\n' : renderQueueStatus(s));
    });
  common(q.command('retry').description('move every failed job back to waiting')).action(async (flags: QueueFlags) => {
    const { Queue } = await import('bullmq');
    const { connectionFromUrl, queueName } = await import('../distributed/jobs.ts');
    for (const kind of await kindsOf(flags)) {
      const queue = new Queue(queueName(kind), { connection: connectionFromUrl(flags.queue) });
      try {
        const n = (await queue.getJobCounts('failed'))['failed'] ?? 0;
        await queue.retryJobs({ state: 'failed', count: 1000 });
        out(`${kind}: ${n} failed job(s) retried\n`);
      } finally {
        await queue.close();
      }
    }
  });
  common(q.command('clean').description('remove completed and failed jobs older than --older-than'))
    .option('--older-than <seconds>', 'age of the jobs to remove', '0')
    .action(async (flags: QueueFlags) => {
      if (!/^\d+$/.test(flags.olderThan)) throw new LmtuneError('CONFIG', `--older-than must be a whole number of seconds, got ${JSON.stringify(flags.olderThan)}`);
      const { Queue } = await import('bullmq');
      const { connectionFromUrl, queueName } = await import('../distributed/jobs.ts');
      for (const kind of await kindsOf(flags)) {
        const queue = new Queue(queueName(kind), { connection: connectionFromUrl(flags.queue) });
        try {
          const grace = Number(flags.olderThan) * 1000;
          // bounded: at most 100 rounds of 1000 removals per state
          let removed = 0;
          for (const state of ['completed', 'failed'] as const) {
            for (let round = 0; round < 100; round++) {
              const ids = await queue.clean(grace, 1000, state);
              removed += ids.length;
              if (ids.length < 1000) break;
            }
          }
          out(`${kind}: ${removed} finished job(s) removed\n`);
        } finally {
          await queue.close();
        }
      }
    });
}
