/**
 * Gemma family (Gemma 1; HF GemmaForCausalLM): the Llama block with four differences: RMSNorm scales by
 * (1 + w) (weights stored as w, zero at init), the token embeddings are multiplied by √hidden_size, the MLP
 * is GeGLU (tanh-approximated GELU gate), and head_dim is its own setting, so q_proj and o_proj are
 * heads·head_dim wide rather than hidden_size. Multi-query / grouped KV heads, rotary over the whole head,
 * head tied to the token embedding, no biases unless attention_bias.
 */
import { nn, type Value } from '../../engine/index.ts';
import type { GemmaConfig, ModelConfig } from '../config.ts';
import { activation, type Architecture, type ForwardContext } from '../forward.ts';

/** GemmaRMSNorm: x·rsqrt(mean(x²) + eps)·(1 + w); the graph keeps w a parameter, so its gradient is w's */
function rmsNorm(ctx: ForwardContext, x: Value, weight: string): Value {
  const c = ctx.cfg as GemmaConfig;
  return nn.rmsNorm(x, ctx.w(weight).add(1), c.rmsNormEps);
}

export const gemma: Architecture = {
  causal: true,
  positionIndex: (p) => p,
  attentionModule: (i) => `model.layers.${i}.self_attn`,
  rotary(cfg: ModelConfig) {
    const c = cfg as GemmaConfig;
    return { dim: c.headDim, theta: c.ropeTheta, scale: c.ropeScaling?.factor ?? 1 };
  },

  body(ctx: ForwardContext): Value {
    const c = ctx.cfg as GemmaConfig;
    const { g } = ctx;
    const D = c.headDim;
    // HF builds the normalizer as torch.tensor(hidden_size ** 0.5, dtype=hidden_states.dtype): rounded to the
    // activations' type (float32 graphs: float32, as here on onnxruntime; the ref backend keeps float64). In
    // bfloat16 HF's √3072 becomes 55.5, not 55.43; lmtune never computes in bfloat16.
    let h = g.apply1('gather', [ctx.w('model.embed_tokens.weight'), ctx.inputs.ids]).mul(Math.sqrt(c.hiddenSize));
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.layers.${i}`;
      const x = rmsNorm(ctx, h, `${p}.input_layernorm.weight`);
      let q = nn.splitHeads(ctx.linear(x, `${p}.self_attn.q_proj`), c.numHeads);
      let k = nn.splitHeads(ctx.linear(x, `${p}.self_attn.k_proj`), c.numKvHeads);
      const v = nn.splitHeads(ctx.linear(x, `${p}.self_attn.v_proj`), c.numKvHeads);
      q = nn.applyRotary(q, ctx.inputs.cos!, ctx.inputs.sin!, D);
      k = nn.applyRotary(k, ctx.inputs.cos!, ctx.inputs.sin!, D);
      const a = nn.mergeHeads(ctx.attend(q, k, v, `${p}.self_attn`, 1 / Math.sqrt(D)));
      h = h.add(ctx.linear(a, `${p}.self_attn.o_proj`));
      const y = rmsNorm(ctx, h, `${p}.post_attention_layernorm.weight`);
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
  return rmsNorm(ctx, h, 'model.norm.weight');
}

/** the tied token embedding (Gemma's configs tie); an untied checkpoint's lm_head when it has one */
function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('lm_head.weight') ? ctx.w('lm_head.weight') : ctx.w('model.embed_tokens.weight');
}
