/**
 * The noisy-quadratic experiment behind `lmtune scale simulate`: one baseline config, its SVAG versions
 * (amplification a), its batch-scaled versions (κ) and the SDE, all simulated on the same quadratic and
 * drawn against SDE time, with the closed-form stationary variances alongside. If the rules are right,
 * every curve overlays the SDE's, and the SVAG curves approach it as a grows.
 */
import { LmtuneError } from '../util/errors.ts';
import { htmlReport, linePlot, type ReportSection, type Series } from '../report/plot.ts';
import { stableStringify } from '../node/fsx.ts';
import type { OptimizerConfig } from './config.ts';
import { discreteStationaryVariance, sdeStationaryVariance, type NoisyQuadratic } from './quadratic.ts';
import { scaleBatch, timePerStep, type RuleOptions } from './rules.ts';
import { simulateOptimizer, simulateSde, type Trajectory } from './simulate.ts';
import { svagConfig } from './svag.ts';

export interface NqmExperimentOptions {
  config: OptimizerConfig;
  problem: NoisyQuadratic;
  /** SDE time to simulate. */
  horizon: number;
  /** SVAG amplifications; default [1, 2, 4, 8]. */
  amplifications?: number[];
  /** Batch multipliers for the scaling rule; default none. */
  kappas?: number[];
  replicas: number;
  seed: number;
  points?: number;
  /** Also run Euler–Maruyama on the SDE (default true). */
  includeSde?: boolean;
  substeps?: number;
  rules?: RuleOptions;
  warmSecondMoment?: boolean;
  /** Called after each run, e.g. to draw progress. */
  onRun?: (label: string, index: number, total: number) => void;
}

export interface NqmRunSummary {
  label: string;
  kind: 'svag' | 'scaled' | 'sde';
  config: OptimizerConfig;
  steps: number;
  finalMean: number;
  finalVariance: number;
  /** Closed-form stationary variance of this discrete run (approximate for RMSprop/Adam); absent for the SDE. */
  stationaryVariance?: number;
}

export interface NqmExperimentResult {
  html: string;
  runs: NqmRunSummary[];
  /** Closed-form stationary variance of the SDE the baseline approximates. */
  sdeStationaryVariance: number;
}

/** Above this many Gaussian draws the run would take minutes on a CPU. */
const MAX_DRAWS = 5e8;

