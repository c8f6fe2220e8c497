/**
 * OPT (HF OPTForCausalLM). Learned positions looked up at position + 2; pre-LN (or post-LN for
 * opt-350m); q scaled by head_dim^-½ after its projection; optional project_in/out when the embedding
 * width differs from the hidden width; LM head tied to embed_tokens.
 */
import { nn, type Value } from '../../engine/index.ts';
import type { OptConfig } from '../config.ts';
import { activation, type Architecture, type ForwardContext } from '../forward.ts';

function ln(ctx: ForwardContext, x: Value, name: string): Value {
  const c = ctx.cfg as OptConfig;
  if (!c.layerNormElementwiseAffine) {
    const ones = ctx.g.constant(new Array<number>(c.hiddenSize).fill(1), [c.hiddenSize]);
    const zeros = ctx.g.constant(new Array<number>(c.hiddenSize).fill(0), [c.hiddenSize]);
    return nn.layerNorm(x, ones, zeros, c.layerNormEps);
  }
  return nn.layerNorm(x, ctx.w(`${name}.weight`), ctx.w(`${name}.bias`), c.layerNormEps);
}

export const opt: Architecture = {
  causal: true,
  positionIndex: (p) => p + 2,
  attentionModule: (i) => `model.decoder.layers.${i}.self_attn`,
  rotary: () => null,

  body(ctx: ForwardContext): Value {
    const c = ctx.cfg as OptConfig;
    const { g } = ctx;
    const H = c.numHeads;
    let x = g.apply1('gather', [ctx.w('model.decoder.embed_tokens.weight'), ctx.inputs.ids]);
    if (c.wordEmbedProjDim !== c.hiddenSize) x = ctx.linear(x, 'model.decoder.project_in');
    let h = x.add(g.apply1('gather', [ctx.w('model.decoder.embed_positions.weight'), ctx.inputs.positions]));
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.decoder.layers.${i}`;
      let r = h;
      let a = c.doLayerNormBefore ? ln(ctx, h, `${p}.self_attn_layer_norm`) : h;
      const q = nn.splitHeads(ctx.linear(a, `${p}.self_attn.q_proj`).mul(1 / Math.sqrt(c.headDim)), H);
      const k = nn.splitHeads(ctx.linear(a, `${p}.self_attn.k_proj`), H);
      const v = nn.splitHeads(ctx.linear(a, `${p}.self_attn.v_proj`), H);
      a = nn.mergeHeads(ctx.attend(q, k, v, `${p}.self_attn`, 1));
      h = r.add(ctx.linear(a, `${p}.self_attn.out_proj`));
      if (!c.doLayerNormBefore) h = ln(ctx, h, `${p}.self_attn_layer_norm`);
      r = h;
      let f = c.doLayerNormBefore ? ln(ctx, h, `${p}.final_layer_norm`) : h;
      f = ctx.linear(activation(ctx.linear(f, `${p}.fc1`), c.activation), `${p}.fc2`);
      h = r.add(f);
      if (!c.doLayerNormBefore) h = ln(ctx, h, `${p}.final_layer_norm`);
    }
    return h;
  },

  finalNorm,
  outputEmbedding,
  head: (ctx: ForwardContext, h: Value): Value => finalNorm(ctx, h).matmul(outputEmbedding(ctx), { transB: true }),
};

function finalNorm(ctx: ForwardContext, h: Value): Value {
  const c = ctx.cfg as OptConfig;
  const x = c.doLayerNormBefore && !c.removeFinalLayerNorm ? ln(ctx, h, 'model.decoder.final_layer_norm') : h;
  return c.wordEmbedProjDim !== c.hiddenSize ? ctx.linear(x, 'model.decoder.project_out') : x;
}

function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('lm_head.weight') ? ctx.w('lm_head.weight') : ctx.w('model.decoder.embed_tokens.weight');
}
