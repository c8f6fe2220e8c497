/**
 * Hyperparameter selection as the reference's tools/gather_result.py does it: per data seed, the setting
 * with the best dev score (the first one on ties), then the test scores of those settings summarized as
 * mean and population standard deviation (np.std, ddof = 0) over seeds.
 */
import { LmtuneError } from '../util/errors.ts';
import { solve, type KernelProblem, type SolverName, type SolverOptions, type SolveResult } from './solvers.ts';

/** The solver's grid. The reference does not publish its grid; these follow the third-party script in spec A2. */
export function defaultGrid(solver: SolverName): SolverOptions[] {
  const regs = [0, 1e-3, 1e-2, 0.1, 1];
  const f0s = [10, 100, 1e3, 1e4, Infinity];
  const out: SolverOptions[] = [];
  switch (solver) {
    case 'lstsq':
    case 'svr':
      for (const reg of regs) for (const f0Scaling of f0s) out.push({ reg, f0Scaling });
      break;
    case 'logistic':
    case 'svc':
      for (const reg of regs) out.push({ reg });
      break;
    case 'asym':
      for (const reg of regs) for (const gamma of [0.1, 1, 10]) for (const lambda of [0, 0.5, 1]) for (const f0Scaling of [10, 1e3, Infinity]) out.push({ reg, gamma, lambda, f0Scaling });
      break;
  }
  return out;
}

export interface GridResult {
  best: SolverOptions;
  dev: SolveResult;
  test: SolveResult;
  /** settings that failed (e.g. a singular system without a ridge) are skipped */
  tried: number;
  skipped: number;
}

/** Fit every setting, score it on dev, and report the best one's test result. */
export function gridSearch(solver: SolverName, dev: KernelProblem, test: KernelProblem, grid: readonly SolverOptions[] = defaultGrid(solver)): GridResult {
  let best: { o: SolverOptions; dev: SolveResult } | null = null;
  let skipped = 0;
  for (const o of grid) {
    let r: SolveResult;
    try {
      r = solve(solver, dev, o);
    } catch (e) {
      if (e instanceof LmtuneError && (e.code === 'NUMERIC' || e.code === 'CONFIG')) {
        skipped++;
        continue;
      }
      throw e;
    }
    if (!best || r.value > best.dev.value) best = { o, dev: r };
  }
  if (!best) throw new LmtuneError('NUMERIC', `no setting of the ${solver} grid could be fitted (${grid.length} tried)`, 'add a ridge to the grid');
  return { best: best.o, dev: best.dev, test: solve(solver, test, best.o), tried: grid.length, skipped };
}

export interface SeedRun {
  seed: number;
  dev: number;
  test: number;
}

/** Per seed, the run with the best dev score (first on ties); mean and population std of their test scores. */
export function aggregateBySeed(runs: readonly SeedRun[]): { perSeed: SeedRun[]; mean: number; std: number } {
  const bySeed = new Map<number, SeedRun>();
  for (const r of runs) {
    const cur = bySeed.get(r.seed);
    if (!cur || r.dev > cur.dev) bySeed.set(r.seed, r);
  }
  const perSeed = [...bySeed.values()];
  if (perSeed.length === 0) throw new LmtuneError('DATA', 'no runs to aggregate');
  const xs = perSeed.map((r) => r.test);
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
  return { perSeed, mean, std };
}
