/**
 * Dependency-free SVG line plots and a one-file HTML report.
 *
 * Why hand-written: a report must open anywhere without a network or a plotting library, and two runs
 * from the same data must give the same bytes (coordinates are printed with fixed decimals, nothing
 * depends on time or locale). The plot covers what training curves need and no more: several series,
 * nice ticks, linear or log y, an optional shaded band (mean ± std), reference lines and a legend.
 */
import { LmtuneError } from '../util/errors.ts';

export interface Band {
  lower: ArrayLike<number>;
  upper: ArrayLike<number>;
}

export interface Series {
  name: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  /** Shaded region drawn under the line (e.g. mean ± std). */
  band?: Band;
  /** Shorthand for band = y ± std. */
  std?: ArrayLike<number>;
  /** CSS color; default from the palette by series index. */
  color?: string;
  dashed?: boolean;
}

export interface ReferenceLine {
  y: number;
  label: string;
  color?: string;
}

export interface LinePlotOptions {
  series: Series[];
  title?: string;
  xLabel?: string;
  yLabel?: string;
  logY?: boolean;
  width?: number;
  height?: number;
  /** Horizontal reference lines (e.g. a closed-form stationary value). */
  referenceLines?: ReferenceLine[];
  /** Legend corner inside the plot, or none. Default top-right. */
  legend?: 'top-right' | 'bottom-right' | 'none';
}

/** Tableau-10: distinguishable, and readable by most color-blind viewers. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Fixed-decimal coordinate, without "-0.00". */
function c(v: number): string {
  const s = v.toFixed(2);
  return s === '-0.00' ? '0.00' : s;
}

/** A step of the form {1, 2, 5}·10^k close to span/target. */
export function niceStep(span: number, target = 6): number {
  if (!(span > 0) || !Number.isFinite(span)) return 1;
  const raw = span / Math.max(1, target);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/** Nice linear ticks covering [lo, hi]: the returned domain starts and ends on a tick. */
export function niceTicks(lo: number, hi: number, target = 6): { ticks: number[]; domain: [number, number]; step: number } {
  if (!(hi > lo)) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep(hi - lo, target);
  const start = Math.floor(lo / step + 1e-9);
  const end = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  for (let i = start; i <= end; i++) ticks.push(cleanTick(i * step, step));
  return { ticks, domain: [start * step, end * step], step };
}

function cleanTick(v: number, step: number): number {
  // i·step accumulates no error, but i·0.1 = 0.30000000000000004: round to the step's decimals
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  return Number(v.toFixed(Math.min(20, decimals)));
}

/**
 * Ticks for a log axis on the data range [lo, hi] (lo > 0): powers of ten, plus 2× and 5× when the range
 * spans at most 2.5 decades. The domain is the data range itself (padded by 5% in log space), because
 * rounding it out to whole decades can leave most of the plot empty.
 */
export function logTicks(lo: number, hi: number): { ticks: number[]; domain: [number, number] } {
  if (!(lo > 0)) throw new LmtuneError('CONFIG', `log axis needs a positive lower bound, got ${lo}`);
  if (!(hi > lo)) {
    hi = lo * 10;
    lo = lo / 10;
  }
  const pad = Math.pow(hi / lo, 0.05);
  const domain: [number, number] = [lo / pad, hi * pad];
  const e0 = Math.floor(Math.log10(domain[0]));
  const e1 = Math.ceil(Math.log10(domain[1]));
  const mult = Math.log10(domain[1] / domain[0]) <= 2.5 ? [1, 2, 5] : [1];
  const ticks: number[] = [];
  for (let e = e0; e <= e1; e++) {
    for (const m of mult) {
      const t = Number(`${m}e${e}`);
      if (t >= domain[0] && t <= domain[1]) ticks.push(t);
    }
  }
  return { ticks, domain };
}

/** Short tick label: plain decimals for moderate numbers, exponent form for very small/large ones. */
export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) {
    const [m, e] = v.toExponential().split('e');
    return `${Number(Number(m).toPrecision(3))}e${Number(e)}`;
  }
  return String(Number(v.toPrecision(6)));
}

