/**
 * Several training runs on one plot: loss against SDE time (Σ lr for SGD, Σ lr² for Adam/RMSprop), so
 * runs with different batch sizes or SVAG amplifications ℓ that follow the same SDE lie on top of each
 * other (Li, Malladi & Arora 2021; Malladi et al. 2022), and against plain steps or training samples for
 * contrast. `lmtune report overlay` writes these charts to a file; the runs dashboard draws them live.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { gapped, htmlChartReport, type ChartSpec } from './chart.ts';
import { movingAverage as smooth, readJsonlRecords } from './series.ts';

export interface OverlayRun {
  name: string;
  steps: number[];
  /** null: the run logs no SDE time (MeZO) */
  sde: number[] | null;
  loss: number[];
  /** training examples drawn per step (batch × micro-batches × 2 minibatches under SVAG); null if unknown */
  samplesPerStep: number | null;
}

export type OverlayAxis = 'step' | 'samples' | 'sde';

export const AXIS_LABEL: Record<OverlayAxis, string> = { step: 'step', samples: 'training samples', sde: 'SDE time' };

/** the fields of config.json an overlay needs, read leniently (a damaged config only loses the name) */
interface RunConfigLike {
  optimizer?: { name?: string; lr?: number };
  svag?: number;
  batchSize?: number;
  gradAccum?: number;
}

export function overlayName(c: RunConfigLike, fallback: string): string {
  if (!c.optimizer?.name) return fallback;
  // MeZO has no SVAG: its ℓ would only confuse the legend
  return `${c.optimizer.name}${c.optimizer.name === 'mezo' ? '' : ` ℓ=${c.svag ?? 1}`} B=${c.batchSize} lr=${c.optimizer.lr}`;
}

export function samplesPerStep(c: RunConfigLike): number | null {
  if (typeof c.batchSize !== 'number') return null;
  return c.batchSize * (c.gradAccum ?? 1) * ((c.svag ?? 1) > 1 ? 2 : 1);
}

export function overlayRunOf(name: string, rows: readonly Record<string, unknown>[], cfg: RunConfigLike): OverlayRun {
  const n = (r: Record<string, unknown>, k: string): number => (typeof r[k] === 'number' ? (r[k] as number) : Number.NaN);
  const hasSde = rows.length > 0 && rows.every((r) => typeof r.sde_time === 'number');
  return { name, steps: rows.map((r) => n(r, 'step')), sde: hasSde ? rows.map((r) => n(r, 'sde_time')) : null, loss: rows.map((r) => n(r, 'loss')), samplesPerStep: samplesPerStep(cfg) };
}

/** a run folder's log for `report overlay`, which needs SDE time (so MeZO runs are refused) */
export function readRunLog(dir: string): OverlayRun {
  const p = join(dir, 'log.jsonl');
  if (!existsSync(p)) throw new LmtuneError('IO', `${dir}: no log.jsonl (not an lmtune run folder)`);
  const rows = readJsonlRecords(p);
  if (!rows.length || rows[0]!.sde_time === undefined) throw new LmtuneError('DATA', `${p}: no sde_time column (MeZO runs have no SDE time)`);
  const cfgPath = join(dir, 'config.json');
  const cfg = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as RunConfigLike) : {};
  return overlayRunOf(overlayName(cfg, dir), rows, cfg);
}

/**
 * The overlay chart on one axis; runs that cannot be placed on it (no SDE time, unknown batch size) are
 * left out and named in `skipped`.
 */
export function overlayChart(runs: readonly OverlayRun[], axis: OverlayAxis, window: number, id = `overlay-${axis}`): { chart: ChartSpec; skipped: string[] } {
  const skipped: string[] = [];
  const series = [];
  for (const r of runs) {
    const x = axis === 'step' ? r.steps : axis === 'sde' ? r.sde : r.samplesPerStep === null ? null : r.steps.map((s) => s * r.samplesPerStep!);
    if (x === null) {
      skipped.push(r.name);
      continue;
    }
    series.push({ name: r.name, x, y: gapped(smooth(r.loss.map((v) => (Number.isFinite(v) ? v : 0)), window)) });
  }
  return { chart: { id, title: `Training loss against ${AXIS_LABEL[axis]}`, xLabel: AXIS_LABEL[axis], yLabel: `training loss (moving average of ${window})`, width: 900, height: 380, series }, skipped };
}

export function overlayReport(dirs: readonly string[], window = 10): string {
  const runs = dirs.map(readRunLog);
  return htmlChartReport('lmtune: runs in SDE time', [
    { heading: 'Training loss against SDE time', paragraphs: ['Runs that approximate the same SDE overlap here (moving average of the training loss).'], charts: [overlayChart(runs, 'sde', window).chart] },
    { heading: 'Training loss against steps', charts: [overlayChart(runs, 'step', window).chart] },
  ]);
}
