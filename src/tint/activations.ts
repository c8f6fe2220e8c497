/**
 * The inner model's activation functions (Hugging Face `activation_function` names) and their derivatives.
 * TinT applies them elementwise in ActivationForward and inside the finite difference of ActivationBackward;
 * the oracle also needs the exact derivative.
 */
import { LmtuneError } from '../util/errors.ts';
import { erf } from '../util/erf.ts';

export { erf };

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
