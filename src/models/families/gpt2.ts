/**
 * GPT-2 (HF GPT2LMHeadModel). Conv1D layers store weights as [in, out]; the LM head is tied to wte.
 * Learned absolute positions; pre-LN blocks; fused q/k/v projection `c_attn`.
 */
import { nn, type Value } from '../../engine/index.ts';
import { common, headDimOf, type Activation, type BaseConfig, type ExpectedTensor, type Family } from '../family.ts';
import { activation, type ForwardContext } from '../forward.ts';

export interface Gpt2Config extends BaseConfig {
  family: 'gpt2';
  /** n_embd, n_layer, n_head, n_positions; intermediateSize is n_inner, or 4·n_embd when null */
  layerNormEps: number; // layer_norm_epsilon
  activation: Activation; // activation_function (not hidden_act, which GPT-2 ignores)
  scaleAttnWeights: boolean; // scale_attn_weights
  scaleAttnByInverseLayerIdx: boolean; // scale_attn_by_inverse_layer_idx
  reorderAndUpcastAttn: boolean; // reorder_and_upcast_attn
}

export const gpt2: Family<Gpt2Config> = {
  name: 'gpt2',
  modelTypes: ['gpt2'],
  architectures: /^GPT2(LMHead|Model|For)/,

  parse(k) {
    const hidden = k.int('n_embd', 768);
    const heads = k.int('n_head', 12);
    return {
      family: 'gpt2',
      ...common(k),
      vocabSize: k.int('vocab_size', 50257),
      hiddenSize: hidden,
      numLayers: k.int('n_layer', 12),
      numHeads: heads,
      headDim: headDimOf(k, hidden, heads, 'n_head'),
      // GPT-2 reads n_inner only; a stray intermediate_size (tiny-random-gpt2 has 37) is ignored, as HF does
      intermediateSize: k.has('n_inner') ? k.int('n_inner') : 4 * hidden,
      maxPositions: k.int('n_positions', 1024),
      tieWordEmbeddings: k.bool('tie_word_embeddings', true),
      bosTokenId: k.optInt('bos_token_id', 50256),
      eosTokenId: k.optInt('eos_token_id', 50256),
      padTokenId: k.optInt('pad_token_id', null),
      layerNormEps: k.num('layer_norm_epsilon', 1e-5),
      activation: k.activation('activation_function', 'gelu_new'),
      scaleAttnWeights: k.bool('scale_attn_weights', true),
      scaleAttnByInverseLayerIdx: k.bool('scale_attn_by_inverse_layer_idx', false),
      reorderAndUpcastAttn: k.bool('reorder_and_upcast_attn', false),
    };
  },

  basePrefix: 'transformer.',
  embeddingName: 'transformer.wte.weight',
  headName: 'lm_head.weight',
  tensors(c) {
    const E = c.hiddenSize;
    const I = c.intermediateSize;
    const out: ExpectedTensor[] = [
      { name: 'transformer.wte.weight', shape: [c.vocabSize, E] },
      { name: 'transformer.wpe.weight', shape: [c.maxPositions, E] },
    ];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `transformer.h.${i}.`;
      // Conv1D stores weights as [in, out], the transpose of nn.Linear
      out.push(
        { name: `${p}ln_1.weight`, shape: [E] },
        { name: `${p}ln_1.bias`, shape: [E] },
        { name: `${p}attn.c_attn.weight`, shape: [E, 3 * E] },
        { name: `${p}attn.c_attn.bias`, shape: [3 * E] },
        { name: `${p}attn.c_proj.weight`, shape: [E, E] },
        { name: `${p}attn.c_proj.bias`, shape: [E] },
        { name: `${p}ln_2.weight`, shape: [E] },
        { name: `${p}ln_2.bias`, shape: [E] },
        { name: `${p}mlp.c_fc.weight`, shape: [E, I] },
        { name: `${p}mlp.c_fc.bias`, shape: [I] },
        { name: `${p}mlp.c_proj.weight`, shape: [I, E] },
        { name: `${p}mlp.c_proj.bias`, shape: [E] },
      );
    }
    out.push({ name: 'transformer.ln_f.weight', shape: [E] }, { name: 'transformer.ln_f.bias', shape: [E] });
    return out;
  },
  mlpProbe: { name: 'transformer.h.0.mlp.c_fc.weight', axis: 1 },
  kvHeads: (c) => c.numHeads,
  attentionWindow: () => null,

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

  loraTargets: ['attn\\.c_attn$'],
  weightLayout: 'in_out',

  specials: { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' },
  tokenizerClass: /^GPT2/,
  template: (t) => t.flags(false, 'gpt2'),

  highlights: (c) => ({ activation: c.activation, layerNormEps: c.layerNormEps }),
};

function finalNorm(ctx: ForwardContext, h: Value): Value {
  const c = ctx.cfg as Gpt2Config;
  return nn.layerNorm(h, ctx.w('transformer.ln_f.weight'), ctx.w('transformer.ln_f.bias'), c.layerNormEps);
}

function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('lm_head.weight') ? ctx.w('lm_head.weight') : ctx.w('transformer.wte.weight');
}
