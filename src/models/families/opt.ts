/**
 * OPT (HF OPTForCausalLM). Learned positions looked up at position + 2; pre-LN (or post-LN for
 * opt-350m); q scaled by head_dim^-½ after its projection; optional project_in/out when the embedding
 * width differs from the hidden width; LM head tied to embed_tokens.
 */
import { nn, type Value } from '../../engine/index.ts';
import { common, headDimOf, type Activation, type BaseConfig, type ExpectedTensor, type Family } from '../family.ts';
import { activation, type ForwardContext } from '../forward.ts';

export interface OptConfig extends BaseConfig {
  family: 'opt';
  /** intermediateSize is ffn_dim; maxPositions is max_position_embeddings */
  wordEmbedProjDim: number; // word_embed_proj_dim (project_in/out exist when ≠ hidden_size)
  /** learned positions are looked up at position + 2 (the table has maxPositions + 2 rows) */
  positionOffset: 2;
  doLayerNormBefore: boolean; // do_layer_norm_before (false for opt-350m: post-LN)
  /** `_remove_final_layer_norm`; the decoder has a final LN only when pre-LN and this is false */
  removeFinalLayerNorm: boolean;
  activation: Activation; // activation_function
  enableBias: boolean; // enable_bias
  layerNormElementwiseAffine: boolean; // layer_norm_elementwise_affine
  /** OPT uses torch's LayerNorm default */
  layerNormEps: number;
}

export const opt: Family<OptConfig> = {
  name: 'opt',
  modelTypes: ['opt'],
  architectures: /^OPT(For|Model)/,

  parse(k) {
    const hidden = k.int('hidden_size', 768);
    const heads = k.int('num_attention_heads', 12);
    return {
      family: 'opt',
      ...common(k),
      vocabSize: k.int('vocab_size', 50272),
      hiddenSize: hidden,
      numLayers: k.int('num_hidden_layers', 12),
      numHeads: heads,
      headDim: headDimOf(k, hidden, heads, 'num_attention_heads'),
      intermediateSize: k.int('ffn_dim', 3072),
      maxPositions: k.int('max_position_embeddings', 2048),
      tieWordEmbeddings: k.bool('tie_word_embeddings', true),
      bosTokenId: k.optInt('bos_token_id', 2),
      eosTokenId: k.optInt('eos_token_id', 2),
      padTokenId: k.optInt('pad_token_id', 1),
      wordEmbedProjDim: k.has('word_embed_proj_dim') ? k.int('word_embed_proj_dim') : hidden,
      positionOffset: 2,
      doLayerNormBefore: k.bool('do_layer_norm_before', true),
      removeFinalLayerNorm: k.bool('_remove_final_layer_norm', false),
      activation: k.activation('activation_function', 'relu'),
      enableBias: k.bool('enable_bias', true),
      layerNormElementwiseAffine: k.bool('layer_norm_elementwise_affine', true),
      layerNormEps: 1e-5,
    };
  },

  basePrefix: 'model.',
  embeddingName: 'model.decoder.embed_tokens.weight',
  headName: 'lm_head.weight',
  tensors(c) {
    const H = c.hiddenSize;
    const D = c.wordEmbedProjDim;
    const F = c.intermediateSize;
    const out: ExpectedTensor[] = [
      { name: 'model.decoder.embed_tokens.weight', shape: [c.vocabSize, D] },
      { name: 'model.decoder.embed_positions.weight', shape: [c.maxPositions + c.positionOffset, H] },
    ];
    if (D !== H) {
      out.push({ name: 'model.decoder.project_out.weight', shape: [D, H] }, { name: 'model.decoder.project_in.weight', shape: [H, D] });
    }
    const ln = (name: string): ExpectedTensor[] =>
      c.layerNormElementwiseAffine ? [{ name: `${name}.weight`, shape: [H] }, { name: `${name}.bias`, shape: [H] }] : [];
    const linear = (name: string, o: number, i: number): ExpectedTensor[] => [
      { name: `${name}.weight`, shape: [o, i] },
      ...(c.enableBias ? [{ name: `${name}.bias`, shape: [o] }] : []),
    ];
    if (c.doLayerNormBefore && !c.removeFinalLayerNorm) out.push(...ln('model.decoder.final_layer_norm'));
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.decoder.layers.${i}.`;
      out.push(
        ...linear(`${p}self_attn.k_proj`, H, H),
        ...linear(`${p}self_attn.v_proj`, H, H),
        ...linear(`${p}self_attn.q_proj`, H, H),
        ...linear(`${p}self_attn.out_proj`, H, H),
        ...ln(`${p}self_attn_layer_norm`),
        ...linear(`${p}fc1`, F, H),
        ...linear(`${p}fc2`, H, F),
        ...ln(`${p}final_layer_norm`),
      );
    }
    return out;
  },
  headInputWidth: (c) => c.wordEmbedProjDim,
  mlpProbe: { name: 'model.decoder.layers.0.fc1.weight', axis: 0 },
  kvHeads: (c) => c.numHeads,
  attentionWindow: () => null,

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

  // MeZO's choice, which is also PEFT's default
  loraTargets: ['self_attn\\.(q_proj|v_proj)$'],
  weightLayout: 'out_in',

  specials: { bos_token: '</s>', eos_token: '</s>', unk_token: '</s>', pad_token: '<pad>' },
  template: (t) => t.flags(true, 'opt (BOS is </s>)'),

  highlights: (c) => ({ activation: c.activation, doLayerNormBefore: c.doLayerNormBefore, wordEmbedProjDim: c.wordEmbedProjDim, enableBias: c.enableBias }),
};

function ln(ctx: ForwardContext, x: Value, name: string): Value {
  const c = ctx.cfg as OptConfig;
  if (!c.layerNormElementwiseAffine) {
    const ones = ctx.g.constant(new Array<number>(c.hiddenSize).fill(1), [c.hiddenSize]);
    const zeros = ctx.g.constant(new Array<number>(c.hiddenSize).fill(0), [c.hiddenSize]);
    return nn.layerNorm(x, ones, zeros, c.layerNormEps);
  }
  return nn.layerNorm(x, ctx.w(`${name}.weight`), ctx.w(`${name}.bias`), c.layerNormEps);
}

function finalNorm(ctx: ForwardContext, h: Value): Value {
  const c = ctx.cfg as OptConfig;
  const x = c.doLayerNormBefore && !c.removeFinalLayerNorm ? ln(ctx, h, 'model.decoder.final_layer_norm') : h;
  return c.wordEmbedProjDim !== c.hiddenSize ? ctx.linear(x, 'model.decoder.project_out') : x;
}

function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('lm_head.weight') ? ctx.w('lm_head.weight') : ctx.w('model.decoder.embed_tokens.weight');
}
