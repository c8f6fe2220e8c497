/**
 * LESS matching (reference: matching.py): the score of pool row n is
 *
 *   S[n, m] = Σ_i w_i · ⟨G_i[n], V_i[m]⟩          G_i, V_i: normalized pool / target features at checkpoint i
 *   score[n] = max over subtasks s of mean_{m ∈ s} S[n, m]      ('max-subtask-mean', the reference's default)
 *            | mean_m S[n, m]                                  ('mean')
 *            | max over s of Σ_i w_i · cos(G_i[n], V̄_i,s)      ('cos-with-mean-grad': the paper's reading,
 *                                                               V̄_i,s the mean target feature of subtask s)
 *
 * The first two are linear in the target rows, so mean_{m ∈ s} ⟨G, V_m⟩ = ⟨G, V̄_s⟩: the streaming matcher
 * (scan.ts) scores each pool row against one mean vector per (checkpoint, subtask) instead of every
 * target row, which is what makes 10⁶ × 8192 pool features cheap. `Matcher` below computes the formulas
 * literally (every target row, float64) and is the reference the streaming path is tested against.
 *
 * with w_i the average learning rate of warmup epoch i, rescaled to sum 1. The weighted sum comes
 * before the aggregation, as in the reference (the max does not commute with the sum).
 *
 * Unlike the reference, subtasks are groups by the `subtask` value, not contiguous equal-sized blocks of
 * the target file: rows may come in any order and groups may differ in size.
 */
import { LmtuneError } from '../util/errors.ts';
import { lrAt, type Schedule } from '../optim/schedule.ts';

export type Aggregate = 'max-subtask-mean' | 'mean' | 'cos-with-mean-grad';

export const AGGREGATES = ['max-subtask-mean', 'mean', 'cos-with-mean-grad'] as const satisfies readonly Aggregate[];

/** checkpoint weights rescaled to sum 1 */
export function checkpointWeights(lrs: readonly number[]): number[] {
  if (lrs.length === 0) throw new LmtuneError('CONFIG', 'matching needs at least one checkpoint');
  for (const [i, x] of lrs.entries()) if (!(Number.isFinite(x) && x >= 0)) throw new LmtuneError('CONFIG', `checkpoint ${i}: learning-rate weight ${x} is not a finite number >= 0`);
  const s = lrs.reduce((a, b) => a + b, 0);
  if (!(s > 0)) throw new LmtuneError('CONFIG', 'the checkpoint learning-rate weights sum to 0', 'a warmup whose every epoch had lr 0 carries no information; use a schedule with lr > 0');
  return lrs.map((x) => x / s);
}

/**
 * The average learning rate of each epoch as the reference's README weights were measured: the mean of
 * the learning rate Hugging Face logs after each of the epoch's updates (the scheduler has stepped, so
 * update k, 0-based, logs lrAt(k + 1)). With 420 updates, 13 warmup steps and four epochs of 105 this
 * reproduces the README's 1.6877e-5, 1.2859e-5, 7.7030e-6, 2.5616e-6 within 0.25%; the lr that each
 * update actually used (lrAt(k)) is off by 1% in the first epoch.
 * `ends` are cumulative update counts at each checkpoint.
 */
export function epochAverageLr(s: Schedule, ends: readonly number[]): number[] {
  const out: number[] = [];
  let start = 0;
  for (const end of ends) {
    if (!(Number.isInteger(end) && end > start)) throw new LmtuneError('CONFIG', `epoch boundaries must increase: ${ends.join(', ')}`);
    let sum = 0;
    for (let t = start; t < end; t++) sum += lrAt(s, t + 1);
    out.push(sum / (end - start));
    start = end;
  }
  return out;
}

/** target rows grouped by subtask, groups in order of first appearance */
export interface SubtaskGroups {
  names: string[];
  /** group of each target row */
  of: Int32Array;
  sizes: Int32Array;
}

/**
 * Groups target rows by their `subtask` (or, with `field` 'label', their label: `--group-by label`). Rows
 * without a subtask form a single group when none has one (a task without subtasks, n_sub = 1 in the
 * reference); a mix is an error naming the first row that lacks it. Grouping by label needs every label.
 */
export function subtaskGroups(subtasks: readonly (string | undefined)[], where: readonly string[], aggregate: Aggregate, field: 'subtask' | 'label' = 'subtask'): SubtaskGroups {
  const M = subtasks.length;
  if (M === 0) throw new LmtuneError('DATA', 'the target set is empty');
  const of = new Int32Array(M);
  if (aggregate === 'mean' || (field === 'subtask' && subtasks.every((s) => s === undefined))) return { names: ['all'], of, sizes: Int32Array.of(M) };
  const names: string[] = [];
  const id = new Map<string, number>();
  subtasks.forEach((s, m) => {
    if (s === undefined || s === '') {
      if (field === 'label') throw new LmtuneError('DATA', `${where[m] ?? `target row ${m}`}: no "label" to group the target rows by (--group-by label)`, 'give every target row a "label", or group by subtask');
      throw new LmtuneError('DATA', `${where[m] ?? `target row ${m}`}: no "subtask", while other target rows have one`, 'give every target row a "subtask", or none (one group), or use --aggregate mean');
    }
    let g = id.get(s);
    if (g === undefined) {
      g = names.length;
      id.set(s, g);
      names.push(s);
    }
    of[m] = g;
  });
  const sizes = new Int32Array(names.length);
  for (const g of of) sizes[g]!++;
  return { names, of, sizes };
}

