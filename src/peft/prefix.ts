/**
 * Prefix-tuning as in MeZO (prefix.py): every attention module gets m trainable key and value slots,
 * `${attn}.prefix_keys` / `.prefix_values` of shape [m, Hkv·D], prepended to its keys and values and
 * visible to every query. With initByRealActivations the slots start as the frozen model's own keys and
 * values for m uniformly random tokens (the paper calls this crucial for MeZO's stability).
 */
import { Rng } from '../util/rng.ts';
import { WeightStore } from '../models/weights.ts';
import type { TransformerModel } from '../heads/model.ts';
import { kvHeads as kvHeadsOf } from '../models/config.ts';
import type { PrefixSpec } from './spec.ts';

export async function initPrefix(model: TransformerModel, spec: PrefixSpec, seed: number): Promise<WeightStore> {
  const cfg = model.cfg;
  const kvHeads = kvHeadsOf(cfg);
  const D = cfg.headDim;
  const m = spec.slots;
  const rng = new Rng(seed).fork('prefix-init');
  const store = new WeightStore([], model.weights.shared);
  let kv: { k: Float64Array; v: Float64Array }[] | null = null;
  if (spec.initByRealActivations) {
    const ids = Array.from({ length: m }, () => rng.int(cfg.vocabSize));
    kv = await model.keyValues(ids);
  }
  for (let l = 0; l < cfg.numLayers; l++) {
    const module = model.arch.attentionModule(l);
    for (const which of ['k', 'v'] as const) {
      const data = new Float32Array(m * kvHeads * D);
      if (kv) {
        // [Hkv, m, D] → [m, Hkv·D]
        const src = kv[l]![which];
        for (let h = 0; h < kvHeads; h++) for (let s = 0; s < m; s++) for (let d = 0; d < D; d++) data[s * kvHeads * D + h * D + d] = src[(h * m + s) * D + d]!;
      } else {
        for (let i = 0; i < data.length; i++) data[i] = rng.normal() * 0.02;
      }
      store.set(`${module}.prefix_${which === 'k' ? 'keys' : 'values'}`, [m, kvHeads * D], data);
    }
  }
  return store;
}
