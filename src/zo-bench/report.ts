/** ZO-bench output: the table (text and HTML) and the curves against forward passes (src/report/plot.ts). */
import { htmlReport, linePlot, type Series } from '../report/plot.ts';
import type { MethodResult, ZoBenchResult } from './bench.ts';

export const TABLE_COLUMNS = ['method', 'lr', 'passes/step', 'passes to target (median)', 'reached', 'final acc mean ± std', 'final dev loss', 'extra memory', 'peak RSS MB', 'wall s/run'];

function fmtBytes(b: number): string {
  return b === 0 ? '0' : b < 1024 ? `${b} B` : b < 1 << 20 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / (1 << 20)).toFixed(1)} MiB`;
}

export function tableRows(r: ZoBenchResult): string[][] {
  const seeds = r.protocol.seeds.length;
  return r.methods.map((m: MethodResult) => [
    m.method,
    String(m.lr),
    String(m.forwardPassesPerStep),
    m.passesToTargetMedian === null ? '—' : String(m.passesToTargetMedian),
    `${m.reachedSeeds}/${seeds}`,
    `${(100 * m.finalAccuracyMean).toFixed(1)} ± ${(100 * m.finalAccuracyStd).toFixed(1)}`,
    (m.runs.reduce((a, x) => a + x.finalDevLoss, 0) / m.runs.length).toFixed(4),
    fmtBytes(m.extraMemoryBytes),
    (m.peakRssBytes / (1 << 20)).toFixed(0),
    m.secondsMean.toFixed(1),
  ]);
}

/** a Markdown table (docs/zo.md) */
export function markdownTable(r: ZoBenchResult): string {
  const rows = tableRows(r);
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(TABLE_COLUMNS), line(TABLE_COLUMNS.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

function meanCurve(m: MethodResult, key: 'devAccuracy' | 'devLoss'): { x: number[]; y: number[]; std: number[] } {
  // seeds share the evaluation schedule up to the last point (a method's step may overshoot the budget)
  const n = Math.min(...m.runs.map((r) => r.curve.length));
  const x: number[] = [];
  const y: number[] = [];
  const std: number[] = [];
  for (let i = 0; i < n; i++) {
    const vs = m.runs.map((r) => r.curve[i]![key]);
    const mean = vs.reduce((a, b) => a + b, 0) / vs.length;
    x.push(m.runs[0]!.curve[i]!.passes);
    y.push(key === 'devAccuracy' ? 100 * mean : mean);
    const sd = vs.length > 1 ? Math.sqrt(vs.reduce((a, v) => a + (v - mean) ** 2, 0) / (vs.length - 1)) : 0;
    std.push(key === 'devAccuracy' ? 100 * sd : sd);
  }
  return { x, y, std };
}

/** the two overlays (SVG): dev loss and dev accuracy against forward passes, mean ± std over seeds */
export function zoBenchCurves(r: ZoBenchResult): { loss: string; accuracy: string } {
  const series = (key: 'devAccuracy' | 'devLoss'): Series[] => r.methods.map((m, i) => ({ name: m.method, ...meanCurve(m, key), dashed: i >= 10 }));
  return {
    loss: linePlot({ series: series('devLoss'), title: 'dev loss', xLabel: 'forward passes', yLabel: 'dev loss', legend: 'top-right' }),
    accuracy: linePlot({ series: series('devAccuracy'), title: 'dev accuracy', xLabel: 'forward passes', yLabel: 'dev accuracy (%)', legend: 'bottom-right' }),
  };
}

export function zoBenchHtml(r: ZoBenchResult): string {
  const p = r.protocol;
  const curves = zoBenchCurves(r);
  return htmlReport('lmtune zo-bench', [
    {
      heading: 'Protocol',
      paragraphs: [
        `${p.model}, ${p.peft.kind} adapters; task ${p.task}, k = ${p.kShot} training examples per class drawn per seed from ${p.train}; dev: the first ${p.devN} of ${p.dev}; batch ${p.batchSize}, ε = ${p.eps}, constant lr; budget ${p.budget} forward passes (evaluation not counted), dev evaluated every ${p.evalEvery}; seeds ${p.seeds.join(', ')}; target dev loss ${p.targetDevLoss}.`,
        `Zero-shot: dev accuracy ${(100 * r.zeroShot.devAccuracy).toFixed(1)}%, dev loss ${r.zeroShot.devLoss.toFixed(4)}. Curves: mean over seeds, band ± one standard deviation.`,
      ],
      table: { columns: TABLE_COLUMNS, rows: tableRows(r) },
    },
    {
      heading: 'Curves against forward passes',
      svgs: [curves.loss, curves.accuracy],
    },
    { heading: 'Settings', pre: JSON.stringify(p, null, 2) },
  ]);
}
