/** Everything a training run is configured by; stored as the run's `config.json` so `--resume` needs only the folder. */
import type { PeftSpec } from '../peft/spec.ts';
import type { ObjectiveMode } from './batches.ts';
import type { ZoMethodName } from '../optim/zo/registry.ts';

export type OptimizerName = 'sgd' | 'sgdm' | 'rmsprop' | 'adam' | 'adamw' | 'mezo';

export interface OptimizerSpec {
  name: OptimizerName;
  lr: number;
  weightDecay: number;
  /** sgdm: β; rmsprop: α */
  momentum: number;
  momentumForm: 'pytorch' | 'ema';
  nesterov: boolean;
  beta1: number;
  beta2: number;
  eps: number;
  epsMode: 'outside' | 'inside';
  /** mezo */
  zoEps: number;
  zoSamples: number;
  zoDistribution: 'gaussian' | 'rademacher';
  /** mezo: plain ZO-SGD, or ZO momentum / ZO-Adam (these keep state: more memory) */
  zoRule: 'sgd' | 'momentum' | 'adam';
  /** mezo: a method from the ZO registry (src/optim/zo/registry.ts); absent = zoRule. sgd, momentum and
   *  adam are the zoRule ones */
  zoMethod?: ZoMethodName;
  /** mezo: what the two forward passes measure: cross-entropy (default), or a non-differentiable
   *  metric: −accuracy of the batch's predictions, −SQuAD F1 of greedy generations */
  zoObjective: 'ce' | 'accuracy' | 'f1';
}

export interface TrainConfig {
  version: 1;
  model: string;
  task: string;
  data: string;
  dev: string | null;
  /** examples drawn for training / dev from `data` when no dev file is given (seeded) */
  numTrain: number | null;
  numDev: number;
  devLimit: number;
  optimizer: OptimizerSpec;
  schedule: 'constant' | 'linear' | 'cosine';
  warmupSteps: number;
  maxSteps: number;
  batchSize: number;
  gradAccum: number;
  clipNorm: number | null;
  evalEvery: number;
  saveEvery: number;
  seed: number;
  peft: PeftSpec;
  objective: ObjectiveMode | 'auto';
  /** SVAG amplification ℓ (1 = off) */
  svag: number;
  maxLength: number | null;
  threads: number | null;
  /** --task chat: leave out invalid rows and rows cut away by maxLength instead of failing (absent: false) */
  skipInvalid?: boolean;
  /** --task chat: which end a row longer than maxLength loses (absent: right, as the reference) */
  truncation?: 'left' | 'right';
}
