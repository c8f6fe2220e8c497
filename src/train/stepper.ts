/**
 * One optimization step, three ways:
 *   first-order  backprop gradients of the trainable parameters (accumulated over micro-batches,
 *                clipped) fed to SGD / SGDM / RMSprop / Adam / AdamW
 *   SVAG (ℓ>1)   two independent minibatch gradients combined as c₁g₁ + c₂g₂ with the optimizer's
 *                hyperparameters translated so the run follows the same SDE (src/scaling/svag.ts)
 *   MeZO         two forward passes at θ ± εz, z regenerated from a per-step seed, trajectory logged
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { LmtuneError } from '../util/errors.ts';
import type { LossRequest } from '../heads/objective.ts';
import type { TransformerModel } from '../heads/model.ts';
import type { GradMap, NamedParam, Optimizer } from '../optim/types.ts';
import { makeOptimizer, scalingConfig } from '../optim/options.ts';
import { clipGradNorm, globalGradNorm } from '../optim/clip.ts';
import { GradAccumulator } from '../optim/accumulate.ts';
import { mezoReferenceDecayFilter } from '../optim/decay.ts';
import { MezoOptimizer, type MezoSample } from '../optim/mezo.ts';
import { mezoStepSeed } from '../optim/zstream.ts';
import { stepRecord, trajectoryHeader } from '../optim/trajectory.ts';
import { TrajectoryWriter } from '../node/trajectory-file.ts';
import { svagCombine, svagConfig, svagSdeTime } from '../scaling/svag.ts';
import type { OptimizerConfig } from '../scaling/config.ts';
import type { OptimizerSpec, TrainConfig } from './options.ts';
import { lossUnits, type Encoded } from './batches.ts';
import type { GenerationEncoding } from '../tasks/index.ts';
import { squadF1 } from '../tasks/metrics.ts';
import { ZoMethodStepper } from './zo-stepper.ts';
import { combineShares, shareValues, type DataParallel } from './data-parallel.ts';

export type BatchRequest = LossRequest & { encodings?: readonly Encoded[] };

export interface StepResult {
  loss: number;
  extra: Record<string, number>;
}

export interface Stepper {
  step(next: () => BatchRequest, step: number, lr: number): Promise<StepResult>;
  stateTensors(): Map<string, Float32Array>;
  stateScalars(): Record<string, number>;
  extraState(): Record<string, number>;
  loadState(tensors: ReadonlyMap<string, Float32Array>, scalars: Readonly<Record<string, number>>, extra: Readonly<Record<string, number>>): void;
  /** drop logged steps past `step` (resume) */
  truncate(step: number): void;
  flush(): void;
}

function trainableParams(model: TransformerModel): NamedParam[] {
  return model.trainableParams();
}

/** the optimizer spec after SVAG's translation (lr, β, ε), or unchanged for ℓ = 1 */
export function svagSpec(o: OptimizerSpec, batch: number, ell: number): OptimizerSpec {
  if (ell === 1) return o;
  const t = svagConfig(scalingConfig(o, batch), ell).config as OptimizerConfig & Record<string, number>;
  return {
    ...o,
    lr: t.lr,
    ...(t.optimizer === 'adam' || t.optimizer === 'adamw' ? { beta1: t.beta1, beta2: t.beta2, eps: t.eps } : {}),
    ...(t.optimizer === 'rmsprop' ? { momentum: t.beta2, eps: t.eps } : {}),
    ...(t.optimizer === 'sgdm' ? { momentum: t.momentum } : {}),
  };
}

class FirstOrderStepper implements Stepper {
  private readonly params: NamedParam[];
  private readonly names: string[];
  private readonly opt: Optimizer;
  private readonly acc: GradAccumulator;
  private readonly spec: OptimizerSpec;
  private readonly sdeCfg: OptimizerConfig;
  /** SDE time so far: Σ lr_k (SGD, SGDM) or Σ lr_k² (RMSprop, Adam), so schedules are accounted for */
  private sdeTime = 0;

  constructor(
    private readonly cfg: TrainConfig,
    private readonly model: TransformerModel,
  ) {
    this.params = trainableParams(model);
    this.names = this.params.map((p) => p.name);
    this.spec = svagSpec(cfg.optimizer, cfg.batchSize, cfg.svag);
    this.opt = makeOptimizer(this.spec);
    this.acc = new GradAccumulator(this.params);
    this.sdeCfg = scalingConfig(this.spec, cfg.batchSize);
  }

  /** `into`: buffers the gradients are written into (see GradAccumulator.writeTarget) */
  private async gradient(next: () => BatchRequest, into?: GradMap): Promise<{ loss: number; grads: GradMap; units: number }> {
    const req = next();
    const r = await this.model.loss(req, this.names, [], into);
    return { loss: r.loss, grads: r.grads!, units: lossUnits(req) };
  }

