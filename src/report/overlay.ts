/**
 * Several training runs on one plot: loss against SDE time (Σ lr for SGD, Σ lr² for Adam/RMSprop), so
 * runs with different batch sizes or SVAG amplifications ℓ that follow the same SDE lie on top of each
 * other (Li, Malladi & Arora 2021; Malladi et al. 2022), and against plain steps for contrast.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { htmlReport, linePlot, type Series } from './plot.ts';
import { movingAverage as smooth, readJsonlRecords } from './series.ts';

interface RunLog {
  name: string;
  steps: number[];
  sde: number[];
  loss: number[];
}

export function readRunLog(dir: string): RunLog {
  const p = join(dir, 'log.jsonl');
  if (!existsSync(p)) throw new LmtuneError('IO', `${dir}: no log.jsonl (not an lmtune run folder)`);
  const rows = readJsonlRecords(p);
  if (!rows.length || rows[0]!.sde_time === undefined) throw new LmtuneError('DATA', `${p}: no sde_time column (MeZO runs have no SDE time)`);
  let name = dir;
  const cfgPath = join(dir, 'config.json');
  if (existsSync(cfgPath)) {
    const c = JSON.parse(readFileSync(cfgPath, 'utf8')) as { optimizer: { name: string; lr: number }; svag: number; batchSize: number };
    name = `${c.optimizer.name} ℓ=${c.svag} B=${c.batchSize} lr=${c.optimizer.lr}`;
  }
  return { name, steps: rows.map((r) => r.step!), sde: rows.map((r) => r.sde_time!), loss: rows.map((r) => r.loss!) };
}

export function overlayReport(dirs: readonly string[], window = 10): string {
  const runs = dirs.map(readRunLog);
  const bySde: Series[] = runs.map((r) => ({ name: r.name, x: r.sde, y: smooth(r.loss, window) }));
  const bySteps: Series[] = runs.map((r) => ({ name: r.name, x: r.steps, y: smooth(r.loss, window) }));
  return htmlReport('lmtune: runs in SDE time', [
    { heading: 'Training loss against SDE time', paragraphs: ['Runs that approximate the same SDE overlap here (moving average of the training loss).'], svgs: [linePlot({ series: bySde, xLabel: 'SDE time', yLabel: 'training loss' })] },
    { heading: 'Training loss against steps', svgs: [linePlot({ series: bySteps, xLabel: 'step', yLabel: 'training loss' })] },
  ]);
}
