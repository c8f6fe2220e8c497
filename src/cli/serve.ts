/**
 * `lmtune serve [--runs DIR]`: the fine-tuning page (/tune/: load a model and data, evaluate, MeZO-LoRA in
 * the tab) and, with --runs, the runs dashboard (curves, live updates, overlays, reports) on a local port.
 */
import type { Command } from 'commander';
import { serveRuns } from '../serve/server.ts';
import { num } from './flags.ts';

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve the fine-tuning web page (MeZO-LoRA in the browser) and, with --runs, a dashboard of the runs under a folder')
    .option('--runs <dir>', 'also serve a dashboard of the run folders under DIR (lmtune train --out ...)')
    .option('--port <n>', 'port on 127.0.0.1 (0: any free port)', '8737')
    .action(async (o: { runs?: string; port: string }) => {
      const port = num('--port', o.port, { int: true, min: 0, max: 65535 });
      const d = await serveRuns({ ...(o.runs !== undefined ? { runs: o.runs } : {}), port });
      if (o.runs !== undefined) {
        if (d.runCount === 0) process.stderr.write(`no runs under ${o.runs} yet (a run folder holds config.json and log.jsonl); the page lists them as they appear\n`);
        else process.stderr.write(`${d.runCount} run${d.runCount === 1 ? '' : 's'} under ${o.runs}\n`);
        process.stdout.write(`lmtune runs dashboard: ${d.url}\n`);
      }
      process.stdout.write(`lmtune fine-tuning page: ${d.tuneUrl}\n`);
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
