/**
 * Typed optimizer configurations for the scaling-rule calculator, with the conventions that change what a
 * rule must do: where epsilon sits, how weight decay is applied, which form of momentum is meant.
 *
 * Why a discriminated union and not one bag of optional fields: RMSprop has one β and SGDM has a momentum,
 * Adam has two βs; a field that does not exist for an optimizer should be a type error, not a silently
 * ignored number. Every field keeps the name the user's framework gives it (PyTorch unless noted).
 */
import { LmtuneError } from '../util/errors.ts';
import type { FirstOrderOptimizerName, MomentumForm } from '../optim/options.ts';

/** the first-order optimizers (the names of src/optim/options.ts; MeZO has no SDE rule here) */
export type OptimizerName = FirstOrderOptimizerName;
export type { MomentumForm };

/**
 * How weight decay enters the update.
 * - `coupledL2`: λx is added to the gradient (PyTorch SGD/Adam/RMSprop `weight_decay`); it is part of the loss.
 * - `decoupledTimesLr`: x ← x − lr·λ·x each step (PyTorch AdamW, optax adamw).
 * - `decoupledAbsolute`: x ← (1 − λ)·x each step, independent of lr (Loshchilov–Hutter's original "w").
 */
export type WeightDecayMode = 'coupledL2' | 'decoupledTimesLr' | 'decoupledAbsolute';

/** `outsideSqrt`: g/(√v + ε) (PyTorch). `insideSqrt`: g/√(v + ε) (TF1 RMSProp, optax `eps_root`). */
export type EpsPlacement = 'outsideSqrt' | 'insideSqrt';

/*
 * MomentumForm (src/optim/options.ts): `pytorch`: b ← βb + (1−d)g, x ← x − γb (torch.optim.SGD; its first
 * step sets b = g, see docs/scaling.md). `ema`: m ← βm + (1−β)g, x ← x − ηm. Identical iterates when
 * η = γ(1−d)/(1−β) (without dampening).
 */

/** How a β is carried to a new batch size: `linear` 1 − κ(1−β) (the papers) or `power` β^κ. */
export type BetaMap = 'linear' | 'power';

interface CommonConfig {
  /** Minibatch size B (examples per gradient). */
  batch: number;
  /** The learning rate as the optimizer receives it (γ for PyTorch-form SGDM, η otherwise). */
  lr: number;
  /** Training length in optimizer steps; translated so that epochs stay constant. */
  steps?: number;
  /** Linear-warmup length in steps. */
  warmupSteps?: number;
  /** Step indices at which a step schedule decays the learning rate. */
  milestones?: number[];
  weightDecay?: number;
  wdMode?: WeightDecayMode;
  /**
   * SVAG covariance amplification a ≥ 1 (1 = plain optimizer): each step combines two independent
   * minibatch gradients so that the noise covariance is a·Σ_B. See svag.ts.
   */
  svagAmplification?: number;
}

export interface SgdConfig extends CommonConfig {
  optimizer: 'sgd';
}

export interface SgdmConfig extends CommonConfig {
  optimizer: 'sgdm';
  /** β. */
  momentum: number;
  form: MomentumForm;
  /** PyTorch dampening d (pytorch form only). */
  dampening?: number;
  nesterov?: boolean;
}

export interface RmspropConfig extends CommonConfig {
  optimizer: 'rmsprop';
  /** The second-moment EMA coefficient (PyTorch `alpha`), named beta2 to match Adam's. */
  beta2: number;
  eps: number;
  epsPlacement: EpsPlacement;
}

export interface AdamConfig extends CommonConfig {
  optimizer: 'adam' | 'adamw';
  beta1: number;
  beta2: number;
  eps: number;
  epsPlacement: EpsPlacement;
}

export type OptimizerConfig = SgdConfig | SgdmConfig | RmspropConfig | AdamConfig;
export type AdaptiveConfig = RmspropConfig | AdamConfig;

export function isAdaptive(cfg: OptimizerConfig): cfg is AdaptiveConfig {
  return cfg.optimizer === 'rmsprop' || cfg.optimizer === 'adam' || cfg.optimizer === 'adamw';
}

/** PyTorch's default for each optimizer: coupled L2 everywhere except AdamW. */
export function defaultWdMode(optimizer: OptimizerName): WeightDecayMode {
  return optimizer === 'adamw' ? 'decoupledTimesLr' : 'coupledL2';
}