  async step(next: () => BatchRequest, _step: number, lrBase: number): Promise<StepResult> {
    // the schedule is defined on the user's lr; SVAG rescales it by the translated/original ratio
    const lr = lrBase * (this.spec.lr / this.cfg.optimizer.lr);
    // micro-batches are weighted by what their loss averages over (examples, or answer tokens for the
    // lm objective), so --grad-accum k at batch B gives the loss and gradient of one batch of k·B
    let lossSum = 0;
    let unitSum = 0;
    for (let m = 0; m < this.cfg.gradAccum; m++) {
      let loss: number;
      let grads: GradMap | null;
      let units: number;
      if (this.cfg.svag > 1) {
        const a = await this.gradient(next);
        const b = await this.gradient(next);
        const combined = new Map<string, Float32Array>();
        for (const n of this.names) combined.set(n, svagCombine(a.grads.get(n)!, b.grads.get(n)!, this.cfg.svag));
        loss = (a.loss + b.loss) / 2;
        grads = combined;
        units = a.units + b.units;
      } else {
        // written straight into the accumulator's buffers: no gradient copy beyond the sums
        ({ loss, units } = await this.gradient(next, this.acc.writeTarget()));
        grads = null;
      }
      if (!Number.isFinite(loss)) return { loss, extra: {} };
      // one micro-batch: weight 1, so its gradient reaches the optimizer unrounded
      const w = this.cfg.gradAccum === 1 ? 1 : Math.max(units, 1);
      lossSum += loss * w;
      unitSum += w;
      if (grads) this.acc.add(grads, w);
      else this.acc.addWritten(w);
    }
    const grads = this.acc.take();
    const gradNorm = this.cfg.clipNorm ? clipGradNorm(grads, this.cfg.clipNorm, { errorIfNonfinite: false }) : globalGradNorm(grads);
    if (!Number.isFinite(gradNorm)) return { loss: Number.NaN, extra: {} };
    this.opt.step(this.params, grads, lr);
    this.sdeTime += svagSdeTime({ ...this.sdeCfg, lr }, 1);
    const extra: Record<string, number> = { grad_norm: gradNorm, sde_time: this.sdeTime };
    return { loss: lossSum / unitSum, extra };
  }

  stateTensors(): Map<string, Float32Array> {
    return new Map([...this.opt.stateTensors()].map(([k, v]) => [k, Float32Array.from(v)]));
  }
  stateScalars(): Record<string, number> {
    return this.opt.stateScalars();
  }
  extraState(): Record<string, number> {
    return { sde_time: this.sdeTime };
  }
  loadState(t: ReadonlyMap<string, Float32Array>, s: Readonly<Record<string, number>>, extra: Readonly<Record<string, number>>): void {
    if (t.size || Object.keys(s).length) this.opt.loadState(t, s);
    this.sdeTime = extra.sde_time ?? 0;
  }
  truncate(): void {}
  flush(): void {}
}

class MezoStepper implements Stepper {
  private readonly opt: MezoOptimizer;
  private writer: TrajectoryWriter | null = null;
  private readonly path: string;

  constructor(
    private readonly cfg: TrainConfig,
    private readonly model: TransformerModel,
    runDir: string,
    private readonly dp?: DataParallel,
  ) {
    const o = cfg.optimizer;
    // --zo-method sgd|momentum|adam names the same rules as --zo-rule
    const ruleName = o.zoMethod === 'sgd' || o.zoMethod === 'momentum' || o.zoMethod === 'adam' ? o.zoMethod : o.zoRule;
    const rule = ruleName === 'sgd' ? { kind: 'sgd' as const } : ruleName === 'momentum' ? { kind: 'momentum' as const, beta: o.momentum } : { kind: 'adam' as const, beta1: o.beta1, beta2: o.beta2, eps: o.eps };
    this.opt = new MezoOptimizer(trainableParams(model), {
      eps: o.zoEps,
      weightDecay: o.weightDecay,
      decayFilter: mezoReferenceDecayFilter,
      distribution: o.zoDistribution,
      nSpsa: o.zoSamples,
      rule,
    });
    this.path = join(runDir, 'trajectory.jsonl');
  }

