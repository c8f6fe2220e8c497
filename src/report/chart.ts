/**
 * Interactive charts for HTML reports and the runs dashboard, drawn in the page by uPlot.
 *
 * A chart is data (ChartSpec); the page-side renderer (chart-client.js) turns specs into uPlot charts.
 * A static report inlines uPlot, its CSS, the renderer and the specs, so the file stays self-contained
 * and opens offline; `lmtune serve` serves the same three files. Numbers are printed by JSON.stringify
 * and the page holds no timestamps, so the same run gives the same bytes.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { escapeXml, type Table } from './plot.ts';

export interface ChartSeries {
  name: string;
  x: readonly number[];
  /** null (or a non-finite value) leaves a gap in the data; the line spans it */
  y: readonly (number | null)[];
  color?: string;
  dashed?: boolean;
  width?: number;
  /** draw a marker on every point (sparse series such as evaluations) */
  points?: boolean;
}

export interface ChartSpec {
  /** DOM id of the chart's container (unique in the page) */
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  logY?: boolean;
  width?: number;
  height?: number;
  series: ChartSeries[];
}

export interface ChartAssets {
  uplotJs: string;
  uplotCss: string;
  clientJs: string;
}

let cached: ChartAssets | null = null;

/** the uPlot build from node_modules and the renderer; read once */
export function chartAssets(): ChartAssets {
  if (cached) return cached;
  let dist: string;
  try {
    dist = join(dirname(createRequire(import.meta.url).resolve('uplot/package.json')), 'dist');
  } catch {
    throw new LmtuneError('IO', 'the uplot package is not installed', 'run `npm install` in the lmtune folder');
  }
  cached = {
    uplotJs: readFileSync(join(dist, 'uPlot.iife.min.js'), 'utf8'),
    uplotCss: readFileSync(join(dist, 'uPlot.min.css'), 'utf8'),
    clientJs: readFileSync(new URL('./chart-client.js', import.meta.url), 'utf8'),
  };
  return cached;
}

/** JSON that is safe inside a <script> element */
export function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** finite numbers stay, anything else becomes a gap */
export function gapped(values: readonly number[]): (number | null)[] {
  return values.map((v) => (Number.isFinite(v) ? v : null));
}

export interface ChartSection {
  heading: string;
  /** label/value pairs shown as a two-column list (what the run was, its results) */
  facts?: { label: string; value: string }[];
  paragraphs?: string[];
  table?: Table;
  charts?: ChartSpec[];
  /** preformatted text (escaped), e.g. a command or a config */
  pre?: string;
}

export const PAGE_CSS =
  'body{font-family:sans-serif;max-width:1320px;margin:24px auto;padding:0 16px;color:#222}' +
  'table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}' +
  'th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:8px;overflow-x:auto;white-space:pre-wrap}' +
  'dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}dl.facts dt{font-weight:bold;color:#555}dl.facts dd{margin:0}' +
  '.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{min-width:320px}.warn{background:#fff4e5;border:1px solid #f0b060;padding:6px 10px;margin:6px 0}' +
  '.muted{color:#777}';

function cell(v: string | number): string {
  if (typeof v === 'number') return escapeXml(Number.isInteger(v) ? String(v) : Number(v.toPrecision(5)).toString());
  return escapeXml(v);
}

export function factsHtml(facts: readonly { label: string; value: string }[]): string {
  return `<dl class="facts">${facts.map((f) => `<dt>${escapeXml(f.label)}</dt><dd>${escapeXml(f.value)}</dd>`).join('')}</dl>`;
}

export function tableHtml(t: Table, what: string): string {
  for (const [i, r] of t.rows.entries()) {
    if (r.length !== t.columns.length) throw new LmtuneError('SHAPE', `table "${what}" row ${i} has ${r.length} cells, expected ${t.columns.length}`);
  }
  return `<table>\n<tr>${t.columns.map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr>\n${t.rows.map((r) => `<tr>${r.map((v) => `<td>${cell(v)}</td>`).join('')}</tr>`).join('\n')}\n</table>`;
}

export function chartDivs(charts: readonly ChartSpec[]): string {
  return `<div class="charts">${charts.map((c) => `<div class="chart" id="${escapeXml(c.id)}"></div>`).join('')}</div>`;
}

/**
 * One self-contained HTML file: inline CSS and scripts (uPlot, the renderer, the chart data), no
 * external links, so it opens from disk without a network.
 */
export function htmlChartReport(title: string, sections: readonly ChartSection[]): string {
  const a = chartAssets();
  const charts: ChartSpec[] = [];
  const ids = new Set<string>();
  const out: string[] = [];
  out.push('<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">', `<title>${escapeXml(title)}</title>`);
  out.push(`<style>${a.uplotCss}\n${PAGE_CSS}</style>`);
  out.push('</head>', '<body>', `<h1>${escapeXml(title)}</h1>`);
  for (const s of sections) {
    out.push('<section>', `<h2>${escapeXml(s.heading)}</h2>`);
    if (s.facts?.length) out.push(factsHtml(s.facts));
    for (const p of s.paragraphs ?? []) out.push(`<p>${escapeXml(p)}</p>`);
    if (s.table) out.push(tableHtml(s.table, s.heading));
    if (s.charts?.length) {
      for (const c of s.charts) {
        if (ids.has(c.id)) throw new LmtuneError('CONFIG', `two charts in "${title}" share the id "${c.id}"`);
        ids.add(c.id);
        for (const ser of c.series) if (ser.x.length !== ser.y.length) throw new LmtuneError('SHAPE', `chart "${c.title}", series "${ser.name}": x has ${ser.x.length} points, y has ${ser.y.length}`);
      }
      charts.push(...s.charts);
      out.push(chartDivs(s.charts));
    }
    if (s.pre !== undefined) out.push(`<pre>${escapeXml(s.pre)}</pre>`);
    out.push('</section>');
  }
  out.push(`<script>${a.uplotJs}</script>`);
  out.push(`<script>${a.clientJs}</script>`);
  out.push(`<script type="application/json" id="lmtune-charts">${scriptJson(charts)}</script>`);
  out.push('<script>window.lmtuneCharts.renderAll();</script>');
  out.push('</body>', '</html>');
  return out.join('\n') + '\n';
}
