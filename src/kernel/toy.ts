/**
 * Float64 reference models with analytic Jacobians (spec §7: "a pure-TS MLP/linear reference for tests
 * 1–12"): a linear model f_c(x) = w_cᵀφ(x) + b_c and a one-hidden-layer tanh MLP. Their Jacobians feed
 * `computeKernels` through `toySource`, split into any parameter blocks.
 */
import type { JacobianSource } from './accumulate.ts';

export interface ToyModel {
  readonly classes: number;
  readonly params: number;
  /** f(x; θ) ∈ R^C */
  forward(theta: Float64Array, x: Float64Array): Float64Array;
  /** ∂f/∂θ ∈ R^{C×P}, row-major */
  jacobian(theta: Float64Array, x: Float64Array): Float64Array;
}

/** f_c(x) = Σ_j W[c, j] x_j + b_c; θ = [W (C×d), b (C)] */
export function linearModel(d: number, C: number): ToyModel {
  return {
    classes: C,
    params: C * d + C,
    forward(theta, x) {
      const f = new Float64Array(C);
      for (let c = 0; c < C; c++) {
        let s = theta[C * d + c]!;
        for (let j = 0; j < d; j++) s += theta[c * d + j]! * x[j]!;
        f[c] = s;
      }
      return f;
    },
    jacobian(_theta, x) {
      const P = C * d + C;
      const J = new Float64Array(C * P);
      for (let c = 0; c < C; c++) {
        for (let j = 0; j < d; j++) J[c * P + c * d + j] = x[j]!;
        J[c * P + C * d + c] = 1;
      }
      return J;
    },
  };
}

/** f(x) = W2 tanh(W1 x + b1) + b2; θ = [W1 (h×d), b1 (h), W2 (C×h), b2 (C)] */
export function mlpModel(d: number, h: number, C: number): ToyModel {
  const oW1 = 0;
  const ob1 = h * d;
  const oW2 = ob1 + h;
  const ob2 = oW2 + C * h;
  const P = ob2 + C;
  const hidden = (theta: Float64Array, x: Float64Array): Float64Array => {
    const a = new Float64Array(h);
    for (let k = 0; k < h; k++) {
      let z = theta[ob1 + k]!;
      for (let j = 0; j < d; j++) z += theta[oW1 + k * d + j]! * x[j]!;
      a[k] = Math.tanh(z);
    }
    return a;
  };
  return {
    classes: C,
    params: P,
    forward(theta, x) {
      const a = hidden(theta, x);
      const f = new Float64Array(C);
      for (let c = 0; c < C; c++) {
        let s = theta[ob2 + c]!;
        for (let k = 0; k < h; k++) s += theta[oW2 + c * h + k]! * a[k]!;
        f[c] = s;
      }
      return f;
    },
    jacobian(theta, x) {
      const a = hidden(theta, x);
      const J = new Float64Array(C * P);
      for (let c = 0; c < C; c++) {
        const r = c * P;
        for (let k = 0; k < h; k++) {
          const back = theta[oW2 + c * h + k]! * (1 - a[k]! * a[k]!);
          J[r + ob1 + k] = back;
          for (let j = 0; j < d; j++) J[r + oW1 + k * d + j] = back * x[j]!;
          J[r + oW2 + c * h + k] = a[k]!;
        }
        J[r + ob2 + c] = 1;
      }
      return J;
    },
  };
}

/** A `JacobianSource` over named example sets, with the flat parameter vector split into `blocks`. */
export function toySource(model: ToyModel, theta: Float64Array, sets: Record<string, readonly Float64Array[]>, blocks: readonly number[] = [model.params]): JacobianSource {
  const P = model.params;
  if (blocks.reduce((a, b) => a + b, 0) !== P) throw new Error(`blocks ${blocks.join('+')} do not sum to ${P}`);
  const offsets = blocks.map((_, i) => blocks.slice(0, i).reduce((a, b) => a + b, 0));
  const C = model.classes;
  return {
    classes: C,
    sizes: Object.fromEntries(Object.entries(sets).map(([k, v]) => [k, v.length])),
    blocks,
    jacobian(set, start, count, block) {
      const xs = sets[set]!.slice(start, start + count);
      const Pb = blocks[block]!;
      const o = offsets[block]!;
      const rows = new Float64Array(count * C * Pb);
      const f = new Float64Array(count * C);
      xs.forEach((x, e) => {
        const J = model.jacobian(theta, x);
        for (let c = 0; c < C; c++) rows.set(J.subarray(c * P + o, c * P + o + Pb), (e * C + c) * Pb);
        f.set(model.forward(theta, x), e * C);
      });
      return Promise.resolve({ rows, f });
    },
  };
}
