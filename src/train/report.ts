/** The readable side of a run: report.html with the loss curve (and SDE-time axis) and the dev metric over steps. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWrite } from '../util/fsx.ts';
import { htmlReport, linePlot, type ReportSection } from '../report/plot.ts';
import type { TrainConfig } from './options.ts';

function readJsonl(path: string): Record<string, number>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, number>);
}

/** moving average so a noisy loss reads as a trend */
export function smooth(y: readonly number[], window: number): number[] {
  const out: number[] = [];
  let s = 0;
  for (let i = 0; i < y.length; i++) {
    s += y[i]!;
    if (i >= window) s -= y[i - window]!;
    out.push(s / Math.min(i + 1, window));
  }
  return out;
}

export function writeRunReport(runDir: string, cfg: TrainConfig): string {
  const log = readJsonl(join(runDir, 'log.jsonl'));
  const evals = readJsonl(join(runDir, 'eval.jsonl'));
  const steps = log.map((r) => r.step!);
  const loss = log.map((r) => r.loss!);
  const w = Math.max(1, Math.round(log.length / 25));
  const sections: ReportSection[] = [
    {
      heading: 'Training loss',
      svgs: [linePlot({
        series: [
          { name: 'loss', x: steps, y: loss, color: '#bab0ac' },
          { name: `moving average (${w} steps)`, x: steps, y: smooth(loss, w) },
        ],
        xLabel: 'step',
        yLabel: cfg.optimizer.name === 'mezo' ? 'loss at θ+εz' : 'training loss',
      })],
    },
  ];
  if (evals.length) {
    sections.push({
      heading: 'Dev metric',
      svgs: [linePlot({ series: [{ name: 'dev', x: evals.map((e) => e.step!), y: evals.map((e) => e.value!) }], xLabel: 'step', yLabel: 'dev metric' })],
    });
    sections.push({
      heading: 'Dev loss',
      svgs: [linePlot({ series: [{ name: 'dev loss', x: evals.map((e) => e.step!), y: evals.map((e) => e.devLoss!) }], xLabel: 'step', yLabel: 'dev loss' })],
    });
  }
  if (log.length && log[0]!.sde_time !== undefined) {
    sections.push({
      heading: 'Training loss against SDE time',
      svgs: [linePlot({ series: [{ name: `ℓ = ${cfg.svag}`, x: log.map((r) => r.sde_time!), y: smooth(loss, w) }], xLabel: 'SDE time', yLabel: 'training loss' })],
    });
  }
  const path = join(runDir, 'report.html');
  atomicWrite(path, htmlReport(`lmtune run: ${cfg.optimizer.name} on ${cfg.task}`, sections));
  return path;
}
