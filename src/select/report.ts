/**
 * OUT/report.html for a selection run, self-contained (src/report/plot.ts): score distributions per pool
 * source (the rows' `dataset` field), the selected mix against the pool's, the best and worst scored
 * rows, skipped rows and stage timings. Every number comes from the run's files, so two identical runs
 * differ only in their timings.
 */
import { basename } from 'node:path';
import { PALETTE, htmlReport, linePlot, type ReportSection, type Series } from '../report/plot.ts';
import { locate, type ChatFile } from './pool.ts';
import type { SubtaskExtremes } from './scan.ts';

export interface ReportInput {
  pool: ChatFile;
  scores: Float64Array;
  selected: readonly number[];
  checkpoints: { name: string; lr: number; weight: number }[];
  subtasks: string[];
  aggregate: string;
  timings: { stage: string; seconds: number }[];
  /** per subtask: its size and the pool rows scoring highest and lowest against it (match/subtasks.json) */
  subtaskExtremes?: ({ name: string; rows: number } & SubtaskExtremes)[] | null;
  /** how the match stage's streaming pass spent its time */
  matchStream?: { bytes: number; waitSeconds: number; verifySeconds: number; computeSeconds: number } | undefined;
  skipped: { index: number; line: number; reason: string }[];
  truncated: number;
  config: unknown;
}

/** a row's source: its `dataset`, else (pools of several files) its file's name */
function sourceOf(pool: ChatFile): Map<number, string> {
  const multi = pool.parts.length > 1;
  return new Map(pool.rows.map((r) => [r.index, r.chat.dataset ?? (multi ? basename(locate(pool, r.index).file) : '(none)')] as const));
}

/** where a pool row is: its index, or file:index for pools of several files */
function whereOf(pool: ChatFile, i: number): string | number {
  if (pool.parts.length === 1) return i;
  const l = locate(pool, i);
  return `${basename(l.file)}:${l.index}`;
}

const AGGREGATE_TEXT: Record<string, string> = {
  'max-subtask-mean': 'max over target subtasks of the mean, over the subtask\'s rows, of the learning-rate-weighted cosine',
  mean: 'mean over all target rows of the learning-rate-weighted cosine',
  'cos-with-mean-grad': 'max over target subtasks of the learning-rate-weighted cosine with the subtask\'s mean target feature',
};

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
      return [whereOf(r.pool, i), Number(r.scores[i]!.toFixed(6)), source.get(i)!, preview(user), preview(reply, 60)];
    });
  const perSubtask = (r.subtaskExtremes ?? []).slice(0, 100).map((st): ReportSection => {
    const rowsOf = (list: { index: number; score: number }[], label: string): (string | number)[][] =>
      list.map((e, k) => {
        const c = byIndex.get(e.index)!;
        const user = c.messages.filter((m) => m.role !== 'assistant').map((m) => m.content).join(' / ');
        const reply = c.messages.filter((m) => m.role === 'assistant').map((m) => m.content).join(' / ');
        return [`${label} ${k + 1}`, whereOf(r.pool, e.index), Number(e.score.toFixed(6)), Number(r.scores[e.index]!.toFixed(6)), source.get(e.index)!, preview(user), preview(reply, 60)];
      });
    return {
      heading: `Subtask ${st.name} (${st.rows} target rows)`,
      table: { columns: ['rank', 'row', 'score vs this subtask', 'final score', 'source', 'prompt', 'reply'], rows: [...rowsOf(st.top, 'top'), ...rowsOf(st.bottom, 'bottom')] },
    };
  });
  const sections: ReportSection[] = [
    {
      heading: 'Selection',
      paragraphs: [
        `${k} of ${ranked.length} scored pool rows selected (${r.pool.parts.map((p) => `${p.path}: ${p.count} rows`).join('; ')}); ${r.skipped.length} rows skipped, ${r.truncated} truncated to the max length.`,
        `Score: ${AGGREGATE_TEXT[r.aggregate] ?? r.aggregate} over ${r.checkpoints.length} checkpoints; subtasks: ${r.subtasks.join(', ')}.`,
      ],
      table: { columns: ['checkpoint', 'average lr', 'weight'], rows: r.checkpoints.map((c) => [c.name, c.lr, c.weight]) },
    },
    { heading: 'Selected mix against the pool', table: { columns: ['source', 'pool rows', 'pool %', 'selected rows', 'selected %'], rows: mixRows } },
    { heading: 'Scores by source', svgs: [histograms(r.scores, source, names)] },
    { heading: 'Highest scores', table: { columns: ['row', 'score', 'source', 'prompt', 'reply'], rows: exampleRows(ranked.slice(0, 15)) } },
    { heading: 'Lowest scores', table: { columns: ['row', 'score', 'source', 'prompt', 'reply'], rows: exampleRows(ranked.slice(-15).reverse()) } },
    ...(perSubtask.length
      ? [{ heading: 'Top and bottom rows per subtask', paragraphs: [`Each pool row's score against one subtask alone (the aggregation before the max over subtasks), its ${r.subtaskExtremes![0]!.top.length} highest and lowest rows per subtask${(r.subtaskExtremes ?? []).length > 100 ? ' (the first 100 subtasks)' : ''}.`] }, ...perSubtask]
      : []),
    {
      heading: 'Stage timings',
      table: { columns: ['stage', 'seconds'], rows: r.timings.map((t) => [t.stage, Number(t.seconds.toFixed(2))]) },
      ...(r.matchStream
        ? { paragraphs: [`match streamed ${(r.matchStream.bytes / 1e9).toFixed(2)} GB of pool features: ${r.matchStream.waitSeconds.toFixed(2)} s waiting for reads, ${r.matchStream.verifySeconds.toFixed(2)} s checksums, ${r.matchStream.computeSeconds.toFixed(2)} s scoring.`] }
        : {}),
    },
  ];
  // `line` is the line in the row's own file, so a pool of several files names the file beside it
  if (r.skipped.length) sections.push({ heading: 'Skipped rows', table: { columns: ['row', 'line', 'reason'], rows: r.skipped.slice(0, 200).map((s) => [whereOf(r.pool, s.index), s.line, s.reason]) } });
  sections.push({ heading: 'Configuration', pre: JSON.stringify(r.config, null, 2) });
  return htmlReport('LESS data selection', sections);
}
