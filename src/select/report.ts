/**
 * OUT/report.html for a selection run, self-contained (src/report/plot.ts): score distributions per pool
 * source (the rows' `dataset` field), the selected mix against the pool's, the best and worst scored
 * rows, skipped rows and stage timings. Every number comes from the run's files, so two identical runs
 * differ only in their timings.
 */
import { PALETTE, htmlReport, linePlot, type ReportSection, type Series } from '../report/plot.ts';
import type { ChatFile } from './pool.ts';

export interface ReportInput {
  pool: ChatFile;
  scores: Float64Array;
  selected: readonly number[];
  checkpoints: { name: string; lr: number; weight: number }[];
  subtasks: string[];
  aggregate: string;
  timings: { stage: string; seconds: number }[];
  skipped: { index: number; line: number; reason: string }[];
  truncated: number;
  config: unknown;
}

function sourceOf(pool: ChatFile): Map<number, string> {
  return new Map(pool.rows.map((r) => [r.index, r.chat.dataset ?? '(none)'] as const));
}

function preview(text: string, n = 140): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

/** per-source histograms of the scores as density lines over shared bins */
function histograms(scores: Float64Array, source: Map<number, string>, names: string[]): string {
  let lo = Infinity;
  let hi = -Infinity;
  for (const s of scores) {
    if (Number.isNaN(s)) continue;
    lo = Math.min(lo, s);
    hi = Math.max(hi, s);
  }
  if (!(hi > lo)) hi = lo + 1e-9;
  const bins = 40;
  const width = (hi - lo) / bins;
  const x = Array.from({ length: bins }, (_, b) => lo + (b + 0.5) * width);
  const counts = new Map(names.map((n) => [n, new Float64Array(bins)] as const));
  const totals = new Map<string, number>();
  scores.forEach((s, i) => {
    if (Number.isNaN(s)) return;
    const n = source.get(i)!;
    const b = Math.min(bins - 1, Math.floor((s - lo) / width));
    counts.get(n)![b]! += 1;
    totals.set(n, (totals.get(n) ?? 0) + 1);
  });
  const series: Series[] = names.map((n, k) => ({ name: n, x, y: Array.from(counts.get(n)!, (c) => c / Math.max(1, totals.get(n) ?? 0)), color: PALETTE[k % PALETTE.length]!, dashed: k >= PALETTE.length }));
  return linePlot({ series, title: 'score distribution per pool source (share of the source per bin)', xLabel: 'score', yLabel: 'share of rows', width: 900, height: 420 });
}

export function selectionReport(r: ReportInput): string {
  const source = sourceOf(r.pool);
  const names = [...new Set(r.pool.rows.map((x) => source.get(x.index)!))].sort();
  const poolCount = new Map<string, number>();
  for (const row of r.pool.rows) poolCount.set(source.get(row.index)!, (poolCount.get(source.get(row.index)!) ?? 0) + 1);
  const selCount = new Map<string, number>();
  for (const i of r.selected) selCount.set(source.get(i)!, (selCount.get(source.get(i)!) ?? 0) + 1);
  const total = r.pool.rows.length;
  const k = r.selected.length;
  const mixRows = names
    .map((n) => [n, poolCount.get(n) ?? 0, ((poolCount.get(n) ?? 0) / total) * 100, selCount.get(n) ?? 0, k ? ((selCount.get(n) ?? 0) / k) * 100 : 0] as (string | number)[])
    .sort((a, b) => (b[3] as number) - (a[3] as number) || (a[0] as string).localeCompare(b[0] as string));
  const byIndex = new Map(r.pool.rows.map((x) => [x.index, x.chat] as const));
  const ranked = [...r.scores.keys()].filter((i) => !Number.isNaN(r.scores[i]!)).sort((a, b) => r.scores[b]! - r.scores[a]! || a - b);
  const exampleRows = (idx: number[]): (string | number)[][] =>
    idx.map((i) => {
      const c = byIndex.get(i)!;
      const user = c.messages.filter((m) => m.role !== 'assistant').map((m) => m.content).join(' / ');
      const reply = c.messages.filter((m) => m.role === 'assistant').map((m) => m.content).join(' / ');
      return [i, Number(r.scores[i]!.toFixed(6)), source.get(i)!, preview(user), preview(reply, 60)];
    });
  const sections: ReportSection[] = [
    {
      heading: 'Selection',
      paragraphs: [
        `${k} of ${ranked.length} scored pool rows selected (${r.pool.path}); ${r.skipped.length} rows skipped, ${r.truncated} truncated to the max length.`,
        `Score: ${r.aggregate === 'mean' ? 'mean over all target rows' : 'max over target subtasks of the mean over the subtask'} of the learning-rate-weighted cosine over ${r.checkpoints.length} checkpoints; subtasks: ${r.subtasks.join(', ')}.`,
      ],
      table: { columns: ['checkpoint', 'average lr', 'weight'], rows: r.checkpoints.map((c) => [c.name, c.lr, c.weight]) },
    },
    { heading: 'Selected mix against the pool', table: { columns: ['source', 'pool rows', 'pool %', 'selected rows', 'selected %'], rows: mixRows } },
    { heading: 'Scores by source', svgs: [histograms(r.scores, source, names)] },
    { heading: 'Highest scores', table: { columns: ['index', 'score', 'source', 'prompt', 'reply'], rows: exampleRows(ranked.slice(0, 15)) } },
    { heading: 'Lowest scores', table: { columns: ['index', 'score', 'source', 'prompt', 'reply'], rows: exampleRows(ranked.slice(-15).reverse()) } },
    { heading: 'Stage timings', table: { columns: ['stage', 'seconds'], rows: r.timings.map((t) => [t.stage, Number(t.seconds.toFixed(2))]) } },
  ];
  if (r.skipped.length) sections.push({ heading: 'Skipped rows', table: { columns: ['index', 'line', 'reason'], rows: r.skipped.slice(0, 200).map((s) => [s.index, s.line, s.reason]) } });
  sections.push({ heading: 'Configuration', pre: JSON.stringify(r.config, null, 2) });
  return htmlReport('LESS data selection', sections);
}
