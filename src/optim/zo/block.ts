/**
 * Block-wise ZO estimate (ZO-Bench: Zhang et al. 2024, arXiv 2402.11592, §5 "block-wise ZO"): the
 * trainable tensors are grouped into blocks by their layer index (the first ".<n>." in the name; tensors
 * without one form one more block), and each block gets its own two-point estimate at the same θ with
 * its own direction z_b (seed spsaSampleSeed(seed, b)) while the other blocks stay put. 2B forward
 * passes a step; ĝ = Σ_b g_b·z_b is unbiased and of lower variance than one full-model z. No state.
 *
 *   for b: θ_b ← ⌊θ_b + εz_b⌉; l₊; θ_b ← ⌊θ_b − 2εz_b⌉; l₋; θ_b ← ⌊θ_b + εz_b⌉; g_b = (l₊ − l₋)/(2ε)
 *   then θ_b ← ⌊θ_b − lr·g_b·z_b⌉ for every b             record: [g_0 … g_{B−1}]   logged loss: mean l₊
 * z_b of tensor p is z(seed_b, p, ·): tensor p keeps its stream index.
 */
import type { ParamList } from '../types.ts';
import { spsaSampleSeed } from '../zstream.ts';
import { TapedMethod, type ZoSettings } from './method.ts';
import type { Tape } from './tape.ts';
import { addZ } from './tiles.ts';

/** block index of each tensor: tensors sharing the first ".<n>." (or having none) share a block */
export function layerBlocks(names: readonly string[]): number[] {
  const ids = new Map<string, number>();
  return names.map((n) => {
    const key = /(?:^|\.)(\d+)\./.exec(n)?.[1] ?? '';
    if (!ids.has(key)) ids.set(key, ids.size);
    return ids.get(key)!;
  });
}

export class BlockMethod extends TapedMethod {
  readonly name = 'block';
  readonly blockOf: number[];
  readonly blocks: number;

  constructor(params: ParamList, s: ZoSettings) {
    super(params, s);
    this.blockOf = layerBlocks(params.map((p) => p.name));
    this.blocks = Math.max(0, ...this.blockOf) + 1;
  }

  config(): Record<string, unknown> {
    return { method: this.name, eps: this.s.eps, distribution: this.s.distribution, blocks: this.blockOf };
  }
  passesPerStep(): number {
    return 2 * this.blocks;
  }

  protected async run(tape: Tape, seed: number, lr: number): Promise<number> {
    const { eps, distribution: dist } = this.s;
    const gs: number[] = [];
    let sum = 0;
    for (let b = 0; b < this.blocks; b++) {
      const sb = spsaSampleSeed(seed, b);
      const only = (p: number): boolean => this.blockOf[p] === b;
      addZ(this.xs, sb, dist, eps, only);
      const lp = await tape.loss();
      addZ(this.xs, sb, dist, -2 * eps, only);
      const lm = await tape.loss();
      addZ(this.xs, sb, dist, eps, only);
      gs.push(tape.keep((lp - lm) / (2 * eps)));
      sum += lp;
    }
    for (let b = 0; b < this.blocks; b++) addZ(this.xs, spsaSampleSeed(seed, b), dist, -lr * gs[b]!, (p) => this.blockOf[p] === b);
    return sum / this.blocks;
  }
}
