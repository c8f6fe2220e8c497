/**
 * Llama family (Llama 1/2/3, Mistral, Qwen2-style; HF LlamaForCausalLM): RMSNorm, rotary positions
 * (rotate-half convention), SwiGLU MLP, grouped-query attention.
 */
import { nn, type Value } from '../../engine/index.ts';
import type { LlamaConfig, ModelConfig } from '../config.ts';
import { activation, type Architecture, type ForwardContext } from '../forward.ts';

export const llama: Architecture = {
  causal: true,
  positionIndex: (p) => p,
  attentionModule: (i) => `model.layers.${i}.self_attn`,
  rotary(cfg: ModelConfig) {
    const c = cfg as LlamaConfig;
    return { dim: c.headDim, theta: c.ropeTheta, scale: c.ropeScaling?.factor ?? 1 };
  },

  body(ctx: ForwardContext): Value {
    const c = ctx.cfg as LlamaConfig;
    const { g } = ctx;
    const D = c.headDim;
    let h = g.apply1('gather', [ctx.w('model.embed_tokens.weight'), ctx.inputs.ids]);
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.layers.${i}`;
      const x = nn.rmsNorm(h, ctx.w(`${p}.input_layernorm.weight`), c.rmsNormEps);
      let q = nn.splitHeads(ctx.linear(x, `${p}.self_attn.q_proj`), c.numHeads);
      let k = nn.splitHeads(ctx.linear(x, `${p}.self_attn.k_proj`), c.numKvHeads);
      const v = nn.splitHeads(ctx.linear(x, `${p}.self_attn.v_proj`), c.numKvHeads);
      q = nn.applyRotary(q, ctx.inputs.cos!, ctx.inputs.sin!, D);
      k = nn.applyRotary(k, ctx.inputs.cos!, ctx.inputs.sin!, D);
      const a = nn.mergeHeads(ctx.attend(q, k, v, `${p}.self_attn`, 1 / Math.sqrt(D)));
      h = h.add(ctx.linear(a, `${p}.self_attn.o_proj`));
      const y = nn.rmsNorm(h, ctx.w(`${p}.post_attention_layernorm.weight`), c.rmsNormEps);
      const gate = activation(ctx.linear(y, `${p}.mlp.gate_proj`), c.activation);
      h = h.add(ctx.linear(gate.mul(ctx.linear(y, `${p}.mlp.up_proj`)), `${p}.mlp.down_proj`));
    }
    return h;
  },

  finalNorm,
  outputEmbedding,
  head: (ctx: ForwardContext, h: Value): Value => finalNorm(ctx, h).matmul(outputEmbedding(ctx), { transB: true }),
};

function finalNorm(ctx: ForwardContext, h: Value): Value {
  const c = ctx.cfg as LlamaConfig;
  return nn.rmsNorm(h, ctx.w('model.norm.weight'), c.rmsNormEps);
}

function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('lm_head.weight') ? ctx.w('lm_head.weight') : ctx.w('model.embed_tokens.weight');
}
