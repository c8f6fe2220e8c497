/**
 * Choosing C the way the reference's `LogisticRegressionCV` does: stratified k folds (sklearn's
 * StratifiedKFold without shuffling, so the split is a pure function of the label sequence), every C
 * on every fold (warm-started along ascending C), the C with the best mean fold accuracy (the smallest
 * on ties), then a refit on all training examples. MPQA/CR have no test split: there the reference
 * averages over random 90/10 splits, each with its own cross-validated C (`repeatedSplits`).
 */
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { accuracyOf, classesOf, fitProbe, predict, probeParams, type Dataset, type LinearProbe } from './probe.ts';
import type { LbfgsOptions } from './lbfgs.ts';

/**
 * The solver settings of the CLI: the reference's `max_iter=200` and a gradient tolerance that leaves
 * accuracies unchanged; the library default (1000 iterations, 1e-8) is for tests that need the optimum.
 */
export const PROBE_SOLVER = { maxIter: 200, gtol: 1e-6 } as const;

/** the reference's grid: 10^-6..10^3 below 10 000 examples, 10^-3..10^2 above */
export function defaultCs(n: number): number[] {
  const [lo, hi] = n < 10000 ? [-6, 3] : [-3, 2];
  return Array.from({ length: hi - lo + 1 }, (_, i) => Number(`1e${lo + i}`));
}

/**
 * Fold of each example (0..k−1), as sklearn's StratifiedKFold(shuffle=False): the per-fold class counts
 * come from dealing the sorted labels round-robin, and each class's examples fill folds 0, 1, ... in
 * file order.
 */
export function stratifiedFolds(y: Int32Array, k: number): Int32Array {
  // classes coded by first appearance, as sklearn encodes them before dealing
  const classes = [...new Set(y)];
  const counts = classes.map((c) => y.filter((v) => v === c).length);
  const smallest = Math.min(...counts);
  if (k < 2) throw new LmtuneError('CONFIG', `--cv must be at least 2, got ${k}`);
  if (y.length < k) throw new LmtuneError('DATA', `${k}-fold cross-validation needs at least ${k} examples, got ${y.length}`);
  if (smallest < k) {
    // sklearn only warns here; a class missing from a training fold would make a fold's probe meaningless
    throw new LmtuneError('DATA', `class ${classes[counts.indexOf(smallest)]} has only ${smallest} examples, fewer than the ${k} folds`, 'use fewer folds (--cv) or more examples');
  }
  const ci = new Map(classes.map((c, i) => [c, i] as const));
  const sorted = Int32Array.from(y, (v) => ci.get(v)!).sort();
  // allocation[f][c] = how many of class c go to fold f
  const allocation = Array.from({ length: k }, (_, f) => {
    const a = new Array<number>(classes.length).fill(0);
    for (let i = f; i < sorted.length; i += k) a[sorted[i]!]!++;
    return a;
  });
  const folds = new Int32Array(y.length);
  const next = classes.map(() => ({ fold: 0, used: 0 }));
  for (let i = 0; i < y.length; i++) {
    const c = ci.get(y[i]!)!;
    const s = next[c]!;
    while (s.used >= allocation[s.fold]![c]!) {
      s.fold++;
      s.used = 0;
    }
    folds[i] = s.fold;
    s.used++;
  }
  return folds;
}

/** rows of `data` where `keep(i)` */
export function subset(data: Dataset, idx: readonly number[]): Dataset {
  const { d } = data;
  const x = new Float64Array(idx.length * d);
  const y = new Int32Array(idx.length);
  idx.forEach((i, r) => {
    x.set(data.x.subarray(i * d, (i + 1) * d), r * d);
    y[r] = data.y[i]!;
  });
  return { x, y, n: idx.length, d };
}

export interface CvOptions {
  Cs: readonly number[];
  folds: number;
  standardize?: boolean;
  solver?: LbfgsOptions;
}

