/**
 * The registry of zeroth-order methods: name → constructor, paper, forward passes per step, extra
 * memory and whether the estimate is unbiased. `--zo-method NAME` picks one; `--zo-rule sgd|momentum|adam`
 * is the same as `--zo-method sgd|momentum|adam`.
 *
 * Not here: the forward gradient (Baydin et al. 2022, ZO-Bench's "FG"), which needs a Jacobian-vector
 * product; lmtune's engine has reverse mode only (src/engine/autodiff.ts), so it is left out.
 */
import { LmtuneError } from '../../util/errors.ts';
import type { ParamList } from '../types.ts';
import { BlockMethod } from './block.ts';
import { ConservativeMethod } from './conservative.ts';
import { FzooMethod } from './fzoo.ts';
import { HizooMethod } from './hizoo.ts';
import { MezoRuleMethod } from './mezo-rules.ts';
import { DEFAULT_ZO_SETTINGS, type ZoMethod, type ZoSettings } from './method.ts';
import { SignMethod } from './sign.ts';
import { SparseMethod } from './sparse.ts';

export const ZO_METHODS = ['sgd', 'sign', 'conservative', 'momentum', 'adam', 'hizoo', 'sparse-magnitude', 'sparse-random', 'sparse-layer', 'fzoo', 'block'] as const;
export type ZoMethodName = (typeof ZO_METHODS)[number];

export interface ZoMethodInfo {
  paper: string;
  /** forward passes per step, in words */
  passes: string;
  /** memory beyond inference, in words (`--help`, run summaries) */
  memory: string;
  unbiased: boolean;
}

export const ZO_METHOD_INFO: Record<ZoMethodName, ZoMethodInfo> = {
  sgd: { paper: 'MeZO, Malladi et al. 2023 (arXiv 2305.17333)', passes: '2n', memory: 'none (2 KB scratch)', unbiased: true },
  sign: { paper: 'ZO-SGD-Sign, ZO-Bench, Zhang et al. 2024 (arXiv 2402.11592)', passes: '2', memory: 'none', unbiased: false },
  conservative: { paper: 'ZO-SGD-Cons, ZO-Bench (arXiv 2402.11592)', passes: '5', memory: 'none', unbiased: true },
  momentum: { paper: 'ZO-SGD-MMT, ZO-Bench (arXiv 2402.11592)', passes: '2n', memory: '1x trainable parameters (float32)', unbiased: true },
  adam: { paper: 'ZO-Adam, ZO-Bench (arXiv 2402.11592); MeZO-Adam', passes: '2n', memory: '2x trainable parameters (float32)', unbiased: true },
  hizoo: { paper: 'HiZOO, Zhao et al. ICLR 2025 (arXiv 2402.15173)', passes: '3', memory: '1x trainable parameters (diagonal Hessian, float32)', unbiased: true },
  'sparse-magnitude': { paper: 'Sparse MeZO, Liu et al. 2024 (arXiv 2402.15751)', passes: '2', memory: '1 bit per trainable parameter (the step mask)', unbiased: true },
  'sparse-random': { paper: 'Sparse MeZO (random mask ablation, arXiv 2402.15751)', passes: '2', memory: '1 bit per trainable parameter', unbiased: true },
  'sparse-layer': { paper: 'Sparse MeZO (per-layer masks, arXiv 2402.15751)', passes: '2', memory: '1 bit per trainable parameter', unbiased: true },
  fzoo: { paper: 'FZOO, Dang et al. 2025 (arXiv 2506.09034)', passes: 'N+1 (N = --zo-samples, 8 if 1)', memory: 'none (N perturbations run in turn)', unbiased: false },
  block: { paper: 'block-wise ZO, ZO-Bench (arXiv 2402.11592)', passes: '2 x layer blocks', memory: 'none', unbiased: true },
};

/** one line per method for --help */
export function zoMethodHelp(): string {
  return ZO_METHODS.map((m) => `${m} (${ZO_METHOD_INFO[m].passes} passes/step, extra memory: ${ZO_METHOD_INFO[m].memory})`).join('; ');
}

export function isZoMethod(name: string): name is ZoMethodName {
  return (ZO_METHODS as readonly string[]).includes(name);
}

/**
 * A method on `params` (updated in place). `saved` is a trajectory header's config: a replay rebuilds the
 * method as logged (the MeZO rules' weight-decay exemptions).
 */
export function createZoMethod(name: string, params: ParamList, settings: Partial<ZoSettings> = {}, saved?: Record<string, unknown>): ZoMethod {
  if (!isZoMethod(name)) throw new LmtuneError('CONFIG', `unknown ZO method "${name}"`, `known: ${ZO_METHODS.join(', ')}`);
  const s: ZoSettings = { ...DEFAULT_ZO_SETTINGS, ...settings };
  if (!s.decayFilter && Array.isArray(saved?.noDecay)) {
    const noDecay = new Set(saved.noDecay as string[]);
    s.decayFilter = (n) => !noDecay.has(n);
  }
  if (!(s.eps > 0 && Number.isFinite(s.eps))) throw new LmtuneError('CONFIG', `${name}: eps must be a finite number > 0, got ${s.eps}`);
  if (!Number.isInteger(s.samples) || s.samples < 1) throw new LmtuneError('CONFIG', `${name}: samples must be an integer >= 1, got ${s.samples}`);
  const rule = name === 'sgd' || name === 'momentum' || name === 'adam';
  if (!rule && s.weightDecay > 0) throw new LmtuneError('CONFIG', `--zo-method ${name} has no weight decay (got ${s.weightDecay})`, 'use --weight-decay 0, or --zo-method sgd|momentum|adam');
  if (!rule && s.samples > 1 && name !== 'fzoo') throw new LmtuneError('CONFIG', `--zo-method ${name} draws its own number of directions; --zo-samples applies to sgd, momentum, adam and fzoo`);
  switch (name) {
    case 'sgd':
    case 'momentum':
    case 'adam':
      return new MezoRuleMethod(name, params, s);
    case 'sign':
      return new SignMethod(params, s);
    case 'conservative':
      return new ConservativeMethod(params, s);
    case 'hizoo':
      return new HizooMethod(params, s);
    case 'sparse-magnitude':
      return new SparseMethod(params, s, 'magnitude');
    case 'sparse-random':
      return new SparseMethod(params, s, 'random');
    case 'sparse-layer':
      return new SparseMethod(params, s, 'layer');
    case 'fzoo':
      return new FzooMethod(params, s);
    case 'block':
      return new BlockMethod(params, s);
  }
}
