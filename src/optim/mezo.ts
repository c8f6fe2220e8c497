/**
 * MeZO (Malladi et al. 2023, arXiv 2305.17333): zeroth-order SGD that perturbs the weights in place by
 * ±εz, z regenerated from a seed, so it needs no gradients and no stored z: the memory of inference.
 *
 * One step with seed s (n = 1, see mezo-kernels.ts for the exact float operations):
 *   θ ← θ + εz;  l₊ = L(θ)            pass 1
 *   θ ← θ − 2εz; l₋ = L(θ)            pass 2
 *   g = (l₊ − l₋)/(2ε)                the projected gradient, one float64
 *   θ ← θ + εz, then θ ← θ − lr·(g·z + wd·θ)   pass 3: the restore and the update fused (z generated once)
 * so z is generated 3 times per step (the reference generates it 4 times). The restore is NOT exact in
 * float32: θ + εz − 2εz + εz differs from θ by the rounding of the three adds (see docs/optim.md); the
 * trajectory replay re-does those roundings, which is why it is bit-exact.
 *
 * Variants: n-SPSA (n perturbations per step at the same θ and batch, g_j averaged into the update:
 * θ ← θ − lr·(Σ_j (g_j/n)·z_j + wd·θ), z_j from spsaSampleSeed(s, j)); ZO momentum and ZO-Adam, which feed
 * ĝ = Σ_j (g_j/n)·z_j to the SGDM / Adam update and so keep 1× / 2× the trainable parameters as state.
 * A non-differentiable objective is just a `lossAt` returning e.g. −accuracy.
 */
import { LmtuneError } from '../util/errors.ts';
import { checkAdamCoefs, type AdamCoefs, type EpsMode, type WeightDecayMode } from './adam.ts';
import { decayAllButBiasAndNorm } from './decay.ts';
import { partition, runPass, Scratch, type PassContext, type PassOp, type RuleOp } from './mezo-kernels.ts';
import { checkMomentumCoefs, momentumSlot, type MomentumCoefs, type MomentumForm } from './sgd-momentum.ts';
import { NamedState } from './state.ts';
import { checkFiniteLr, type DecayFilter, type ParamList } from './types.ts';
import { spsaSampleSeed, type ZDistribution } from './zstream.ts';

export type MezoRule =
  | { kind: 'sgd' }
  | { kind: 'momentum'; beta: number; form?: MomentumForm; dampening?: number; nesterov?: boolean }
  | { kind: 'adam'; beta1?: number; beta2?: number; eps?: number; epsMode?: EpsMode; weightDecayMode?: WeightDecayMode };

export interface MezoOptions {
  /** perturbation size ε (reference default 1e-3) */
  eps: number;
  weightDecay?: number;
  /** true = decay this parameter; default: all but biases and norms (decay.ts) */
  decayFilter?: DecayFilter;
  distribution?: ZDistribution;
  /** perturbations per step (n-SPSA), default 1 */
  nSpsa?: number;
  /** how ĝ updates θ: plain ZO-SGD (default, no state), ZO momentum (1× params state), ZO-Adam (2×) */
  rule?: MezoRule;
}

export interface MezoSample {
  seed: number;
  projectedGrad: number;
  lossPlus: number;
  lossMinus: number;
}

/**
 * Data-parallel MeZO: this process's samples (on its share of the batch) → the whole batch's, same
 * seeds in the same order. Every replica must get the same numbers back (bit for bit) to stay identical.
 */
export type MezoCombine = (samples: readonly MezoSample[]) => Promise<MezoSample[]>;

export interface MezoStepResult {
  /** mean of the samples' projected gradients */
  projectedGrad: number;
  /** mean loss at θ + εz_j (what the reference logs as the training loss) */
  lossPlus: number;
  lossMinus: number;
  samples: MezoSample[];
}

/** One logged step: enough to redo the update without evaluating any loss. */
export interface MezoUpdate {
  seeds: readonly number[];
  grads: readonly number[];
  lr: number;
  eps: number;
  weightDecay: number;
  distribution: ZDistribution;
}

/**
 * Runs a pass over all parameters, tile by tile, in this thread. (A worker-thread runner that split the
 * tiles over threads was measured slower than this on the 2-core machine and removed: docs/optim.md.)
 */
export class LocalPassRunner {
  private readonly scratch = new Scratch();
  run(op: PassOp, ctx: PassContext): Promise<void> {
    runPass(op, ctx, partition(ctx.xs.map((x) => x.length), 1)[0]!, this.scratch);
    return Promise.resolve();
  }
}

/** The optimizer's settings as plain JSON (the trajectory header stores them). */
export interface MezoConfig {
  eps: number;
  weightDecay: number;
  distribution: ZDistribution;
  nSpsa: number;
  rule: MezoRule;
  /** names of the parameters exempt from weight decay */
  noDecay: string[];
}

