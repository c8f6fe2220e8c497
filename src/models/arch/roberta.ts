/**
 * RoBERTa with its masked-LM head (HF RobertaForMaskedLM): post-LN BERT blocks, bidirectional
 * attention, positions counted from pad_token_id + 1, head dense → gelu → LayerNorm → decoder (tied to
 * the word embeddings) + bias.
 */
import { nn, type Value } from '../../engine/index.ts';
import type { RobertaConfig } from '../config.ts';
import { activation, type Architecture, type ForwardContext } from '../forward.ts';

export const roberta: Architecture = {
  causal: false,
  positionIndex: (p, cfg) => p + (cfg as RobertaConfig).positionOffset,
  attentionModule: (i) => `roberta.encoder.layer.${i}.attention`,
  rotary: () => null,

  body(ctx: ForwardContext): Value {
    const c = ctx.cfg as RobertaConfig;
    const { g } = ctx;
    const e = 'roberta.embeddings';
    const tokenType = ctx.w(`${e}.token_type_embeddings.weight`).slice(0, 0, 1).reshape([c.hiddenSize]);
    let h = g
      .apply1('gather', [ctx.w(`${e}.word_embeddings.weight`), ctx.inputs.ids])
      .add(g.apply1('gather', [ctx.w(`${e}.position_embeddings.weight`), ctx.inputs.positions]))
      .add(tokenType);
    h = nn.layerNorm(h, ctx.w(`${e}.LayerNorm.weight`), ctx.w(`${e}.LayerNorm.bias`), c.layerNormEps);
    for (let i = 0; i < c.numLayers; i++) {
      const p = `roberta.encoder.layer.${i}`;
      const q = nn.splitHeads(ctx.linear(h, `${p}.attention.self.query`), c.numHeads);
      const k = nn.splitHeads(ctx.linear(h, `${p}.attention.self.key`), c.numHeads);
      const v = nn.splitHeads(ctx.linear(h, `${p}.attention.self.value`), c.numHeads);
      const a = ctx.linear(nn.mergeHeads(ctx.attend(q, k, v, `${p}.attention`, 1 / Math.sqrt(c.headDim))), `${p}.attention.output.dense`);
      h = nn.layerNorm(a.add(h), ctx.w(`${p}.attention.output.LayerNorm.weight`), ctx.w(`${p}.attention.output.LayerNorm.bias`), c.layerNormEps);
      const f = ctx.linear(activation(ctx.linear(h, `${p}.intermediate.dense`), c.activation), `${p}.output.dense`);
      h = nn.layerNorm(f.add(h), ctx.w(`${p}.output.LayerNorm.weight`), ctx.w(`${p}.output.LayerNorm.bias`), c.layerNormEps);
    }
    return h;
  },

  head(ctx: ForwardContext, h: Value): Value {
    const c = ctx.cfg as RobertaConfig;
    let x = activation(ctx.linear(h, 'lm_head.dense'), 'gelu');
    x = nn.layerNorm(x, ctx.w('lm_head.layer_norm.weight'), ctx.w('lm_head.layer_norm.bias'), c.layerNormEps);
    const dec = ctx.has('lm_head.decoder.weight') ? ctx.w('lm_head.decoder.weight') : ctx.w('roberta.embeddings.word_embeddings.weight');
    return x.matmul(dec, { transB: true }).add(ctx.w('lm_head.bias'));
  },
};
