/**
 * The linear probe: L2-regularized logistic regression in float64, binary (one weight vector, sigmoid)
 * or multinomial (one vector per class, softmax), with sklearn's convention
 *
 *     minimize  ½‖W‖² + C · Σᵢ loss(xᵢ, yᵢ)
 *
 * (C is the inverse regularization strength on the SUM of losses; the intercept is not penalized, as with
 * sklearn's lbfgs solver; the reference's liblinear penalizes it like a weight). Optional
 * standardization (train mean / population std, as StandardScaler) is part of the fitted probe, so eval
 * features go through the same affine map.
 */
import { LmtuneError } from '../util/errors.ts';
import { minimizeLbfgs, type LbfgsOptions } from './lbfgs.ts';

/** n examples of d features, row-major, float64 */
export interface Dataset {
  x: Float64Array;
  n: number;
  d: number;
  /** class labels as given (any integers); the probe maps them to 0..K−1 in ascending order */
  y: Int32Array;
}

export interface ProbeOptions {
  C: number;
  standardize?: boolean;
  fitIntercept?: boolean;
  solver?: LbfgsOptions;
  /** warm start: [rows·d weights, rows intercepts] from an earlier fit of the same shape */
  init?: Float64Array;
}

export interface LinearProbe {
  /** the label values, ascending; class k of the probe is classes[k] */
  classes: number[];
  d: number;
  /** 1 (binary: the score of classes[1]) or K rows, each d weights, in standardized coordinates */
  w: Float64Array;
  b: Float64Array;
  /** standardization (identity when off) */
  mean: Float64Array;
  scale: Float64Array;
  C: number;
  converged: boolean;
  iterations: number;
}

export function classesOf(y: Int32Array, what = 'labels'): number[] {
  const classes = [...new Set(y)].sort((a, b) => a - b);
  if (classes.length < 2) {
    throw new LmtuneError('DATA', `${what}: a probe needs at least two classes; every one of the ${y.length} examples has label ${classes[0] ?? '(none)'}`, 'use more examples or a split that contains every class');
  }
  return classes;
}

/** column mean and population standard deviation (constant columns get scale 1) */
export function standardizer(x: Float64Array, n: number, d: number): { mean: Float64Array; scale: Float64Array } {
  const mean = new Float64Array(d);
  const scale = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] = mean[j]! + x[i * d + j]!;
  for (let j = 0; j < d; j++) mean[j] = mean[j]! / n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      const c = x[i * d + j]! - mean[j]!;
      scale[j] = scale[j]! + c * c;
    }
  }
  for (let j = 0; j < d; j++) {
    const s = Math.sqrt(scale[j]! / n);
    scale[j] = s > 1e-12 ? s : 1;
  }
  return { mean, scale };
}

function applyScaling(x: Float64Array, n: number, d: number, mean: Float64Array, scale: Float64Array): Float64Array {
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) out[i * d + j] = (x[i * d + j]! - mean[j]!) / scale[j]!;
  return out;
}

/**
 * The objective and its gradient over parameters θ = [W (rows·d), b (rows)], for class indices
 * `yi` in 0..K−1. Exposed so tests can check stationarity independently of the solver.
 */
export function logisticObjective(x: Float64Array, n: number, d: number, yi: Int32Array, K: number, C: number, fitIntercept = true) {
  const rows = K === 2 ? 1 : K;
  const z = new Float64Array(n * rows);
  return (theta: Float64Array, grad: Float64Array): number => {
    const w = theta.subarray(0, rows * d);
    const b = theta.subarray(rows * d);
    grad.fill(0);
    let f = 0;
    for (let k = 0; k < rows * d; k++) {
      f += 0.5 * w[k]! * w[k]!;
      grad[k] = w[k]!;
    }
    for (let i = 0; i < n; i++) {
      const xi = i * d;
      for (let r = 0; r < rows; r++) {
        let s = fitIntercept ? b[r]! : 0;
        const wr = r * d;
        for (let j = 0; j < d; j++) s += w[wr + j]! * x[xi + j]!;
        z[i * rows + r] = s;
      }
    }
    const gw = grad.subarray(0, rows * d);
    const gb = grad.subarray(rows * d);
    const resid = new Float64Array(rows);
    for (let i = 0; i < n; i++) {
      if (rows === 1) {
        // log(1 + e^{−m}) with margin m = ±z, stable for either sign
        const zi = z[i]!;
        const m = yi[i] === 1 ? zi : -zi;
        f += C * (m > 0 ? Math.log1p(Math.exp(-m)) : -m + Math.log1p(Math.exp(m)));
        const p1 = zi >= 0 ? 1 / (1 + Math.exp(-zi)) : Math.exp(zi) / (1 + Math.exp(zi));
        resid[0] = C * (p1 - (yi[i] === 1 ? 1 : 0));
      } else {
        let mx = -Infinity;
        for (let r = 0; r < rows; r++) mx = Math.max(mx, z[i * rows + r]!);
        let se = 0;
        for (let r = 0; r < rows; r++) se += Math.exp(z[i * rows + r]! - mx);
        const lse = mx + Math.log(se);
        f += C * (lse - z[i * rows + yi[i]!]!);
        for (let r = 0; r < rows; r++) resid[r] = C * (Math.exp(z[i * rows + r]! - lse) - (r === yi[i] ? 1 : 0));
      }
      const xi = i * d;
      for (let r = 0; r < rows; r++) {
        const c = resid[r]!;
        if (c === 0) continue;
        const wr = r * d;
        for (let j = 0; j < d; j++) gw[wr + j] = gw[wr + j]! + c * x[xi + j]!;
        if (fitIntercept) gb[r] = gb[r]! + c;
      }
    }
    return f;
  };
}

