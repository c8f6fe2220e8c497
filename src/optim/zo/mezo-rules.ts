/**
 * The MeZO update rules already in src/optim/mezo.ts, wrapped (not rewritten) as registry methods:
 * ZO-SGD (Malladi et al. 2023, arXiv 2305.17333, Algorithm 1), ZO-SGD with momentum (ZO-SGD-MMT) and
 * ZO-Adam (both in ZO-Bench: Zhang et al. 2024, arXiv 2402.11592, §3). n-SPSA with `samples` > 1.
 * The record's values are the projected gradients g_j; sample j's seed is spsaSampleSeed(seed, j).
 */
import { LmtuneError } from '../../util/errors.ts';
import { MezoOptimizer, type MezoRule } from '../mezo.ts';
import type { ZoRule } from '../options.ts';
import type { ParamList } from '../types.ts';
import { spsaSampleSeed } from '../zstream.ts';
import type { ZoMethod, ZoRecord, ZoSettings, ZoStepResult } from './method.ts';

export class MezoRuleMethod implements ZoMethod {
  readonly opt: MezoOptimizer;

  constructor(
    readonly name: ZoRule,
    readonly params: ParamList,
    private readonly s: ZoSettings,
  ) {
    const rule: MezoRule = name === 'sgd' ? { kind: 'sgd' } : name === 'momentum' ? { kind: 'momentum', beta: s.momentum } : { kind: 'adam', beta1: s.beta1, beta2: s.beta2, eps: s.adamEps };
    this.opt = new MezoOptimizer(params, { eps: s.eps, weightDecay: s.weightDecay, ...(s.decayFilter ? { decayFilter: s.decayFilter } : {}), distribution: s.distribution, nSpsa: s.samples, rule });
  }

  config(): Record<string, unknown> {
    return { method: this.name, ...this.opt.config() };
  }
  stateBytes(): number {
    return this.opt.stateBytes();
  }
  passesPerStep(): number {
    return 2 * this.s.samples;
  }

  async step(seed: number, lossAt: () => Promise<number>, lr: number): Promise<ZoStepResult> {
    const r = await this.opt.step(seed, lossAt, lr);
    return { loss: r.lossPlus, forwardPasses: 2 * r.samples.length, record: { seed, lr, values: r.samples.map((x) => x.projectedGrad) } };
  }

  async replay(r: ZoRecord): Promise<void> {
    if (r.values.length !== this.s.samples) throw new LmtuneError('CHECKPOINT', `${this.name} replay: a step holds ${r.values.length} projected gradients, the method draws ${this.s.samples}`);
    await this.opt.replay({ seeds: r.values.map((_, j) => spsaSampleSeed(r.seed, j)), grads: r.values, lr: r.lr, eps: this.s.eps, weightDecay: this.s.weightDecay, distribution: this.s.distribution });
  }

  stateTensors(): Map<string, Float32Array> {
    return this.opt.stateTensors();
  }
  stateScalars(): Record<string, number> {
    return this.opt.stateScalars();
  }
  loadState(t: ReadonlyMap<string, Float32Array>, s: Readonly<Record<string, number>>): void {
    this.opt.loadState(t, s);
  }
}
