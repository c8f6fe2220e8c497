/**
 * GPT-NeoX / Pythia (HF GPTNeoXForCausalLM): fused q/k/v interleaved per head, partial rotary on the
 * first rotary_pct of each head, parallel residual (x + attn(ln1 x) + mlp(ln2 x)) by default, untied
 * `embed_out` head.
 */
import { nn, type Value } from '../../engine/index.ts';
import type { GptNeoxConfig, ModelConfig } from '../config.ts';
import { activation, type Architecture, type ForwardContext } from '../forward.ts';

export const gptNeox: Architecture = {
  causal: true,
  positionIndex: (p) => p,
  attentionModule: (i) => `gpt_neox.layers.${i}.attention`,
  rotary(cfg: ModelConfig) {
    const c = cfg as GptNeoxConfig;
    return { dim: c.rotaryDim, theta: c.ropeTheta, scale: c.ropeScaling?.factor ?? 1 };
  },

  body(ctx: ForwardContext): Value {
    const c = ctx.cfg as GptNeoxConfig;
    const { g } = ctx;
    const H = c.numHeads;
    const D = c.headDim;
    let h = g.apply1('gather', [ctx.w('gpt_neox.embed_in.weight'), ctx.inputs.ids]);
    const [B, T] = [ctx.batch, ctx.seq];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `gpt_neox.layers.${i}`;
      const x = nn.layerNorm(h, ctx.w(`${p}.input_layernorm.weight`), ctx.w(`${p}.input_layernorm.bias`), c.layerNormEps);
      // [B, T, H, 3D] → [B, H, T, 3D]; q, k, v are thirds of each head's slice
      const qkv = ctx.linear(x, `${p}.attention.query_key_value`).reshape([B, T, H, 3 * D]).transpose([0, 2, 1, 3]);
      let q = qkv.slice(-1, 0, D);
      let k = qkv.slice(-1, D, 2 * D);
      const v = qkv.slice(-1, 2 * D, 3 * D);
      q = nn.applyRotary(q, ctx.inputs.cos!, ctx.inputs.sin!, c.rotaryDim);
      k = nn.applyRotary(k, ctx.inputs.cos!, ctx.inputs.sin!, c.rotaryDim);
      const att = ctx.linear(nn.mergeHeads(ctx.attend(q, k, v, `${p}.attention`, 1 / Math.sqrt(D))), `${p}.attention.dense`);
      const mlp = (y: Value): Value => {
        const z = nn.layerNorm(y, ctx.w(`${p}.post_attention_layernorm.weight`), ctx.w(`${p}.post_attention_layernorm.bias`), c.layerNormEps);
        return ctx.linear(activation(ctx.linear(z, `${p}.mlp.dense_h_to_4h`), c.activation), `${p}.mlp.dense_4h_to_h`);
      };
      if (c.useParallelResidual) h = h.add(att).add(mlp(h));
      else {
        h = h.add(att);
        h = h.add(mlp(h));
      }
    }
    return h;
  },

  finalNorm,
  outputEmbedding,
  head: (ctx: ForwardContext, h: Value): Value => finalNorm(ctx, h).matmul(outputEmbedding(ctx), { transB: true }),
};

function finalNorm(ctx: ForwardContext, h: Value): Value {
  const c = ctx.cfg as GptNeoxConfig;
  return nn.layerNorm(h, ctx.w('gpt_neox.final_layer_norm.weight'), ctx.w('gpt_neox.final_layer_norm.bias'), c.layerNormEps);
}

function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('embed_out.weight') ? ctx.w('embed_out.weight') : ctx.w('gpt_neox.embed_in.weight');
}
