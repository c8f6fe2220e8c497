/**
 * The model families lmtune knows, in the order `architectures` patterns are tried. Adding a family:
 * write its file in this folder (see family.ts) and add it to this list.
 */
import { LmtuneError } from '../../util/errors.ts';
import type { BaseConfig, Family } from '../family.ts';
import { gpt2 } from './gpt2.ts';
import { opt } from './opt.ts';
import { llama } from './llama.ts';
import { gptNeox } from './gpt-neox.ts';
import { roberta } from './roberta.ts';
import { gemma } from './gemma.ts';

const FAMILIES = [gpt2, opt, llama, gptNeox, roberta, gemma] as const;

type ConfigOf<F> = F extends Family<infer C> ? C : never;

/** A parsed config.json: the union of the families' config types, told apart by `family`. */
export type ModelConfig = ConfigOf<(typeof FAMILIES)[number]>;
export type ModelFamily = ModelConfig['family'];

export const families: readonly Family<ModelConfig>[] = FAMILIES;

const BY_NAME = new Map<string, Family<ModelConfig>>(families.map((f) => [f.name, f]));

/** The family of a parsed config (or of a family name). */
export function familyOf(cfg: Pick<BaseConfig, 'family'> | ModelFamily): Family<ModelConfig> {
  const name = typeof cfg === 'string' ? cfg : cfg.family;
  const f = BY_NAME.get(name);
  if (!f) throw new LmtuneError('UNSUPPORTED', `unknown model family '${name}'`);
  return f;
}