function ruleOp(rule: MezoRule): { op: RuleOp; slots: string[] } {
  if (rule.kind === 'sgd') return { op: { kind: 'sgd' }, slots: [] };
  if (rule.kind === 'momentum') {
    const coefs: MomentumCoefs = { form: rule.form ?? 'pytorch', beta: rule.beta, dampening: rule.dampening ?? 0, nesterov: rule.nesterov ?? false };
    checkMomentumCoefs(coefs, 'mezo momentum');
    return { op: { kind: 'momentum', coefs }, slots: [momentumSlot(coefs.form)] };
  }
  if (rule.kind === 'adam') {
    const coefs: AdamCoefs = { beta1: rule.beta1 ?? 0.9, beta2: rule.beta2 ?? 0.999, eps: rule.eps ?? 1e-8, epsInside: (rule.epsMode ?? 'outside') === 'inside' };
    checkAdamCoefs(coefs, 'mezo adam');
    return { op: { kind: 'adam', coefs, decoupled: (rule.weightDecayMode ?? 'decoupled') === 'decoupled' }, slots: ['exp_avg', 'exp_avg_sq'] };
  }
  throw new LmtuneError('CONFIG', `unknown MeZO update rule "${(rule as { kind: string }).kind}" (expected sgd, momentum or adam)`);
}

export class MezoOptimizer {
  readonly params: ParamList;
  readonly eps: number;
  readonly weightDecay: number;
  readonly distribution: ZDistribution;
  readonly nSpsa: number;
  readonly rule: MezoRule;
  private readonly decays: boolean[];
  private readonly ruleOp: RuleOp;
  private readonly state: NamedState;
  private readonly runner = new LocalPassRunner();

  constructor(params: ParamList, opts: MezoOptions) {
    this.params = params;
    this.eps = opts.eps;
    this.weightDecay = opts.weightDecay ?? 0;
    this.distribution = opts.distribution ?? 'gaussian';
    this.nSpsa = opts.nSpsa ?? 1;
    this.rule = opts.rule ?? { kind: 'sgd' };
    if (!(this.eps > 0 && Number.isFinite(this.eps))) throw new LmtuneError('CONFIG', `mezo: eps must be a finite number > 0, got ${this.eps}`, 'the reference uses 1e-3 (full), 1e-2 (LoRA), 1e-1 (prefix)');
    if (!(this.weightDecay >= 0)) throw new LmtuneError('CONFIG', `mezo: weight decay must be >= 0, got ${this.weightDecay}`);
    if (!Number.isInteger(this.nSpsa) || this.nSpsa < 1) throw new LmtuneError('CONFIG', `mezo: nSpsa must be an integer >= 1, got ${this.nSpsa}`);
    if (this.distribution !== 'gaussian' && this.distribution !== 'rademacher') {
      throw new LmtuneError('CONFIG', `mezo: distribution must be gaussian or rademacher, got "${String(this.distribution)}"`);
    }
    const names = new Set<string>();
    for (const p of params) {
      if (names.has(p.name)) throw new LmtuneError('CONFIG', `mezo: parameter "${p.name}" appears twice in the trainable list`);
      names.add(p.name);
    }
    const decays = opts.decayFilter ?? decayAllButBiasAndNorm;
    this.decays = params.map((p) => decays(p.name));
    const { op, slots } = ruleOp(this.rule);
    this.ruleOp = op;
    this.state = new NamedState(`mezo-${this.rule.kind}`, slots);
  }

  config(): MezoConfig {
    return {
      eps: this.eps,
      weightDecay: this.weightDecay,
      distribution: this.distribution,
      nSpsa: this.nSpsa,
      rule: this.rule,
      noDecay: this.params.filter((_, i) => !this.decays[i]).map((p) => p.name),
    };
  }

  /** Extra memory beyond the parameters, in bytes (the state of momentum / Adam; 0 for ZO-SGD). */
  stateBytes(): number {
    const perParam = this.ruleOp.kind === 'sgd' ? 0 : this.ruleOp.kind === 'momentum' ? 1 : 2;
    return 4 * perParam * this.params.reduce((s, p) => s + p.data.length, 0);
  }

  private context(weightDecay: number): PassContext {
    return {
      xs: this.params.map((p) => p.data),
      wds: this.decays.map((d) => (d ? weightDecay : 0)),
      slots: this.params.map((p) => this.state.ensure(p.name, p.data.length)),
    };
  }

  private add(ctx: PassContext, seed: number, scale: number): Promise<void> {
    return this.runner.run({ kind: 'add', seed, dist: this.distribution, scale }, ctx);
  }