/** labels → class indices 0..K−1 in the order of `classes` (an unknown label is an error) */
export function classIndices(y: Int32Array, classes: readonly number[], what = 'labels'): Int32Array {
  const pos = new Map(classes.map((c, k) => [c, k] as const));
  return Int32Array.from(y, (v, i) => {
    const k = pos.get(v);
    if (k === undefined) throw new LmtuneError('DATA', `${what}: example ${i} has label ${v}, which the probe never saw in training (classes ${classes.join(', ')})`);
    return k;
  });
}

export function fitProbe(data: Dataset, opts: ProbeOptions, classes = classesOf(data.y)): LinearProbe {
  const { n, d } = data;
  if (data.x.length !== n * d) throw new LmtuneError('SHAPE', `probe data: ${data.x.length} values for ${n} × ${d} features`);
  if (!(opts.C > 0)) throw new LmtuneError('CONFIG', `probe: C must be > 0, got ${opts.C}`);
  const K = classes.length;
  const yi = classIndices(data.y, classes);
  const { mean, scale } = opts.standardize ? standardizer(data.x, n, d) : { mean: new Float64Array(d), scale: new Float64Array(d).fill(1) };
  const x = opts.standardize ? applyScaling(data.x, n, d, mean, scale) : data.x;
  const rows = K === 2 ? 1 : K;
  const fitIntercept = opts.fitIntercept ?? true;
  const init = opts.init && opts.init.length === rows * (d + 1) ? opts.init : new Float64Array(rows * (d + 1));
  const res = minimizeLbfgs(logisticObjective(x, n, d, yi, K, opts.C, fitIntercept), init, opts.solver);
  return {
    classes,
    d,
    w: res.x.slice(0, rows * d),
    b: res.x.slice(rows * d),
    mean,
    scale,
    C: opts.C,
    converged: res.converged,
    iterations: res.iterations,
  };
}

/** the probe's parameters as one vector (a warm start for the next C) */
export function probeParams(p: LinearProbe): Float64Array {
  const out = new Float64Array(p.w.length + p.b.length);
  out.set(p.w);
  out.set(p.b, p.w.length);
  return out;
}

/** decision scores [n, rows] (binary: one column, the log-odds of classes[1]) */
export function decisionScores(p: LinearProbe, x: Float64Array, n: number): Float64Array {
  const { d } = p;
  if (x.length !== n * d) throw new LmtuneError('SHAPE', `probe: ${x.length} values for ${n} examples of ${d} features (the probe was trained on ${d}-wide features)`);
  const rows = p.b.length;
  const out = new Float64Array(n * rows);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < rows; r++) {
      let s = p.b[r]!;
      for (let j = 0; j < d; j++) s += (p.w[r * d + j]! * (x[i * d + j]! - p.mean[j]!)) / p.scale[j]!;
      out[i * rows + r] = s;
    }
  }
  return out;
}

/** predicted label values */
export function predict(p: LinearProbe, x: Float64Array, n: number): Int32Array {
  const s = decisionScores(p, x, n);
  const rows = p.b.length;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (rows === 1) out[i] = p.classes[s[i]! > 0 ? 1 : 0]!;
    else {
      let best = 0;
      for (let r = 1; r < rows; r++) if (s[i * rows + r]! > s[i * rows + best]!) best = r;
      out[i] = p.classes[best]!;
    }
  }
  return out;
}

export function accuracyOf(pred: Int32Array, y: Int32Array): number {
  let c = 0;
  for (let i = 0; i < y.length; i++) if (pred[i] === y[i]) c++;
  return y.length ? c / y.length : Number.NaN;
}
