/**
 * `lmtune worker --queue redis://HOST:PORT[/DB] [--kinds a,b]`: a long-running worker serving every
 * registered job kind (src/distributed/kinds.ts). SIGTERM / SIGINT: stop taking jobs, finish the current
 * one, disconnect, exit 0; a second signal releases the current job (another worker takes it over) and exits.
 */
import type { Command } from 'commander';
import type { LanguageModel } from '../models/api.ts';
import { LmtuneError } from '../util/errors.ts';

export interface WorkerCommandDeps {
  readonly loadModel?: (dir: string) => Promise<LanguageModel>;
  readonly stderr?: (s: string) => void;
  /** resolves when the worker should stop (default: SIGTERM or SIGINT) */
  readonly stopSignal?: () => Promise<'finish' | 'release'>;
}

interface WorkerFlags {
  queue: string;
  kinds?: string;
  lockMs: string;
}

function signals(err: (s: string) => void): () => Promise<'finish' | 'release'> {
  return () =>
    new Promise((resolve) => {
      let count = 0;
      const on = (sig: string) => {
        count++;
        if (count === 1) {
          err(`${sig}: finishing the current job, then exiting (send it again to release the job now)\n`);
          resolve('finish');
        } else {
          err(`${sig}: releasing the current job and exiting\n`);
          process.exit(130);
        }
      };
      process.on('SIGTERM', () => on('SIGTERM'));
      process.on('SIGINT', () => on('SIGINT'));
    });
}

export function register(program: Command, deps: WorkerCommandDeps = {}): void {
  program
    .command('worker')
    .description('take jobs (eval slices, LESS gradient shards, kernel blocks) from a Redis queue and run them; any number of workers on any number of machines')
    .requiredOption('--queue <url>', 'Redis server: redis://HOST:PORT[/DB]')
    .option('--kinds <list>', 'comma-separated job kinds to serve (default: all)')
    .option('--lock-ms <ms>', 'job lock lifetime: a killed worker\'s job is taken over after about this long', '30000')
    .action(async (flags: WorkerFlags) => {
      const err = deps.stderr ?? ((s: string) => void process.stderr.write(s));
      if (!/^\d+$/.test(flags.lockMs) || Number(flags.lockMs) < 1000) throw new LmtuneError('CONFIG', `--lock-ms must be an integer >= 1000, got ${JSON.stringify(flags.lockMs)}`);
      const { jobKindNames } = await import('../distributed/kinds.ts');
      const { startWorker } = await import('../distributed/worker.ts');
      const { connectionFromUrl } = await import('../distributed/jobs.ts');
      connectionFromUrl(flags.queue);
      const kinds = flags.kinds ? flags.kinds.split(',').map((k) => k.trim()).filter(Boolean) : jobKindNames();
      const load = deps.loadModel ?? (async (dir: string) => (await import('../heads/model.ts')).loadModel(dir));
      const lockMs = Number(flags.lockMs);
      // the handlers go in before the worker starts: BullMQ takes a job as soon as it connects, and a
      // SIGTERM in that window would otherwise kill the process mid-job instead of letting it finish
      const stop = (deps.stopSignal ?? signals(err))();
      const w = await startWorker({ queueUrl: flags.queue, kinds, loadModel: load, lockDurationMs: lockMs, stalledIntervalMs: Math.max(500, Math.floor(lockMs / 2)), log: (l) => err(`${new Date().toISOString()} ${l}\n`) });
      err(`worker ${w.name} serving ${kinds.join(', ')} from ${flags.queue}\n`);
      const how = await stop;
      await w.close(how === 'release');
      err(`worker ${w.name} stopped\n`);
    });
}
