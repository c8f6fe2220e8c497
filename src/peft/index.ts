/** Parameter-efficient fine-tuning: attach LoRA or prefix adapters to a loaded model. */
import type { TransformerModel } from '../heads/model.ts';
import { DEFAULT_LORA_TARGETS, initLora } from './lora.ts';
import { initPrefix } from './prefix.ts';
import type { PeftSpec } from './spec.ts';

export type { PeftSpec, LoraSpec, PrefixSpec, FullSpec } from './spec.ts';
export { DEFAULT_LORA_TARGETS, initLora, mergeLora, loraTargets, weightLayout } from './lora.ts';
export { initPrefix } from './prefix.ts';

/** Creates fresh adapters for `spec` (seeded) and attaches them; full fine-tuning attaches nothing. */
export async function attachPeft(model: TransformerModel, spec: PeftSpec, seed: number): Promise<void> {
  if (spec.kind === 'full') {
    model.setAdapters(spec, null);
    return;
  }
  if (spec.kind === 'lora') {
    const s = spec.targets.length ? spec : { ...spec, targets: DEFAULT_LORA_TARGETS[model.cfg.family] };
    model.setAdapters(s, initLora(model.cfg, model.weights, s, seed));
    return;
  }
  const adapters = await initPrefix(model, spec, seed);
  model.setAdapters(spec, adapters);
}
