/**
 * The optimizer options of a training run, defined once: the names (one vocabulary for `lmtune train`,
 * `lmtune scale`, the optimizers and the scaling rules), each optimizer's defaults, the checks, and the
 * TypeScript type, all from one zod discriminated union on `name`. `lmtune train`'s flags, its `--config`
 * file and a run's config.json are read through it (src/train/options.ts); `lmtune scale` takes its
 * names and defaults from it.
 *
 * Every variant stores the same fields: config.json (version 1) has always written the whole record for
 * every optimizer, so a run folder written before reads back unchanged. What the union adds: each
 * optimizer's own defaults (lr, RMSprop's α), and `zoMethod`, which only MeZO has.
 */
import { z } from 'zod';
import { absentField, booleanField, choiceField, numberField } from '../util/fields.ts';
import { LmtuneError } from '../util/errors.ts';
import { ZO_METHODS } from './zo/registry.ts';
import type { PeftSpec } from '../peft/spec.ts';
import type { EpsPlacement, OptimizerConfig } from '../scaling/config.ts';
import type { Optimizer } from './types.ts';
import type { MezoRule } from './mezo.ts';
import type { ZDistribution } from './zstream.ts';
import { decayAllButBiasAndNorm } from './decay.ts';
import { Sgd } from './sgd.ts';
import { SgdMomentum } from './sgd-momentum.ts';
import { Rmsprop } from './rmsprop.ts';
import { Adam } from './adam.ts';

export const FIRST_ORDER_OPTIMIZERS = ['sgd', 'sgdm', 'rmsprop', 'adam', 'adamw'] as const;
export const OPTIMIZERS = [...FIRST_ORDER_OPTIMIZERS, 'mezo'] as const;
export type FirstOrderOptimizerName = (typeof FIRST_ORDER_OPTIMIZERS)[number];
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** `pytorch`: b ← βb + g, x ← x − γb (torch.optim.SGD). `ema`: m ← βm + (1−β)g, x ← x − ηm. */
export const MOMENTUM_FORMS = ['pytorch', 'ema'] as const;
export type MomentumForm = (typeof MOMENTUM_FORMS)[number];

/**
 * Where Adam/RMSprop's ε sits: `outside` g/(√v + ε) (PyTorch), `inside` g/√(v + ε). The scaling rules
 * call the same two `outsideSqrt` / `insideSqrt` (`EpsPlacement`); `epsPlacement` maps one to the other,
 * and `EPS_SPELLINGS` lists every spelling a flag accepts.
 */
export const EPS_MODES = ['outside', 'inside'] as const;
export type EpsMode = (typeof EPS_MODES)[number];
export function epsPlacement(m: EpsMode): EpsPlacement {
  return m === 'inside' ? 'insideSqrt' : 'outsideSqrt';
}
export const EPS_SPELLINGS: Readonly<Record<string, EpsPlacement>> = { outside: 'outsideSqrt', outsideSqrt: 'outsideSqrt', inside: 'insideSqrt', insideSqrt: 'insideSqrt' };

export const ZO_DISTRIBUTIONS = ['gaussian', 'rademacher'] as const;
export type ZoDistribution = (typeof ZO_DISTRIBUTIONS)[number];
/** MeZO's update: plain ZO-SGD, or ZO momentum / ZO-Adam (these keep state: more memory) */
export const ZO_RULES = ['sgd', 'momentum', 'adam'] as const;
export type ZoRule = (typeof ZO_RULES)[number];
// MezoOptimizer's rules (optim/mezo.ts MezoRule) go by the same names: a rule added to one and not the
// other fails to compile here
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _zoRulesAgree: Same<MezoRule['kind'], ZoRule> = true;
// and the z stream's distributions (optim/zstream.ts) are these
const _zoDistributionsAgree: Same<ZDistribution, ZoDistribution> = true;
/** what MeZO's two forward passes measure: cross-entropy, or −accuracy / −SQuAD F1 (no gradients needed) */
export const ZO_OBJECTIVES = ['ce', 'accuracy', 'f1'] as const;

/** the checks of each field (the same for every optimizer; `name` and `zoMethod` are per variant) */
const FIELDS = {
  lr: numberField({ min: 0 }),
  weightDecay: numberField({ min: 0 }),
  /** sgdm: β; rmsprop: α; MeZO's ZO momentum: β */
  momentum: numberField({ min: 0, max: 1 }),
  momentumForm: choiceField(MOMENTUM_FORMS),
  nesterov: booleanField(),
  beta1: numberField({ min: 0, max: 1 }),
  beta2: numberField({ min: 0, max: 1 }),
  eps: numberField({ min: 0 }),
  epsMode: choiceField(EPS_MODES),
  /** MeZO's perturbation size ε (its default depends on the PEFT mode: `ZO_EPS_DEFAULT`) */
  zoEps: numberField({ min: 0 }),
  zoSamples: numberField({ int: true, min: 1, max: 1_000_000 }),
  zoDistribution: choiceField(ZO_DISTRIBUTIONS),
  zoRule: choiceField(ZO_RULES),
  zoObjective: choiceField(ZO_OBJECTIVES),
};
type FieldName = keyof typeof FIELDS;

