/** `lmtune report overlay`: several runs' loss curves in SDE time on one HTML page. */
import type { Command } from 'commander';
import { atomicWrite } from '../node/fsx.ts';
import { overlayReport } from '../report/overlay.ts';
import { num } from './flags.ts';

export function register(program: Command): void {
  const report = program.command('report').description('reports over finished runs');
  report
    .command('overlay')
    .description('overlay the training loss of several runs against SDE time (e.g. SVAG with different ℓ, or batch sizes under a scaling rule)')
    .argument('<runs...>', 'run folders written by lmtune train')
    .option('--out <file>', 'HTML file to write', 'runs/overlay.html')
    .option('--window <n>', 'moving-average window (steps)', '10')
    .action((runs: string[], o: { out: string; window: string }) => {
      atomicWrite(o.out, overlayReport(runs, num('--window', o.window, { int: true, min: 1 })));
      process.stdout.write(`wrote ${o.out}\n`);
    });
}
