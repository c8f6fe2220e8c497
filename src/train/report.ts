/**
 * The readable side of a run: report.html opens with what the run was (model, task, method and its key
 * settings, data sizes, time, the command that reproduces it) and its results as numbers, then the
 * curves (training loss, dev metric, dev loss, and loss in SDE time for first-order runs), drawn by
 * uPlot inlined into the file so it stays self-contained.
 */
import { join } from 'node:path';
import { atomicWrite } from '../node/fsx.ts';
import { htmlChartReport, type ChartSection } from '../report/chart.ts';
import { readJsonlRecords as readJsonl } from '../report/series.ts';
import { evalRecords, resultFacts, runCharts, runResults, type LogRecord } from '../report/run-view.ts';
import type { TrainConfig } from './options.ts';
import { methodName, runFacts, trainCommand, type DataSizes } from './describe.ts';

export interface RunReportInfo {
  /** examples actually used (the run knows them; config.json only says how they were drawn) */
  sizes?: DataSizes | null;
  /** wall time of this invocation (a resumed run: since the resume) */
  seconds?: number | null;
}

export function writeRunReport(runDir: string, cfg: TrainConfig, info: RunReportInfo = {}): string {
  const log = readJsonl(join(runDir, 'log.jsonl')) as LogRecord[];
  const evalRows = readJsonl(join(runDir, 'eval.jsonl')) as LogRecord[];
  const results = runResults(log, evalRows);
  const finished = results.steps >= cfg.maxSteps;
  const sections: ChartSection[] = [
    { heading: 'The run', facts: runFacts(cfg, { sizes: info.sizes ?? null, seconds: info.seconds ?? null }), paragraphs: ['To reproduce (with a new --out folder):'], pre: trainCommand(cfg, runDir) },
    { heading: 'Results', facts: resultFacts(results, { finished, runDir }) },
    { heading: 'Curves', charts: runCharts(log, evalRows, { mezo: cfg.optimizer.name === 'mezo', sdeLabel: `ℓ = ${cfg.svag}` }) },
  ];
  const evals = evalRecords(evalRows);
  if (evals.length) {
    const m = evals[0]!.metric;
    sections.push({ heading: 'Evaluations', table: { columns: ['step', `dev ${m}`, 'dev loss'], rows: evals.map((e) => [e.step, e.value, e.devLoss]) } });
  }
  const path = join(runDir, 'report.html');
  atomicWrite(path, htmlChartReport(`lmtune run: ${methodName(cfg)} on ${cfg.task}`, sections));
  return path;
}