/** defaults shared by every optimizer (PyTorch's where it has one) */
const COMMON_DEFAULTS = {
  weightDecay: 0,
  momentum: 0.9,
  momentumForm: 'pytorch',
  nesterov: false,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  epsMode: 'outside',
  zoSamples: 1,
  zoDistribution: 'gaussian',
  zoRule: 'sgd',
  zoObjective: 'ce',
} as const satisfies Partial<Record<FieldName, unknown>>;

/** each optimizer's own defaults */
const VARIANT_DEFAULTS = {
  sgd: { lr: 1e-3 },
  sgdm: { lr: 1e-3 },
  rmsprop: { lr: 1e-4, momentum: 0.99 },
  adam: { lr: 1e-5 },
  adamw: { lr: 1e-5 },
  mezo: { lr: 1e-6 },
} as const satisfies Record<OptimizerName, Partial<Record<FieldName, unknown>>>;

/** MeZO's ε per PEFT mode (paper Table 16) */
export const ZO_EPS_DEFAULT: Readonly<Record<PeftSpec['kind'], number>> = { full: 1e-3, lora: 1e-2, prefix: 1e-1 };

/** the default of every field that has one (zoEps has none here: `ZO_EPS_DEFAULT` by PEFT mode) */
export function optimizerDefaults<N extends OptimizerName>(name: N): Omit<typeof COMMON_DEFAULTS, keyof (typeof VARIANT_DEFAULTS)[N]> & (typeof VARIANT_DEFAULTS)[N] {
  return { ...COMMON_DEFAULTS, ...VARIANT_DEFAULTS[name] };
}

function variant<const N extends OptimizerName>(name: N, withDefaults: boolean) {
  const d: Readonly<Record<string, unknown>> = optimizerDefaults(name);
  const fields = Object.fromEntries(Object.entries(FIELDS).map(([k, f]) => [k, withDefaults && d[k] !== undefined ? (f as z.ZodType).default(d[k] as never) : f])) as typeof FIELDS;
  return z.object({
    name: z.literal(name),
    ...fields,
    zoMethod: name === 'mezo' ? choiceField(ZO_METHODS).optional() : absentField(`applies to --optimizer mezo, not ${name}`).optional(),
  });
}

function union(withDefaults: boolean) {
  return z.discriminatedUnion('name', [
    variant('sgd', withDefaults),
    variant('sgdm', withDefaults),
    variant('rmsprop', withDefaults),
    variant('adam', withDefaults),
    variant('adamw', withDefaults),
    variant('mezo', withDefaults),
  ]);
}

/** a stored spec (a run's config.json): every field present */
export const optimizerSpecSchema = union(false);
/** options as given (flags, a `--config` file, a library caller): absent fields take their optimizer's default */
export const optimizerOptionsSchema = union(true);

/** the optimizer of a run, as config.json stores it */
export type OptimizerSpec = z.output<typeof optimizerSpecSchema>;

/** the scaling rules' description of a first-order spec (SVAG's translation and SDE time) */
export function scalingConfig(o: OptimizerSpec, batch: number): OptimizerConfig {
  switch (o.name) {
    case 'sgd':
      return { optimizer: 'sgd', lr: o.lr, batch, weightDecay: o.weightDecay };
    case 'sgdm':
      return { optimizer: 'sgdm', lr: o.lr, batch, momentum: o.momentum, form: o.momentumForm, nesterov: o.nesterov, weightDecay: o.weightDecay };
    case 'rmsprop':
      return { optimizer: 'rmsprop', lr: o.lr, batch, beta2: o.momentum, eps: o.eps, epsPlacement: epsPlacement(o.epsMode), weightDecay: o.weightDecay };
    case 'adam':
    case 'adamw':
      return { optimizer: o.name, lr: o.lr, batch, beta1: o.beta1, beta2: o.beta2, eps: o.eps, epsPlacement: epsPlacement(o.epsMode), weightDecay: o.weightDecay, wdMode: o.name === 'adamw' ? 'decoupledTimesLr' : 'coupledL2' };
    case 'mezo':
      throw new LmtuneError('CONFIG', 'SVAG and SDE scaling do not apply to MeZO');
  }
}

/** the first-order optimizer of a spec; weight decay skips biases and norm weights */
export function makeOptimizer(o: OptimizerSpec): Optimizer {
  const decayFilter = decayAllButBiasAndNorm;
  switch (o.name) {
    case 'sgd':
      return new Sgd({ weightDecay: o.weightDecay, decayFilter });
    case 'sgdm':
      return new SgdMomentum({ beta: o.momentum, form: o.momentumForm, nesterov: o.nesterov, weightDecay: o.weightDecay, decayFilter });
    case 'rmsprop':
      return new Rmsprop({ alpha: o.momentum, eps: o.eps, weightDecay: o.weightDecay, decayFilter });
    case 'adam':
      return new Adam({ beta1: o.beta1, beta2: o.beta2, eps: o.eps, epsMode: o.epsMode, weightDecay: o.weightDecay, weightDecayMode: 'coupled', decayFilter });
    case 'adamw':
      return new Adam({ beta1: o.beta1, beta2: o.beta2, eps: o.eps, epsMode: o.epsMode, weightDecay: o.weightDecay, weightDecayMode: 'decoupled', decayFilter });
    case 'mezo':
      throw new LmtuneError('CONFIG', 'mezo is not a first-order optimizer');
  }
}