interface Scale {
  toPx(v: number): number;
  valid(v: number): boolean;
}

function extent(values: number[]): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

function bandOf(s: Series): Band | undefined {
  if (s.band) return s.band;
  if (!s.std) return undefined;
  const n = s.y.length;
  const lower = new Float64Array(n);
  const upper = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    lower[i] = s.y[i]! - s.std[i]!;
    upper[i] = s.y[i]! + s.std[i]!;
  }
  return { lower, upper };
}

/** Renders a line plot to an SVG string. */
export function linePlot(opts: LinePlotOptions): string {
  const W = opts.width ?? 640;
  const H = opts.height ?? 400;
  const logY = opts.logY ?? false;
  const m = { left: 72, right: 16, top: opts.title ? 34 : 14, bottom: opts.xLabel ? 50 : 32 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  for (const s of opts.series) {
    if (s.x.length !== s.y.length) throw new LmtuneError('SHAPE', `series "${s.name}": x has ${s.x.length} points, y has ${s.y.length}`);
    if (s.std && s.std.length !== s.y.length) throw new LmtuneError('SHAPE', `series "${s.name}": std has ${s.std.length} points, y has ${s.y.length}`);
    const b = bandOf(s);
    if (b && (b.lower.length !== s.y.length || b.upper.length !== s.y.length)) throw new LmtuneError('SHAPE', `series "${s.name}": band length differs from y`);
  }
  const yOk = (v: number): boolean => Number.isFinite(v) && (!logY || v > 0);
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of opts.series) {
    const b = bandOf(s);
    for (let i = 0; i < s.x.length; i++) {
      if (!Number.isFinite(s.x[i]!)) continue;
      const cand = [s.y[i]!, ...(b ? [b.lower[i]!, b.upper[i]!] : [])];
      let any = false;
      for (const v of cand) {
        if (!yOk(v)) continue;
        ys.push(v);
        any = true;
      }
      if (any) xs.push(s.x[i]!);
    }
  }
  for (const r of opts.referenceLines ?? []) if (yOk(r.y)) ys.push(r.y);
  const xe = extent(xs) ?? [0, 1];
  const ye = extent(ys) ?? (logY ? [0.1, 10] : [0, 1]);
  // x: the data range itself (runs of different length should not stretch the axis to the next tick)
  const xNice = niceTicks(xe[0], xe[1]);
  const xt = xe[1] > xe[0] ? { ticks: xNice.ticks.filter((t) => t >= xe[0] - 1e-9 * xNice.step && t <= xe[1] + 1e-9 * xNice.step), domain: xe } : xNice;
  const yt = logY ? logTicks(ye[0], ye[1]) : niceTicks(ye[0], ye[1]);
  const xs_: Scale = {
    toPx: (v) => m.left + ((v - xt.domain[0]) / (xt.domain[1] - xt.domain[0])) * pw,
    valid: (v) => Number.isFinite(v),
  };
  const ys_: Scale = logY
    ? {
        toPx: (v) => m.top + ph - ((Math.log10(v) - Math.log10(yt.domain[0])) / (Math.log10(yt.domain[1]) - Math.log10(yt.domain[0]))) * ph,
        valid: yOk,
      }
    : { toPx: (v) => m.top + ph - ((v - yt.domain[0]) / (yt.domain[1] - yt.domain[0])) * ph, valid: yOk };

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  if (opts.title) out.push(`<text x="${c(W / 2)}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(opts.title)}</text>`);
  // grid and ticks
  out.push('<g class="axes" stroke="#dddddd" stroke-width="1">');
  for (const t of xt.ticks) out.push(`<line x1="${c(xs_.toPx(t))}" y1="${c(m.top)}" x2="${c(xs_.toPx(t))}" y2="${c(m.top + ph)}"/>`);
  for (const t of yt.ticks) out.push(`<line x1="${c(m.left)}" y1="${c(ys_.toPx(t))}" x2="${c(m.left + pw)}" y2="${c(ys_.toPx(t))}"/>`);
  out.push('</g>');
  out.push(`<rect x="${c(m.left)}" y="${c(m.top)}" width="${c(pw)}" height="${c(ph)}" fill="none" stroke="#333333"/>`);
  out.push('<g class="ticks" fill="#333333">');
  for (const t of xt.ticks) out.push(`<text x="${c(xs_.toPx(t))}" y="${c(m.top + ph + 16)}" text-anchor="middle">${escapeXml(formatTick(t))}</text>`);
  for (const t of yt.ticks) out.push(`<text x="${c(m.left - 6)}" y="${c(ys_.toPx(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t))}</text>`);
  out.push('</g>');
  if (opts.xLabel) out.push(`<text x="${c(m.left + pw / 2)}" y="${c(H - 12)}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`);
  if (opts.yLabel) {
    out.push(`<text x="14" y="${c(m.top + ph / 2)}" text-anchor="middle" transform="rotate(-90 14 ${c(m.top + ph / 2)})">${escapeXml(opts.yLabel)}</text>`);
  }
  // the id depends only on the clip geometry, so equal ids in one HTML page always mean equal rectangles
  const clipId = `plot-area-${m.left}-${m.top}-${pw}-${ph}`;
  out.push(`<clipPath id="${clipId}"><rect x="${c(m.left)}" y="${c(m.top)}" width="${c(pw)}" height="${c(ph)}"/></clipPath>`);
  out.push(`<g clip-path="url(#${clipId})">`);
  opts.series.forEach((s, si) => {
    const color = s.color ?? PALETTE[si % PALETTE.length]!;
    const b = bandOf(s);
    if (!b) return;
    // one polygon per contiguous run of valid points
    for (const run of runs(s.x.length, (i) => xs_.valid(s.x[i]!) && ys_.valid(b.lower[i]!) && ys_.valid(b.upper[i]!))) {
      const pts = [...run.map((i) => `${c(xs_.toPx(s.x[i]!))},${c(ys_.toPx(b.upper[i]!))}`), ...run.reverse().map((i) => `${c(xs_.toPx(s.x[i]!))},${c(ys_.toPx(b.lower[i]!))}`)];
      out.push(`<polygon class="band" points="${pts.join(' ')}" fill="${escapeXml(color)}" fill-opacity="0.18" stroke="none"/>`);
    }
  });
  for (const r of opts.referenceLines ?? []) {
    if (!yOk(r.y)) continue;
    const y = c(ys_.toPx(r.y));
    out.push(`<line class="reference" x1="${c(m.left)}" y1="${y}" x2="${c(m.left + pw)}" y2="${y}" stroke="${escapeXml(r.color ?? '#555555')}" stroke-dasharray="2 3"/>`);
    out.push(`<text x="${c(m.left + 4)}" y="${c(Number(y) - 3)}" fill="${escapeXml(r.color ?? '#555555')}">${escapeXml(r.label)}</text>`);
  }
  opts.series.forEach((s, si) => {
    const color = s.color ?? PALETTE[si % PALETTE.length]!;
    const d = runs(s.x.length, (i) => xs_.valid(s.x[i]!) && ys_.valid(s.y[i]!))
      .map((run) => run.map((i, j) => `${j === 0 ? 'M' : 'L'}${c(xs_.toPx(s.x[i]!))} ${c(ys_.toPx(s.y[i]!))}`).join(' '))
      .join(' ');
    if (d) out.push(`<path class="series" d="${d}" fill="none" stroke="${escapeXml(color)}" stroke-width="1.75"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
  });
  out.push('</g>');
  const legend = opts.legend ?? 'top-right';
  if (opts.series.length > 0 && legend !== 'none') {
    const lh = 8 + 16 * opts.series.length;
    const lw = Math.min(pw - 8, 14 + 7 * Math.max(...opts.series.map((s) => s.name.length)) + 28);
    const lx = m.left + pw - lw - 6;
    const ly = legend === 'top-right' ? m.top + 6 : m.top + ph - lh - 6;
    out.push(`<g class="legend"><rect x="${c(lx)}" y="${c(ly)}" width="${c(lw)}" height="${c(lh)}" fill="#ffffff" fill-opacity="0.85" stroke="#bbbbbb"/>`);
    opts.series.forEach((s, si) => {
      const color = s.color ?? PALETTE[si % PALETTE.length]!;
      const y = ly + 14 + 16 * si;
      out.push(`<line x1="${c(lx + 6)}" y1="${c(y - 4)}" x2="${c(lx + 28)}" y2="${c(y - 4)}" stroke="${escapeXml(color)}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
      out.push(`<text x="${c(lx + 34)}" y="${c(y)}">${escapeXml(s.name)}</text>`);
    });
    out.push('</g>');
  }
  if (xs.length === 0) out.push(`<text x="${c(m.left + pw / 2)}" y="${c(m.top + ph / 2)}" text-anchor="middle" fill="#999999">no data</text>`);
  out.push('</svg>');
  return out.join('\n');
}