export function runNqmExperiment(opts: NqmExperimentOptions): NqmExperimentResult {
  const amps = opts.amplifications ?? [1, 2, 4, 8];
  const kappas = opts.kappas ?? [];
  const jobs: { label: string; kind: NqmRunSummary['kind']; config: OptimizerConfig }[] = [];
  for (const a of amps) jobs.push({ label: a === 1 ? 'baseline (a = 1)' : `SVAG a = ${a}`, kind: 'svag', config: svagConfig(opts.config, a, opts.rules).config });
  for (const k of kappas) jobs.push({ label: `batch ×${k} (rule)`, kind: 'scaled', config: scaleBatch(opts.config, k, opts.rules).config });
  let draws = 0;
  for (const j of jobs) draws += (opts.horizon / timePerStep(j.config)) * ((j.config.svagAmplification ?? 1) > 1 ? 2 : 1) * opts.replicas;
  if (opts.includeSde ?? true) draws += (opts.horizon / timePerStep(opts.config)) * (opts.substeps ?? 16) * opts.replicas;
  if (draws > MAX_DRAWS) {
    throw new LmtuneError('CONFIG', `simulation needs ${draws.toExponential(2)} Gaussian draws (limit ${MAX_DRAWS.toExponential(0)})`, 'Lower --replicas, --time, the largest --svag value, or --substeps.');
  }
  const total = jobs.length + ((opts.includeSde ?? true) ? 1 : 0);
  const trajectories: Trajectory[] = [];
  const runs: NqmRunSummary[] = [];
  const common = { replicas: opts.replicas, seed: opts.seed, horizon: opts.horizon, points: opts.points ?? 101, warmSecondMoment: opts.warmSecondMoment ?? false };
  jobs.forEach((j, i) => {
    const tr = simulateOptimizer(j.config, opts.problem, { ...common, label: j.label, stream: 1000 + i });
    trajectories.push(tr);
    let stationary: number | undefined;
    try {
      stationary = discreteStationaryVariance(j.config, opts.problem);
    } catch {
      stationary = undefined; // unstable step: no stationary law, the simulation shows what happens instead
    }
    runs.push({ label: j.label, kind: j.kind, config: j.config, steps: Math.round(opts.horizon / timePerStep(j.config)), finalMean: tr.mean.at(-1)!, finalVariance: tr.variance.at(-1)!, ...(stationary === undefined ? {} : { stationaryVariance: stationary }) });
    opts.onRun?.(j.label, i + 1, total);
  });
  if (opts.includeSde ?? true) {
    const tr = simulateSde(opts.config, opts.problem, { ...common, label: 'SDE (Euler–Maruyama)', stream: 999, substeps: opts.substeps ?? 16 });
    trajectories.push(tr);
    runs.push({ label: tr.label, kind: 'sde', config: opts.config, steps: tr.step.at(-1)!, finalMean: tr.mean.at(-1)!, finalVariance: tr.variance.at(-1)! });
    opts.onRun?.(tr.label, total, total);
  }
  const sdeVar = sdeStationaryVariance(opts.config, opts.problem);
  const series = (f: (t: Trajectory) => Float64Array, band: boolean): Series[] =>
    trajectories.map((t, i) => {
      const s: Series = { name: t.label, x: t.time, y: f(t), dashed: i === trajectories.length - 1 && (opts.includeSde ?? true) };
      if (band && i === 0) s.std = t.variance.map(Math.sqrt);
      return s;
    });
  const meanPlot = linePlot({ title: 'E[x] (band: ± std of the baseline)', xLabel: 'SDE time', yLabel: 'E[x]', series: series((t) => t.mean, true) });
  const varPlot = linePlot({
    title: 'Var[x]',
    xLabel: 'SDE time',
    yLabel: 'Var[x]',
    logY: true,
    legend: 'bottom-right',
    series: series((t) => t.variance, false).map((s) => ({ ...s, x: s.x, y: Float64Array.from(s.y).map((v, i) => (i === 0 ? NaN : v)) })),
    referenceLines: [{ y: sdeVar, label: `SDE stationary ${sdeVar.toPrecision(4)}` }],
  });
  const lossPlot = linePlot({ title: 'E[f(x)]', xLabel: 'SDE time', yLabel: 'E f', logY: true, series: series((t) => t.loss, false) });
  const sections: ReportSection[] = [
    {
      heading: 'Setup',
      paragraphs: [
        `Noisy quadratic f(x) = h x²/2 with h = ${opts.problem.curvature}, per-example noise s = ${opts.problem.noise}, x0 = ${opts.problem.x0}; ${opts.replicas} replicas, seed ${opts.seed}.`,
        'Every run is drawn against SDE time (k·η for SGD, k·η_eff for SGDM, k·η² for RMSprop/Adam), so runs that follow the same SDE overlay.',
      ],
      pre: stableStringify(opts.config),
    },
    { heading: 'Trajectories', svgs: [meanPlot, varPlot, lossPlot] },
    {
      heading: 'Final values',
      paragraphs: [`Closed-form stationary variance of the SDE: ${sdeVar.toPrecision(5)}. The discrete closed form is exact for SGD/SGDM and a constant-preconditioner approximation for RMSprop/Adam.`],
      table: {
        columns: ['run', 'steps', 'E[x] at end', 'Var[x] at end', 'stationary Var (discrete, closed form)', 'Var/SDE − 1'],
        rows: runs.map((r) => [r.label, r.steps, r.finalMean, r.finalVariance, r.stationaryVariance ?? '—', r.finalVariance / sdeVar - 1]),
      },
    },
  ];
  return { html: htmlReport('Noisy quadratic: scaling rules, SVAG and the SDE', sections), runs, sdeStationaryVariance: sdeVar };
}
