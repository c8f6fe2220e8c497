/**
 * Which parameters get weight decay. The usual rule (Hugging Face Trainer, nanoGPT, the MeZO reference)
 * exempts biases and normalization weights; naming differs per family, so the predicates look at names.
 */
import type { DecayFilter } from './types.ts';

const LN_SEGMENT = /(^|[._])ln(_|\d|\.|$)/;

/**
 * True for biases and normalization weights in every family we load: `bias`, `ln_1`/`ln_f` (GPT-2),
 * `layernorm`/`layer_norm`/`LayerNorm` (BERT, OPT, Llama's `input_layernorm`), `norm` (Llama `model.norm`,
 * RMSNorm). Case-insensitive.
 */
export function isBiasOrNorm(name: string): boolean {
  const n = name.toLowerCase();
  return n.includes('bias') || n.includes('norm') || LN_SEGMENT.test(n);
}

/** Default decay filter for every optimizer here: decay everything except biases and norms. */
export const decayAllButBiasAndNorm: DecayFilter = (name) => !isBiasOrNorm(name);

/** Decay every parameter (torch's own default when weight_decay is set on a single param group). */
export const decayEverything: DecayFilter = () => true;

/**
 * The MeZO reference's literal rule (large_models/trainer.py, zo_update): no decay when the name contains
 * "bias", "layer_norm" or "layernorm" (case-sensitive). It misses GPT-2's `ln_1`/`ln_f` and BERT's
 * `LayerNorm`; use it only to reproduce the reference on OPT names.
 */
export const mezoReferenceDecayFilter: DecayFilter = (name) =>
  !(name.includes('bias') || name.includes('layer_norm') || name.includes('layernorm'));
