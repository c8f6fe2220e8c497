/**
 * The inner model's activation functions (Hugging Face `activation_function` names) and their derivatives.
 * TinT applies them elementwise in ActivationForward and inside the finite difference of ActivationBackward;
 * the oracle also needs the exact derivative.
 */
import { LmtuneError } from '../util/errors.ts';

export type ActivationName = 'relu' | 'gelu' | 'gelu_new';

export interface ActivationFn {
  readonly name: ActivationName;
  f(x: number): number;
  /** exact derivative (ReLU: 0 at 0, as torch) */
  df(x: number): number;
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2 = 1 / Math.SQRT2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * erf to ~1e-15 relative accuracy: erf(x) = 2x/√π · e^{-x²} · Σ_n (2x²)^n / (1·3·…·(2n+1)). Every term is
 * positive, so there is no cancellation; beyond |x| = 6 erf is ±1 in float64.
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  const x2 = 2 * ax * ax;
  let term = 1;
  let sum = 1;
  for (let n = 1; n < 400; n++) {
    term *= x2 / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const v = ((2 * ax) / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
  return Math.sign(x) * Math.min(1, v);
}

const RELU: ActivationFn = {
  name: 'relu',
  f: (x) => (x > 0 ? x : 0),
  df: (x) => (x > 0 ? 1 : 0),
};

const GELU: ActivationFn = {
  name: 'gelu',
  f: (x) => 0.5 * x * (1 + erf(x * INV_SQRT_2)),
  df: (x) => 0.5 * (1 + erf(x * INV_SQRT_2)) + x * Math.exp(-0.5 * x * x) * INV_SQRT_2PI,
};

const GELU_NEW: ActivationFn = {
  name: 'gelu_new',
  f: (x) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))),
  df: (x) => {
    const t = Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
  },
};

/** Maps a Hugging Face activation name to ours; `source` names the config file for the error message. */
export function activationByName(name: string, source = 'config'): ActivationFn {
  switch (name) {
    case 'relu':
      return RELU;
    case 'gelu':
      return GELU;
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
      return GELU_NEW;
    default:
      throw new LmtuneError(
        'UNSUPPORTED',
        `${source}: activation_function "${name}" is not supported by TinT`,
        'supported: relu (OPT), gelu, gelu_new / gelu_pytorch_tanh (GPT-2)',
      );
  }
}