  /**
   * One MeZO step. `lossAt` evaluates the loss of the current (perturbed) weights on this step's batch
   * (eval mode: no dropout); it is called 2n times. On a non-finite loss, or if `lossAt` throws, the
   * weights are moved back by the pending perturbation and the error is raised (LmtuneError NUMERIC for
   * NaN/Inf); the weights then equal θ up to the rounding of the perturbation adds.
   *
   * `combine` (data-parallel MeZO) receives this process's samples, measured on its share of the batch,
   * and returns the samples of the whole batch (same seeds; the ranks' projected gradients and losses
   * combined); the update and the result use those, so every replica that gets the same combination
   * applies the same update. It is awaited after the last loss pass, with the weights still at θ − εz;
   * if it throws, the weights are moved back as on a failed loss.
   */
  async step(seed: number, lossAt: () => Promise<number>, lr: number, combine?: MezoCombine): Promise<MezoStepResult> {
    checkFiniteLr(lr, 'mezo');
    const n = this.nSpsa;
    const eps = this.eps;
    const ctx = this.context(this.weightDecay);
    const samples: MezoSample[] = [];
    let pending = 0; // the last sample's displacement (in units of εz), restored by the update pass
    for (let j = 0; j < n; j++) {
      const s = spsaSampleSeed(seed, j);
      let offset = 0; // current displacement in units of εz_j, undone on failure
      try {
        await this.add(ctx, s, eps);
        offset = 1;
        const lossPlus = await lossAt();
        checkLoss(lossPlus, '+', s);
        await this.add(ctx, s, -2 * eps);
        offset = -1;
        const lossMinus = await lossAt();
        checkLoss(lossMinus, '−', s);
        if (j < n - 1) {
          await this.add(ctx, s, eps);
          offset = 0;
        }
        const g = (lossPlus - lossMinus) / (2 * eps);
        if (!Number.isFinite(g)) {
          throw new LmtuneError('NUMERIC', `mezo: projected gradient is ${g} (l₊ = ${lossPlus}, l₋ = ${lossMinus}, seed ${s})`, 'lower the learning rate or eps');
        }
        samples.push({ seed: s, projectedGrad: g, lossPlus, lossMinus });
        pending = offset;
      } catch (e) {
        if (offset !== 0) await this.add(ctx, s, -offset * eps);
        throw e;
      }
    }
    if (combine) {
      let combined: MezoSample[];
      try {
        combined = await combine(samples);
        if (combined.length !== n || combined.some((x, j) => x.seed !== samples[j]!.seed || !Number.isFinite(x.projectedGrad))) {
          throw new LmtuneError('RUNTIME', `mezo: the combined samples do not match this step's seeds (${samples.map((x) => x.seed).join(', ')}) or are not finite`);
        }
      } catch (e) {
        if (pending !== 0) await this.add(ctx, samples[n - 1]!.seed, -pending * eps);
        throw e;
      }
      samples.splice(0, n, ...combined);
    }
    await this.update(ctx, samples.map((x) => x.seed), samples.map((x) => x.projectedGrad), lr, eps, false);
    const mean = (f: (x: MezoSample) => number): number => samples.reduce((a, x) => a + f(x), 0) / n;
    return { projectedGrad: mean((x) => x.projectedGrad), lossPlus: mean((x) => x.lossPlus), lossMinus: mean((x) => x.lossMinus), samples };
  }

  /**
   * Redoes a logged step from the weights before it: the ±ε perturbations (for their rounding) and the
   * update, in one pass with each z generated once. Bit-identical to the step that was logged.
   */
  async replay(u: MezoUpdate): Promise<void> {
    checkFiniteLr(u.lr, 'mezo replay');
    if (u.seeds.length === 0 || u.seeds.length !== u.grads.length) {
      throw new LmtuneError('CHECKPOINT', `mezo replay: a step needs as many seeds as projected gradients (got ${u.seeds.length} and ${u.grads.length})`);
    }
    if (u.distribution !== this.distribution) {
      throw new LmtuneError('CHECKPOINT', `mezo replay: step uses distribution ${u.distribution}, the optimizer ${this.distribution}`);
    }
    await this.update(this.context(u.weightDecay), u.seeds, u.grads, u.lr, u.eps, true);
  }

  private async update(ctx: PassContext, seeds: readonly number[], grads: readonly number[], lr: number, eps: number, replay: boolean): Promise<void> {
    const n = seeds.length;
    const steps = this.params.map((p) => this.state.step(p.name));
    await this.runner.run({ kind: 'update', seeds: [...seeds], coefs: grads.map((g) => g / n), dist: this.distribution, eps, lr, replay, rule: this.ruleOp, steps }, ctx);
    for (let i = 0; i < this.params.length; i++) this.state.setStep(this.params[i]!.name, steps[i]! + 1);
  }

  /** Momentum / Adam state (empty for ZO-SGD): keys `<slot>:<name>`, scalars `step:<name>`. */
  stateTensors(): Map<string, Float32Array> {
    return this.state.tensors();
  }

  stateScalars(): Record<string, number> {
    return this.state.scalars();
  }

  loadState(tensors: ReadonlyMap<string, Float32Array>, scalars: Readonly<Record<string, number>>): void {
    this.state.load(tensors, scalars);
  }
}

function checkLoss(l: number, sign: string, seed: number): void {
  if (!Number.isFinite(l)) {
    throw new LmtuneError('NUMERIC', `mezo: loss at θ ${sign} εz is ${l} (seed ${seed})`, 'lower the learning rate or eps; the weights were moved back to θ');
  }
}
