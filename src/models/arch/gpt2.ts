/**
 * GPT-2 (HF GPT2LMHeadModel). Conv1D layers store weights as [in, out]; the LM head is tied to wte.
 * Learned absolute positions; pre-LN blocks; fused q/k/v projection `c_attn`.
 */
import { nn, type Value } from '../../engine/index.ts';
import type { Gpt2Config } from '../config.ts';
import { activation, type Architecture, type ForwardContext } from '../forward.ts';

export const gpt2: Architecture = {
  causal: true,
  positionIndex: (p) => p,
  attentionModule: (i) => `transformer.h.${i}.attn`,
  rotary: () => null,

  body(ctx: ForwardContext): Value {
    const c = ctx.cfg as Gpt2Config;
    const { g } = ctx;
    const E = c.hiddenSize;
    const H = c.numHeads;
    let h = g.apply1('gather', [ctx.w('transformer.wte.weight'), ctx.inputs.ids]).add(g.apply1('gather', [ctx.w('transformer.wpe.weight'), ctx.inputs.positions]));
    for (let i = 0; i < c.numLayers; i++) {
      const p = `transformer.h.${i}`;
      const a = nn.layerNorm(h, ctx.w(`${p}.ln_1.weight`), ctx.w(`${p}.ln_1.bias`), c.layerNormEps);
      const qkv = ctx.linear(a, `${p}.attn.c_attn`, 'in_out');
      const q = nn.splitHeads(qkv.slice(-1, 0, E), H);
      const k = nn.splitHeads(qkv.slice(-1, E, 2 * E), H);
      const v = nn.splitHeads(qkv.slice(-1, 2 * E, 3 * E), H);
      let scale = c.scaleAttnWeights ? 1 / Math.sqrt(c.headDim) : 1;
      if (c.scaleAttnByInverseLayerIdx) scale /= i + 1;
      const att = nn.mergeHeads(ctx.attend(q, k, v, `${p}.attn`, scale));
      h = h.add(ctx.linear(att, `${p}.attn.c_proj`, 'in_out'));
      const m = nn.layerNorm(h, ctx.w(`${p}.ln_2.weight`), ctx.w(`${p}.ln_2.bias`), c.layerNormEps);
      const f = activation(ctx.linear(m, `${p}.mlp.c_fc`, 'in_out'), c.activation);
      h = h.add(ctx.linear(f, `${p}.mlp.c_proj`, 'in_out'));
    }
    return h;
  },

  finalNorm,
  outputEmbedding,
  head: (ctx: ForwardContext, h: Value): Value => finalNorm(ctx, h).matmul(outputEmbedding(ctx), { transB: true }),
};

function finalNorm(ctx: ForwardContext, h: Value): Value {
  const c = ctx.cfg as Gpt2Config;
  return nn.layerNorm(h, ctx.w('transformer.ln_f.weight'), ctx.w('transformer.ln_f.bias'), c.layerNormEps);
}

function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('lm_head.weight') ? ctx.w('lm_head.weight') : ctx.w('transformer.wte.weight');
}
