/** Gradient clipping by global norm, torch.nn.utils.clip_grad_norm_ semantics (norm_type 2). */
import { LmtuneError } from '../util/errors.ts';
import type { GradMap } from './types.ts';

/** sqrt(Σ over all tensors and elements of g²), accumulated in float64 in map order. */
export function globalGradNorm(grads: GradMap): number {
  let s = 0;
  for (const g of grads.values()) {
    for (let i = 0; i < g.length; i++) {
      const v = g[i]!;
      s += v * v;
    }
  }
  return Math.sqrt(s);
}

export interface ClipOptions {
  /** Throw on a NaN/Inf norm (default true); otherwise return it and leave the gradients alone. */
  errorIfNonfinite?: boolean;
}

/**
 * Scales every gradient in place by maxNorm/(norm + 1e-6) when that factor is below 1 (torch's exact rule)
 * and returns the norm measured before clipping.
 */
export function clipGradNorm(grads: GradMap, maxNorm: number, opts: ClipOptions = {}): number {
  if (!(maxNorm > 0)) throw new LmtuneError('CONFIG', `gradient clipping: max norm must be > 0, got ${maxNorm}`);
  const norm = globalGradNorm(grads);
  if (!Number.isFinite(norm)) {
    if (opts.errorIfNonfinite ?? true) {
      let bad = '?';
      for (const [name, g] of grads) {
        if (g.some((v) => !Number.isFinite(v))) {
          bad = name;
          break;
        }
      }
      throw new LmtuneError('NUMERIC', `gradient norm is ${norm} (first non-finite gradient: "${bad}")`, 'lower the learning rate or check the loss for overflow');
    }
    return norm;
  }
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const g of grads.values()) {
      for (let i = 0; i < g.length; i++) g[i] = g[i]! * coef;
    }
  }
  return norm;
}