/** Target features per checkpoint and the weights; scores pool rows block by block. */
export class Matcher {
  readonly weights: number[];
  constructor(
    /** V_i: [M, dim] per checkpoint, row-major */
    readonly targets: readonly Float32Array[],
    readonly rows: number,
    readonly dim: number,
    lrs: readonly number[],
    readonly groups: SubtaskGroups,
  ) {
    if (targets.length !== lrs.length) throw new LmtuneError('CONFIG', `${targets.length} target feature sets but ${lrs.length} checkpoint weights`);
    for (const t of targets) if (t.length !== rows * dim) throw new LmtuneError('SHAPE', `target features have ${t.length} values, expected ${rows}×${dim}`);
    if (groups.of.length !== rows) throw new LmtuneError('SHAPE', `${groups.of.length} subtask labels for ${rows} target rows`);
    this.weights = checkpointWeights(lrs);
  }

  /**
   * Scores of n pool rows whose features at checkpoint i are pool[i] ([n, dim], row-major): the weighted
   * similarity matrix [n, M] in float64, then the aggregation.
   */
  score(pool: readonly (Float32Array | Float64Array)[], n: number, agg: Aggregate = 'max-subtask-mean'): Float64Array {
    if (agg === 'cos-with-mean-grad') return this.cosWithMean(pool, n);
    const { dim, rows: M, groups } = this;
    const S = new Float64Array(n * M);
    pool.forEach((G, i) => {
      if (G.length < n * dim) throw new LmtuneError('SHAPE', `pool features at checkpoint ${i} have ${G.length} values, expected ${n}×${dim}`);
      const V = this.targets[i]!;
      const w = this.weights[i]!;
      for (let r = 0; r < n; r++) {
        const go = r * dim;
        for (let m = 0; m < M; m++) {
          const vo = m * dim;
          let a0 = 0;
          let a1 = 0;
          let a2 = 0;
          let a3 = 0;
          let k = 0;
          for (; k + 3 < dim; k += 4) {
            a0 += G[go + k]! * V[vo + k]!;
            a1 += G[go + k + 1]! * V[vo + k + 1]!;
            a2 += G[go + k + 2]! * V[vo + k + 2]!;
            a3 += G[go + k + 3]! * V[vo + k + 3]!;
          }
          for (; k < dim; k++) a0 += G[go + k]! * V[vo + k]!;
          S[r * M + m] += w * (a0 + a1 + (a2 + a3));
        }
      }
    });
    return aggregate(S, n, M, groups);
  }

  /** the mean target feature of each subtask at checkpoint i: [groups, dim], float64 */
  means(i: number): Float64Array {
    return subtaskMeans(this.targets[i]!, this.rows, this.dim, this.groups);
  }

  /** max over subtasks s of Σ_i w_i cos(G_i[r], V̄_i,s), a cosine with a zero vector counting 0 */
  private cosWithMean(pool: readonly (Float32Array | Float64Array)[], n: number): Float64Array {
    const { dim, groups } = this;
    const K = groups.sizes.length;
    const X = new Float64Array(n * K);
    pool.forEach((G, i) => {
      const mu = this.means(i);
      const w = this.weights[i]!;
      for (let s = 0; s < K; s++) {
        let nv = 0;
        for (let k = 0; k < dim; k++) nv += mu[s * dim + k]! ** 2;
        for (let r = 0; r < n; r++) {
          let dot = 0;
          let ng = 0;
          for (let k = 0; k < dim; k++) {
            dot += G[r * dim + k]! * mu[s * dim + k]!;
            ng += G[r * dim + k]! ** 2;
          }
          if (ng > 0 && nv > 0) X[r * K + s] += (w * dot) / Math.sqrt(ng * nv);
        }
      }
    });
    const out = new Float64Array(n);
    for (let r = 0; r < n; r++) {
      let best = -Infinity;
      for (let s = 0; s < K; s++) best = Math.max(best, X[r * K + s]!);
      out[r] = best;
    }
    return out;
  }
}

/** the mean of each group's rows of V ([rows, dim]): [groups, dim] in float64 */
export function subtaskMeans(V: Float32Array | Float64Array, rows: number, dim: number, groups: SubtaskGroups): Float64Array {
  const K = groups.sizes.length;
  const mu = new Float64Array(K * dim);
  for (let m = 0; m < rows; m++) {
    const g = groups.of[m]!;
    for (let k = 0; k < dim; k++) mu[g * dim + k] += V[m * dim + k]!;
  }
  for (let g = 0; g < K; g++) for (let k = 0; k < dim; k++) mu[g * dim + k] /= groups.sizes[g]!;
  return mu;
}

/** max over groups of the group mean, per row of S [n, M] */
export function aggregate(S: Float64Array, n: number, M: number, groups: SubtaskGroups): Float64Array {
  const G = groups.sizes.length;
  const out = new Float64Array(n);
  const sums = new Float64Array(G);
  for (let r = 0; r < n; r++) {
    sums.fill(0);
    for (let m = 0; m < M; m++) sums[groups.of[m]!] += S[r * M + m]!;
    let best = -Infinity;
    for (let g = 0; g < G; g++) best = Math.max(best, sums[g]! / groups.sizes[g]!);
    out[r] = best;
  }
  return out;
}