export function wdModeOf(cfg: OptimizerConfig): WeightDecayMode {
  return cfg.wdMode ?? defaultWdMode(cfg.optimizer);
}

export function amplificationOf(cfg: OptimizerConfig): number {
  return cfg.svagAmplification ?? 1;
}

/**
 * The flag each field comes from, so that errors raised by the library name what the user typed.
 * (`beta2` of RMSprop also accepts `--alpha` on the command line.)
 */
export const FLAG_OF: Readonly<Record<string, string>> = {
  batch: '--batch',
  lr: '--lr',
  steps: '--steps',
  warmupSteps: '--warmup-steps',
  milestones: '--milestones',
  weightDecay: '--weight-decay',
  momentum: '--momentum',
  dampening: '--dampening',
  beta1: '--beta1',
  beta2: '--beta2',
  eps: '--eps',
  svagAmplification: '--svag',
};

function where(field: string): string {
  const flag = FLAG_OF[field];
  return flag ? `${field} (${flag})` : field;
}

function positive(v: number | undefined, field: string): void {
  if (v === undefined) return;
  if (!Number.isFinite(v) || v <= 0) throw new LmtuneError('CONFIG', `${where(field)} must be a positive finite number, got ${v}`);
}

function nonNegative(v: number | undefined, field: string): void {
  if (v === undefined) return;
  if (!Number.isFinite(v) || v < 0) throw new LmtuneError('CONFIG', `${where(field)} must be a finite number ≥ 0, got ${v}`);
}

function beta(v: number, field: string): void {
  if (!Number.isFinite(v) || v < 0 || v >= 1) {
    throw new LmtuneError('CONFIG', `${where(field)} must lie in [0, 1), got ${v}`, 'β = 1 never forgets and has no SDE limit; β < 0 is not an average.');
  }
}

/** Throws LmtuneError('CONFIG') naming the offending field/flag; returns the config for chaining. */
export function validateConfig<C extends OptimizerConfig>(cfg: C): C {
  positive(cfg.batch, 'batch');
  positive(cfg.lr, 'lr');
  positive(cfg.steps, 'steps');
  nonNegative(cfg.warmupSteps, 'warmupSteps');
  nonNegative(cfg.weightDecay, 'weightDecay');
  if (cfg.svagAmplification !== undefined && !(Number.isFinite(cfg.svagAmplification) && cfg.svagAmplification >= 1)) {
    throw new LmtuneError('CONFIG', `${where('svagAmplification')} must be a finite number ≥ 1, got ${cfg.svagAmplification}`, 'a = 1 is the plain optimizer; SVAG amplifies noise, it cannot reduce it.');
  }
  for (const m of cfg.milestones ?? []) nonNegative(m, 'milestones');
  if (cfg.wdMode === 'decoupledAbsolute' && (cfg.weightDecay ?? 0) >= 1) {
    throw new LmtuneError('CONFIG', `${where('weightDecay')} = ${cfg.weightDecay} with absolute decoupled decay multiplies x by 1 − λ ≤ 0 every step`);
  }
  switch (cfg.optimizer) {
    case 'sgd':
      break;
    case 'sgdm':
      beta(cfg.momentum, 'momentum');
      nonNegative(cfg.dampening, 'dampening');
      if ((cfg.dampening ?? 0) >= 1) throw new LmtuneError('CONFIG', `${where('dampening')} must be < 1, got ${cfg.dampening}`);
      if (cfg.form === 'ema' && (cfg.dampening ?? 0) !== 0) {
        throw new LmtuneError('CONFIG', 'dampening (--dampening) only exists in the PyTorch momentum form', 'The EMA form already weights the gradient by (1 − β).');
      }
      if (cfg.nesterov && (cfg.dampening ?? 0) !== 0) {
        throw new LmtuneError('CONFIG', 'nesterov with dampening is rejected by torch.optim.SGD and has no defined meaning here');
      }
      break;
    case 'rmsprop':
      beta(cfg.beta2, 'beta2');
      nonNegative(cfg.eps, 'eps');
      break;
    case 'adam':
    case 'adamw':
      beta(cfg.beta1, 'beta1');
      beta(cfg.beta2, 'beta2');
      nonNegative(cfg.eps, 'eps');
      break;
  }
  return cfg;
}