  /** the objective the perturbed forward passes measure */
  private async objective(req: BatchRequest): Promise<number> {
    const kind = this.cfg.optimizer.zoObjective;
    if (kind === 'ce') return (await this.model.loss(req)).loss;
    if (kind === 'accuracy') {
      // −accuracy of argmax over the candidates' scores (MeZO's --optimize_acc), ignoring padded rows
      const r = await this.model.loss(req);
      const scores = r.outputs.scores;
      const o = req.objective;
      if (!scores || o.kind === 'token') throw new LmtuneError('CONFIG', '--zo-objective accuracy needs a classification or mask objective');
      const C = o.kind === 'candidates' ? o.candidates : o.candIds.length;
      let right = 0;
      let n = 0;
      for (let e = 0; e < o.gold.length; e++) {
        if (o.gold[e]! < 0) continue;
        let best = 0;
        for (let c = 1; c < C; c++) if (scores[e * C + c]! > scores[e * C + best]!) best = c;
        right += best === o.gold[e]! ? 1 : 0;
        n++;
      }
      return -right / n;
    }
    // −SQuAD F1 of greedy generations (MeZO's --non_diff for SQuAD)
    const encs = (req.encodings ?? []).filter((e): e is GenerationEncoding => e.kind === 'generation');
    if (!encs.length) throw new LmtuneError('CONFIG', '--zo-objective f1 needs a generation task (squad, drop)');
    let f1 = 0;
    for (const e of encs) f1 += squadF1(await this.model.generate(e.prompt, { maxNewTokens: 50, stop: ['\n'] }), e.answers);
    return -f1 / encs.length;
  }

  async step(next: () => BatchRequest, step: number, lr: number): Promise<StepResult> {
    if (!this.writer) this.writer = TrajectoryWriter.create(this.path, trajectoryHeader(this.opt));
    const req = next(); // one batch for both perturbations (and all n-SPSA samples)
    const seed = mezoStepSeed(this.cfg.seed, step);
    // data-parallel: `req` is this rank's share; the ranks' (units, g, l₊, l₋) are combined into the
    // whole batch's before the update, identically on every rank (train/data-parallel.ts)
    const dp = this.dp;
    const combine = dp ? async (samples: readonly MezoSample[]) => combineShares(samples, await dp.exchange(step, seed, shareValues(lossUnits(req), samples))) : undefined;
    const r = await this.opt.step(seed, () => this.objective(req), lr, combine);
    this.writer.append(stepRecord(this.opt, step, r, lr));
    return { loss: r.lossPlus, extra: { projected_grad: r.projectedGrad, loss_minus: r.lossMinus } };
  }

  stateTensors(): Map<string, Float32Array> {
    return new Map([...this.opt.stateTensors()].map(([k, v]) => [k, Float32Array.from(v)]));
  }
  stateScalars(): Record<string, number> {
    return this.opt.stateScalars();
  }
  extraState(): Record<string, number> {
    return {};
  }
  loadState(t: ReadonlyMap<string, Float32Array>, s: Readonly<Record<string, number>>): void {
    if (t.size || Object.keys(s).length) this.opt.loadState(t, s);
  }
  truncate(step: number): void {
    if (existsSync(this.path)) this.writer = TrajectoryWriter.resume(this.path, { keepSteps: step }).writer;
  }
  flush(): void {}
}

export function makeStepper(cfg: TrainConfig, model: TransformerModel, runDir: string, dp?: DataParallel): Stepper {
  if (dp) checkDataParallel(cfg, dp.world);
  if (cfg.optimizer.name === 'mezo') {
    if (cfg.svag !== 1) throw new LmtuneError('CONFIG', '--svag applies to first-order optimizers, not MeZO');
    if (cfg.gradAccum !== 1) throw new LmtuneError('CONFIG', 'MeZO takes one batch per step: --grad-accum must be 1 (the reference asserts this too)');
    const m = cfg.optimizer.zoMethod;
    if (m !== undefined && m !== 'sgd' && m !== 'momentum' && m !== 'adam') return new ZoMethodStepper(cfg, model, runDir, m);
    return new MezoStepper(cfg, model, runDir, dp);
  }
  return new FirstOrderStepper(cfg, model);
}

/** what data-parallel training supports: MeZO (sgd / momentum / adam rules, n-SPSA) on a batch of at least one example per rank */
export function checkDataParallel(cfg: TrainConfig, world: number): void {
  const o = cfg.optimizer;
  if (o.name !== 'mezo') throw new LmtuneError('CONFIG', `--data-parallel applies to --optimizer mezo, not ${o.name}`, 'first-order data parallelism would exchange whole gradients; MeZO exchanges a few numbers per step');
  const m = o.zoMethod;
  if (m !== undefined && m !== 'sgd' && m !== 'momentum' && m !== 'adam') throw new LmtuneError('CONFIG', `--data-parallel supports --zo-method sgd, momentum and adam (MeZO's update rules), not ${m}`);
  if (o.zoObjective === 'f1') throw new LmtuneError('CONFIG', '--data-parallel does not support --zo-objective f1 (its mean runs over generations, not the units the shares are weighted by)');
  if (cfg.batchSize < world) throw new LmtuneError('CONFIG', `--batch-size ${cfg.batchSize} is smaller than --world ${world}: every rank needs at least one example of each batch`);
}
