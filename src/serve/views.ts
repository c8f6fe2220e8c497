/**
 * The dashboard's three views (runs list, one run, an overlay of runs) as data: HTML fragments by
 * element id and chart specs. A page embeds its first view; server-sent events push the same view again
 * whenever a watched run writes, and the page swaps the fragments in and updates the charts in place.
 */
import { basename } from 'node:path';
import { escapeXml } from '../report/plot.ts';
import type { ChartSpec } from '../report/chart.ts';
import { factsHtml } from '../report/chart.ts';
import { fmtNumber, resultFacts, runCharts, runResults } from '../report/run-view.ts';
import { AXIS_LABEL, overlayChart, overlayName, overlayRunOf, type OverlayAxis } from '../report/overlay.ts';
import { formatSeconds, methodName, runFacts, trainCommand } from '../train/describe.ts';
import type { RunData } from './runs.ts';

export interface View {
  fragments: Record<string, string>;
  charts: ChartSpec[];
}

const e = escapeXml;

export function runHref(id: string): string {
  return `/run?id=${encodeURIComponent(id)}`;
}

export function reportHref(id: string): string {
  return `/report?id=${encodeURIComponent(id)}`;
}

function warningsHtml(warnings: readonly string[]): string {
  if (!warnings.length) return '';
  const shown = warnings.slice(0, 20).map((w) => `<div class="warn">⚠ ${e(w)}</div>`);
  if (warnings.length > 20) shown.push(`<div class="warn">… and ${warnings.length - 20} more warnings</div>`);
  return shown.join('\n');
}

function statusHtml(r: RunData): string {
  const max = r.config?.maxSteps;
  const step = r.log.length ? (r.log[r.log.length - 1]!.step as number) : 0;
  const color = r.status === 'running' ? '#2a7' : r.status === 'finished' ? '#555' : '#c60';
  return `<span class="status" data-status="${r.status}" style="color:${color}">${r.status}</span> <span class="muted">step ${step}${max ? ` of ${max}` : ''}</span>`;
}

function settings(r: RunData): string {
  const c = r.config;
  if (!c) return '–';
  return `lr ${c.optimizer.lr}, batch ${c.batchSize}${c.gradAccum > 1 ? `×${c.gradAccum}` : ''}, ${c.maxSteps} steps${c.optimizer.name === 'mezo' ? `, ε ${c.optimizer.zoEps}` : ''}, seed ${c.seed}`;
}

function sizes(r: RunData): string {
  const s = r.summary?.examples;
  if (s) return `${s.train} / ${s.dev}`;
  const c = r.config;
  if (!c) return '–';
  return `${c.numTrain ?? 'rest'} / ${c.dev ? `≤${c.devLimit}` : Math.min(c.numDev, c.devLimit)}`;
}

export function listView(root: string, runs: readonly RunData[]): View {
  if (!runs.length) {
    return {
      fragments: {
        runs: `<p class="warn">No runs under ${e(root)} yet. A run folder holds the config.json and log.jsonl that <code>lmtune train --out DIR</code> writes; this page adds runs as they appear.</p>`,
      },
      charts: [],
    };
  }
  const rows = runs.map((r) => {
    const res = runResults(r.log, r.evals);
    const c = r.config;
    const dev = (v: number | undefined): string => (v === undefined ? '–' : fmtNumber(v));
    return (
      `<tr data-run="${e(r.id)}">` +
      `<td><input type="checkbox" name="run" value="${e(r.id)}"></td>` +
      `<td><a href="${runHref(r.id)}">${e(r.id)}</a>${r.warnings.length ? ` <span class="warnmark" title="${e(r.warnings[0]!)}">⚠ ${r.warnings.length}</span>` : ''}</td>` +
      `<td>${r.kind}</td><td>${statusHtml(r)}</td>` +
      `<td>${c ? e(basename(c.model)) : '–'}</td><td>${c ? e(basename(c.task)) : '–'}</td><td>${c ? e(methodName(c)) : '–'}</td>` +
      `<td>${e(settings(r))}</td><td>${e(sizes(r))}</td>` +
      `<td>${fmtNumber(res.lastLoss)}</td>` +
      `<td>${res.metric ? e(res.metric) : '–'}</td><td>${dev(res.zeroShot?.value)}</td><td>${dev(res.last?.value)}</td>` +
      `<td>${res.best ? `${fmtNumber(res.best.value)} @ ${res.best.step}` : '–'}</td>` +
      `<td>${r.hasReport ? `<a href="${reportHref(r.id)}">report</a>` : '<span class="muted">at the end</span>'}</td>` +
      '</tr>'
    );
  });
  const head = ['', 'run', 'kind', 'status', 'model', 'task', 'method', 'settings', 'train / dev', 'training loss', 'dev metric', 'zero-shot', 'last', 'best (step)', 'report'];
  return {
    fragments: { runs: `<table class="runs"><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr>\n${rows.join('\n')}\n</table>` },
    charts: [],
  };
}

export function runView(r: RunData): View {
  const c = r.config;
  const res = runResults(r.log, r.evals);
  const facts = c ? runFacts(c, { sizes: r.summary?.examples ?? null, seconds: r.wallSeconds }) : [];
  if (!c && r.wallSeconds !== null) facts.push({ label: 'time', value: formatSeconds(r.wallSeconds) });
  return {
    fragments: {
      status: statusHtml(r),
      warnings: warningsHtml(r.warnings),
      results: factsHtml(resultFacts(res, { finished: r.status === 'finished', runDir: r.dir })),
      about: factsHtml(facts) + (c ? `<p>To reproduce (with a new --out folder):</p><pre>${e(trainCommand(c, r.dir))}</pre>` : ''),
      report: r.hasReport ? `<a href="${reportHref(r.id)}">report.html</a> (self-contained; open it anywhere)` : '<span class="muted">report.html is written when the run finishes</span>',
    },
    charts: runCharts(r.log, r.evals, { mezo: c?.optimizer.name === 'mezo', sdeLabel: c ? `ℓ = ${c.svag}` : 'loss' }).map((s) => ({ ...s, width: 620 })),
  };
}

export const AXES: OverlayAxis[] = ['step', 'samples', 'sde'];

export function overlayView(runs: readonly RunData[], axis: OverlayAxis, window: number): View {
  const ors = runs.map((r) => overlayRunOf(`${r.id}: ${overlayName(r.config ?? {}, r.id)}`, r.log, r.config ?? {}));
  const { chart, skipped } = overlayChart(ors, axis, window);
  const warnings = runs.flatMap((r) => r.warnings);
  for (const s of skipped) warnings.push(`${s}: left out of this overlay (${axis === 'sde' ? 'no SDE time in its log: MeZO runs have none' : 'batch size unknown'})`);
  return {
    fragments: { warnings: warningsHtml(warnings), runs: runs.map((r) => `<a href="${runHref(r.id)}">${e(r.id)}</a>`).join(', ') },
    charts: [chart],
  };
}

export function axisLinks(ids: readonly string[], axis: OverlayAxis, window: number): string {
  const q = ids.map((id) => `run=${encodeURIComponent(id)}`).join('&');
  return AXES.map((a) => (a === axis ? `<b>${AXIS_LABEL[a]}</b>` : `<a href="/overlay?${q}&axis=${a}&window=${window}">${AXIS_LABEL[a]}</a>`)).join(' · ');
}
