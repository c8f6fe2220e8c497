/**
 * A run's curves and result numbers from its log records (log.jsonl, eval.jsonl): the same charts and
 * numbers in the static report.html and on the dashboard, where they are rebuilt as the logs grow.
 */
import type { ChartSpec } from './chart.ts';
import { gapped } from './chart.ts';
import { movingAverage } from './series.ts';

export type LogRecord = Record<string, unknown>;

export interface EvalRecord {
  step: number;
  metric: string;
  value: number;
  devLoss: number;
}

function num(r: LogRecord, k: string): number {
  const v = r[k];
  return typeof v === 'number' ? v : Number.NaN;
}

/** eval.jsonl lines that carry a step and a value (others were reported as warnings by the reader) */
export function evalRecords(rows: readonly LogRecord[]): EvalRecord[] {
  return rows
    .filter((r) => typeof r.step === 'number' && typeof r.value === 'number')
    .map((r) => ({ step: r.step as number, metric: typeof r.metric === 'string' ? r.metric : 'metric', value: r.value as number, devLoss: num(r, 'devLoss') }));
}

export interface RunResults {
  steps: number;
  lastLoss: number | null;
  zeroShot: EvalRecord | null;
  last: EvalRecord | null;
  /** the first evaluation with the best value, as the training loop keeps best/: the highest, or the
   *  lowest for a metric named as a loss (`quad_loss` of `train --objective quad`) */
  best: EvalRecord | null;
  metric: string | null;
}

export function runResults(log: readonly LogRecord[], evalRows: readonly LogRecord[]): RunResults {
  const evals = evalRecords(evalRows);
  let best: EvalRecord | null = null;
  const lowerIsBetter = evals.length > 0 && /(^|_)loss$/.test(evals[0]!.metric);
  for (const e of evals) if (best === null || (lowerIsBetter ? e.value < best.value : e.value > best.value)) best = e;
  const lastRow = log.length ? log[log.length - 1]! : null;
  return {
    steps: lastRow ? num(lastRow, 'step') : 0,
    lastLoss: lastRow && Number.isFinite(num(lastRow, 'loss')) ? num(lastRow, 'loss') : null,
    zeroShot: evals.find((e) => e.step === 0) ?? null,
    last: evals.length ? evals[evals.length - 1]! : null,
    best,
    metric: evals.length ? evals[0]!.metric : null,
  };
}

export function fmtNumber(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e5 || a < 1e-3) ? v.toExponential(3) : v.toFixed(digits);
}

/** result lines for a facts list: zero-shot, latest/final, best, and the training loss */
export function resultFacts(r: RunResults, opts: { finished: boolean; runDir?: string }): { label: string; value: string }[] {
  const m = r.metric ?? 'metric';
  const ev = (e: EvalRecord | null): string => (e ? `${m} ${fmtNumber(e.value)}, dev loss ${fmtNumber(e.devLoss)} (step ${e.step})` : '–');
  const out = [
    { label: 'steps', value: String(r.steps) },
    { label: opts.finished ? 'final training loss' : 'latest training loss', value: fmtNumber(r.lastLoss) },
  ];
  if (r.metric !== null) {
    out.push({ label: 'zero-shot dev', value: ev(r.zeroShot) });
    out.push({ label: opts.finished ? 'final dev' : 'latest dev', value: ev(r.last) });
    out.push({ label: 'best checkpoint', value: r.best ? `${m} ${fmtNumber(r.best.value)} at step ${r.best.step}${opts.runDir ? ` (${opts.runDir}/best)` : ''}` : '–' });
  }
  return out;
}

export interface RunChartOptions {
  /** MeZO logs the loss at θ+εz, not the loss of θ */
  mezo: boolean;
  /** label of the SDE-time series (e.g. ℓ = 2) */
  sdeLabel?: string;
  /** id prefix, so several runs' charts can share a page */
  idPrefix?: string;
}

/** training loss (raw and smoothed), dev metric, dev loss and, for first-order runs, loss in SDE time */
export function runCharts(log: readonly LogRecord[], evalRows: readonly LogRecord[], o: RunChartOptions): ChartSpec[] {
  const p = o.idPrefix ?? 'chart';
  const steps = log.map((r) => num(r, 'step'));
  const loss = log.map((r) => num(r, 'loss'));
  const w = Math.max(1, Math.round(log.length / 25));
  const finiteLoss = loss.map((v) => (Number.isFinite(v) ? v : 0));
  const lossLabel = o.mezo ? 'training loss at θ+εz' : 'training loss';
  const charts: ChartSpec[] = [
    {
      id: `${p}-loss`,
      title: 'Training loss',
      xLabel: 'step',
      yLabel: lossLabel,
      series:
        w > 1
          ? [
              { name: lossLabel, x: steps, y: gapped(loss), color: '#bab0ac', width: 1 },
              { name: `moving average (${w} steps)`, x: steps, y: gapped(movingAverage(finiteLoss, w)), color: '#4e79a7', width: 2 },
            ]
          : [{ name: lossLabel, x: steps, y: gapped(loss), color: '#4e79a7' }],
    },
  ];
  const evals = evalRecords(evalRows);
  if (evals.length) {
    const metric = evals[0]!.metric;
    charts.push({ id: `${p}-dev-metric`, title: `Dev ${metric}`, xLabel: 'step', yLabel: `dev ${metric}`, series: [{ name: `dev ${metric}`, x: evals.map((e) => e.step), y: gapped(evals.map((e) => e.value)), color: '#59a14f', points: true }] });
    charts.push({ id: `${p}-dev-loss`, title: 'Dev loss', xLabel: 'step', yLabel: 'dev loss', series: [{ name: 'dev loss', x: evals.map((e) => e.step), y: gapped(evals.map((e) => e.devLoss)), color: '#e15759', points: true }] });
  }
  if (log.length && typeof log[0]!.sde_time === 'number') {
    charts.push({
      id: `${p}-sde`,
      title: 'Training loss against SDE time',
      xLabel: 'SDE time',
      yLabel: w > 1 ? `training loss (moving average of ${w})` : 'training loss',
      series: [{ name: o.sdeLabel ?? 'loss', x: log.map((r) => num(r, 'sde_time')), y: gapped(movingAverage(finiteLoss, w)) }],
    });
  }
  return charts;
}
