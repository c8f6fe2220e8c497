/**
 * LoRA (Hu et al. 2021) as MeZO and PEFT use it: for each target linear module, y = W x + b + (x Aᵀ Bᵀ)·α/r
 * with A ∈ ℝ^{r×in} ~ kaiming_uniform(a=√5) = U(±1/√in) and B ∈ ℝ^{out×r} = 0, so training starts at the
 * base model. Adapter tensors are named `${module}.lora_A.weight` / `.lora_B.weight` (PEFT's names
 * without the `base_model.model.` prefix, which only the saved file carries).
 */
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import type { ModelConfig, ModelFamily } from '../models/config.ts';
import { families, familyOf } from '../models/families/index.ts';
import { WeightStore } from '../models/weights.ts';
import type { LoraSpec } from './spec.ts';

/** PEFT's default target modules per family (MeZO: q_proj and v_proj for OPT), as each family states them */
export const DEFAULT_LORA_TARGETS = Object.fromEntries(families.map((f) => [f.name, [...f.loraTargets]])) as Record<ModelFamily, string[]>;

/** how the family stores linear weights: GPT-2's Conv1D [in, out], nn.Linear [out, in] */
export function weightLayout(cfg: ModelConfig): 'in_out' | 'out_in' {
  return familyOf(cfg).weightLayout;
}

export function loraTargets(cfg: ModelConfig, base: WeightStore, spec: LoraSpec): { module: string; in: number; out: number }[] {
  const res = spec.targets.map((t) => {
    try {
      return new RegExp(t);
    } catch {
      throw new LmtuneError('CONFIG', `--lora-targets: '${t}' is not a valid regular expression`);
    }
  });
  const layout = weightLayout(cfg);
  const out: { module: string; in: number; out: number }[] = [];
  for (const name of base.names()) {
    if (!name.endsWith('.weight')) continue;
    const module = name.slice(0, -'.weight'.length);
    const shape = base.get(name).shape;
    if (shape.length !== 2 || !res.some((r) => r.test(module))) continue;
    if (/(embed|wte|wpe|lm_head|embed_out|norm|ln_)/.test(module)) continue;
    out.push({ module, in: layout === 'in_out' ? shape[0]! : shape[1]!, out: layout === 'in_out' ? shape[1]! : shape[0]! });
  }
  if (out.length === 0) throw new LmtuneError('CONFIG', `LoRA targets ${spec.targets.join(', ')} match no linear module of this ${cfg.family} model`, 'module names look like model.decoder.layers.0.self_attn.q_proj');
  return out;
}

export function initLora(cfg: ModelConfig, base: WeightStore, spec: LoraSpec, seed: number): WeightStore {
  if (spec.dropout !== 0) throw new LmtuneError('UNSUPPORTED', `LoRA dropout ${spec.dropout}: only 0 is supported (the MeZO and LESS settings)`);
  if (!(spec.rank >= 1)) throw new LmtuneError('CONFIG', `LoRA rank must be >= 1, got ${spec.rank}`);
  const rng = new Rng(seed).fork('lora-init');
  const store = new WeightStore([], base.shared);
  for (const t of loraTargets(cfg, base, spec)) {
    const bound = 1 / Math.sqrt(t.in);
    store.set(`${t.module}.lora_A.weight`, [spec.rank, t.in], Float32Array.from({ length: spec.rank * t.in }, () => (2 * rng.uniform() - 1) * bound));
    store.set(`${t.module}.lora_B.weight`, [t.out, spec.rank], new Float32Array(t.out * spec.rank));
  }
  return store;
}

/** W ← W + (α/r)·B A (transposed for Conv1D layouts): the merged model computes the adapted function */
export function mergeLora(cfg: ModelConfig, base: WeightStore, adapters: WeightStore, spec: LoraSpec): WeightStore {
  const merged = base.clone();
  const layout = weightLayout(cfg);
  const scale = spec.alpha / spec.rank;
  for (const name of adapters.names()) {
    if (!name.endsWith('.lora_A.weight')) continue;
    const module = name.slice(0, -'.lora_A.weight'.length);
    const A = adapters.get(name);
    const Bm = adapters.get(`${module}.lora_B.weight`);
    const W = merged.get(`${module}.weight`).data;
    const [r, nin] = A.shape as [number, number];
    const nout = Bm.shape[0]!;
    for (let o = 0; o < nout; o++) {
      for (let i = 0; i < nin; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += Bm.data[o * r + k]! * A.data[k * nin + i]!;
        const idx = layout === 'out_in' ? o * nin + i : i * nout + o;
        W[idx] = W[idx]! + scale * s;
      }
    }
  }
  return merged;
}
