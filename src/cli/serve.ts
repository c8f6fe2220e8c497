/** `lmtune serve --runs DIR`: the runs dashboard on a local port (curves, live updates, overlays, reports). */
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { serveRuns } from '../serve/server.ts';
import { num } from './flags.ts';

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve a local web dashboard of the runs under a folder: settings, final metrics, live curves, overlays, reports')
    .option('--runs <dir>', 'folder holding run folders (lmtune train --out ...)')
    .option('--port <n>', 'port on 127.0.0.1 (0: any free port)', '8737')
    .action(async (o: { runs?: string; port: string }) => {
      if (!o.runs) throw new LmtuneError('CONFIG', '--runs DIR is required', 'e.g. lmtune serve --runs runs/');
      const d = await serveRuns({ runs: o.runs, port: num('--port', o.port, { int: true, min: 0, max: 65535 }) });
      if (d.runCount === 0) process.stderr.write(`no runs under ${o.runs} yet (a run folder holds config.json and log.jsonl); the page lists them as they appear\n`);
      else process.stderr.write(`${d.runCount} run${d.runCount === 1 ? '' : 's'} under ${o.runs}\n`);
      process.stdout.write(`lmtune runs dashboard: ${d.url}\n`);
      // serve until interrupted
      await new Promise<void>((done) => {
        const stop = (): void => {
          void d.close().then(done);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