export interface CvResult {
  C: number;
  /** mean fold accuracy per C, in the order of Cs */
  scores: number[];
  probe: LinearProbe;
}

export function crossValidate(data: Dataset, opts: CvOptions, onFold?: (done: number, total: number) => void): CvResult {
  if (opts.Cs.length === 0) throw new LmtuneError('CONFIG', '--cs: no values');
  for (const c of opts.Cs) if (!(c > 0) || !Number.isFinite(c)) throw new LmtuneError('CONFIG', `--cs: every C must be a positive number, got ${c}`);
  const classes = classesOf(data.y, 'training features');
  const order = [...opts.Cs.keys()].sort((a, b) => opts.Cs[a]! - opts.Cs[b]!);
  const folds = stratifiedFolds(data.y, opts.folds);
  const scores = new Array<number>(opts.Cs.length).fill(0);
  const solverOpts = { ...(opts.standardize !== undefined ? { standardize: opts.standardize } : {}), ...(opts.solver ? { solver: opts.solver } : {}) };
  for (let f = 0; f < opts.folds; f++) {
    const trainIdx: number[] = [];
    const testIdx: number[] = [];
    for (let i = 0; i < data.n; i++) (folds[i] === f ? testIdx : trainIdx).push(i);
    const tr = subset(data, trainIdx);
    const te = subset(data, testIdx);
    let init: Float64Array | undefined;
    for (const ci of order) {
      // every training fold holds every class (stratifiedFolds checked the counts)
      const p = fitProbe(tr, { C: opts.Cs[ci]!, ...solverOpts, ...(init ? { init } : {}) }, classes);
      init = probeParams(p);
      scores[ci] = scores[ci]! + accuracyOf(predict(p, te.x, te.n), te.y) / opts.folds;
    }
    onFold?.(f + 1, opts.folds);
  }
  let best = 0;
  for (let i = 1; i < scores.length; i++) {
    const better = scores[i]! > scores[best]! || (scores[i] === scores[best] && opts.Cs[i]! < opts.Cs[best]!);
    if (better) best = i;
  }
  const C = opts.Cs[best]!;
  return { C, scores, probe: fitProbe(data, { C, ...solverOpts }, classes) };
}

export interface ProbeScore {
  metric: 'accuracy';
  value: number;
  n: number;
  C: number;
}

/** cross-validate on train, score on eval */
export function trainAndEvaluate(train: Dataset, evalSet: Dataset, opts: CvOptions): ProbeScore & { scores: number[] } {
  if (train.d !== evalSet.d) throw new LmtuneError('SHAPE', `the training features are ${train.d} wide but the eval features are ${evalSet.d} wide`, 'extract both with the same --kind, --words and --proj-dim');
  const cv = crossValidate(train, opts);
  return { metric: 'accuracy', value: accuracyOf(predict(cv.probe, evalSet.x, evalSet.n), evalSet.y), n: evalSet.n, C: cv.C, scores: cv.scores };
}

/** the MPQA/CR protocol: mean eval accuracy over `splits` random splits holding out `testFraction` */
export function repeatedSplits(data: Dataset, opts: CvOptions & { splits: number; testFraction: number; seed: number }): { metric: 'accuracy'; value: number; std: number; n: number; Cs: number[]; values: number[] } {
  if (!(opts.testFraction > 0 && opts.testFraction < 1)) throw new LmtuneError('CONFIG', `the held-out fraction must be in (0, 1), got ${opts.testFraction}`);
  const nTest = Math.max(1, Math.round(data.n * opts.testFraction));
  const values: number[] = [];
  const Cs: number[] = [];
  for (let s = 0; s < opts.splits; s++) {
    const perm = new Rng(opts.seed).fork(`split-${s}`).permutation(data.n);
    const r = trainAndEvaluate(subset(data, perm.slice(nTest)), subset(data, perm.slice(0, nTest)), opts);
    values.push(r.value);
    Cs.push(r.C);
  }
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  return { metric: 'accuracy', value: mean, std, n: nTest, Cs, values };
}