/** Index runs where ok(i) holds, so lines and bands break at missing points. */
function runs(n: number, ok: (i: number) => boolean): number[][] {
  const out: number[][] = [];
  let cur: number[] = [];
  for (let i = 0; i < n; i++) {
    if (ok(i)) cur.push(i);
    else if (cur.length) {
      out.push(cur);
      cur = [];
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

export interface Table {
  columns: string[];
  rows: (string | number)[][];
}

export interface ReportSection {
  heading: string;
  /** Plain-text paragraphs (escaped). */
  paragraphs?: string[];
  /** SVG strings from `linePlot` (embedded as they are). */
  svgs?: string[];
  table?: Table;
  /** Preformatted text (escaped), e.g. a JSON config. */
  pre?: string;
}

function cell(v: string | number): string {
  if (typeof v === 'number') return escapeXml(Number.isInteger(v) ? String(v) : Number(v.toPrecision(5)).toString());
  return escapeXml(v);
}

/** One self-contained HTML file (inline CSS, inline SVG, no scripts or external links). */
export function htmlReport(title: string, sections: ReportSection[]): string {
  const out: string[] = [];
  out.push('<!DOCTYPE html>');
  out.push('<html lang="en">');
  out.push('<head>');
  out.push('<meta charset="utf-8">');
  out.push(`<title>${escapeXml(title)}</title>`);
  out.push(
    '<style>body{font-family:sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;color:#222}' +
      'table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}' +
      'th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:8px;overflow-x:auto}' +
      '.plots svg{margin:4px 8px 4px 0}</style>',
  );
  out.push('</head>');
  out.push('<body>');
  out.push(`<h1>${escapeXml(title)}</h1>`);
  for (const s of sections) {
    out.push('<section>');
    out.push(`<h2>${escapeXml(s.heading)}</h2>`);
    for (const p of s.paragraphs ?? []) out.push(`<p>${escapeXml(p)}</p>`);
    if (s.svgs?.length) out.push(`<div class="plots">\n${s.svgs.join('\n')}\n</div>`);
    if (s.table) {
      for (const [i, r] of s.table.rows.entries()) {
        if (r.length !== s.table.columns.length) throw new LmtuneError('SHAPE', `table "${s.heading}" row ${i} has ${r.length} cells, expected ${s.table.columns.length}`);
      }
      out.push('<table>');
      out.push(`<tr>${s.table.columns.map((h) => `<th>${escapeXml(h)}</th>`).join('')}</tr>`);
      for (const r of s.table.rows) out.push(`<tr>${r.map((v) => `<td>${cell(v)}</td>`).join('')}</tr>`);
      out.push('</table>');
    }
    if (s.pre !== undefined) out.push(`<pre>${escapeXml(s.pre)}</pre>`);
    out.push('</section>');
  }
  out.push('</body>');
  out.push('</html>');
  return out.join('\n') + '\n';
}
