/** θ += scale·z over a whole parameter list, in place, tile by tile (no full-size z is ever allocated). */
import { LocalPassRunner } from './mezo.ts';
import type { ParamList } from './types.ts';
import type { ZDistribution } from './zstream.ts';

const runner = new LocalPassRunner();

/**
 * θ_p[i] ← ⌊θ_p[i] + scale·z(seed, p, i)⌉ for every parameter p (its index in `params`) and element i,
 * the same operation as MeZO's perturbation passes.
 */
export function perturb(params: ParamList, seed: number, scale: number, dist: ZDistribution = 'gaussian'): void {
  void runner.run({ kind: 'add', seed, dist, scale }, { xs: params.map((p) => p.data), wds: params.map(() => 0), slots: params.map(() => []) });
}
