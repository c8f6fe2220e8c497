/** Tiny random models of every family, as raw HF config.json objects plus canonical-name weights. */
import { Rng } from '../util/rng.ts';
import { expectedTensors, parseModelConfig, type ModelFamily } from './config.ts';
import { WeightStore } from './weights.ts';

export function tinyConfig(family: ModelFamily, over: Record<string, unknown> = {}): Record<string, unknown> {
  const common = { vocab_size: 61, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 };
  switch (family) {
    case 'gpt2':
      return { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: 16, n_layer: 2, n_head: 4, n_positions: 64, n_inner: null, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, ...common, ...over };
    case 'opt':
      return { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 16, ffn_dim: 40, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 64, do_layer_norm_before: true, word_embed_proj_dim: 16, activation_function: 'relu', enable_bias: true, layer_norm_elementwise_affine: true, ...common, pad_token_id: 1, bos_token_id: 2, ...over };
    case 'llama':
      return { model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: false, ...common, ...over };
    case 'gpt_neox':
      return { model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'], hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 2, max_position_embeddings: 64, rotary_pct: 0.5, rotary_emb_base: 10000, use_parallel_residual: true, layer_norm_eps: 1e-5, hidden_act: 'gelu', tie_word_embeddings: false, ...common, ...over };
    case 'roberta':
      return { model_type: 'roberta', architectures: ['RobertaForMaskedLM'], hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, max_position_embeddings: 66, type_vocab_size: 1, layer_norm_eps: 1e-5, hidden_act: 'gelu', ...common, pad_token_id: 1, bos_token_id: 0, ...over };
    case 'gemma':
      return { model_type: 'gemma', architectures: ['GemmaForCausalLM'], hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 4, max_position_embeddings: 64, rms_norm_eps: 1e-6, rope_theta: 10000, hidden_activation: 'gelu_pytorch_tanh', tie_word_embeddings: true, ...common, ...over };
  }
}

/** random weights (N(0, 0.2²); norms near 1) for every tensor the config implies; tied heads omitted */
export function randomWeights(raw: Record<string, unknown>, seed = 0): WeightStore {
  const cfg = parseModelConfig(raw, '(test)');
  const rng = new Rng(seed);
  const store = new WeightStore();
  for (const t of expectedTensors(cfg)) {
    if (t.tiedTo) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const isNorm = /(norm|ln_|LayerNorm)[^.]*\.weight$/.test(t.name) || /layernorm\.weight$/.test(t.name);
    const data = Float32Array.from({ length: n }, () => (isNorm ? 1 + 0.1 * rng.normal() : 0.2 * rng.normal()));
    store.set(t.name, t.shape, data);
  }
  return store;
}
