/** The readable side of a run: report.html with the loss curve (and SDE-time axis) and the dev metric over steps. */
import { join } from 'node:path';
import { atomicWrite } from '../util/fsx.ts';
import { htmlReport, linePlot, type ReportSection } from '../report/plot.ts';
import { movingAverage as smooth, readJsonlRecords as readJsonl } from '../report/series.ts';
import type { TrainConfig } from './options.ts';

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
