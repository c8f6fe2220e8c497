/**
 * GPT-NeoX / Pythia (HF GPTNeoXForCausalLM): fused q/k/v interleaved per head, partial rotary on the
 * first rotary_pct of each head, parallel residual (x + attn(ln1 x) + mlp(ln2 x)) by default, untied
 * `embed_out` head.
 */
import { LmtuneError } from '../../util/errors.ts';
import { nn, type Value } from '../../engine/index.ts';
import { common, headDimOf, type Activation, type BaseConfig, type ExpectedTensor, type Family, type LinearRopeScaling } from '../family.ts';
import { activation, type ForwardContext } from '../forward.ts';

export interface GptNeoxConfig extends BaseConfig {
  family: 'gpt_neox';
  rotaryPct: number; // rotary_pct
  /** int(headDim · rotaryPct): rotary applies to the first rotaryDim features of each head */
  rotaryDim: number;
  ropeTheta: number; // rotary_emb_base (newer configs: rope_theta)
  ropeScaling: LinearRopeScaling | null;
  useParallelResidual: boolean; // use_parallel_residual
  layerNormEps: number; // layer_norm_eps
  activation: Activation; // hidden_act
  attentionBias: boolean; // attention_bias
}

export const gptNeox: Family<GptNeoxConfig> = {
  name: 'gpt_neox',
  modelTypes: ['gpt_neox'],
  architectures: /^GPTNeoX(For|Model)/,

  parse(k) {
    const hidden = k.int('hidden_size', 6144);
    const heads = k.int('num_attention_heads', 64);
    const headDim = headDimOf(k, hidden, heads, 'num_attention_heads');
    const rp = k.raw.rope_parameters as Record<string, unknown> | undefined;
    const rotaryPct = k.has('rotary_pct')
      ? k.num('rotary_pct', 0.25)
      : k.has('partial_rotary_factor')
        ? k.num('partial_rotary_factor', 0.25)
        : typeof rp?.partial_rotary_factor === 'number'
          ? rp.partial_rotary_factor
          : 0.25;
    if (!(rotaryPct > 0 && rotaryPct <= 1)) throw new LmtuneError('CONFIG', `${k.source}: rotary_pct ${rotaryPct} is not in (0, 1]`);
    return {
      family: 'gpt_neox',
      ...common(k),
      vocabSize: k.int('vocab_size', 50432),
      hiddenSize: hidden,
      numLayers: k.int('num_hidden_layers', 44),
      numHeads: heads,
      headDim,
      intermediateSize: k.int('intermediate_size', 24576),
      maxPositions: k.int('max_position_embeddings', 2048),
      tieWordEmbeddings: k.bool('tie_word_embeddings', false),
      bosTokenId: k.optInt('bos_token_id', 0),
      eosTokenId: k.optInt('eos_token_id', 2),
      padTokenId: k.optInt('pad_token_id', null),
      rotaryPct,
      rotaryDim: Math.floor(headDim * rotaryPct),
      ropeTheta: k.ropeTheta('rotary_emb_base', 10000),
      ropeScaling: k.ropeScaling(),
      useParallelResidual: k.bool('use_parallel_residual', true),
      layerNormEps: k.num('layer_norm_eps', 1e-5),
      activation: k.activation('hidden_act', 'gelu'),
      attentionBias: k.bool('attention_bias', true),
    };
  },

  basePrefix: 'gpt_neox.',
  embeddingName: 'gpt_neox.embed_in.weight',
  headName: 'embed_out.weight',
  tensors(c) {
    const H = c.hiddenSize;
    const I = c.intermediateSize;
    const out: ExpectedTensor[] = [{ name: 'gpt_neox.embed_in.weight', shape: [c.vocabSize, H] }];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `gpt_neox.layers.${i}.`;
      out.push(
        { name: `${p}input_layernorm.weight`, shape: [H] },
        { name: `${p}input_layernorm.bias`, shape: [H] },
        { name: `${p}post_attention_layernorm.weight`, shape: [H] },
        { name: `${p}post_attention_layernorm.bias`, shape: [H] },
        // rows are [head, {q,k,v}, headDim] interleaved per head, not [q; k; v]
        { name: `${p}attention.query_key_value.weight`, shape: [3 * H, H] },
        ...(c.attentionBias ? [{ name: `${p}attention.query_key_value.bias`, shape: [3 * H] }] : []),
        { name: `${p}attention.dense.weight`, shape: [H, H] },
        ...(c.attentionBias ? [{ name: `${p}attention.dense.bias`, shape: [H] }] : []),
        { name: `${p}mlp.dense_h_to_4h.weight`, shape: [I, H] },
        { name: `${p}mlp.dense_h_to_4h.bias`, shape: [I] },
        { name: `${p}mlp.dense_4h_to_h.weight`, shape: [H, I] },
        { name: `${p}mlp.dense_4h_to_h.bias`, shape: [H] },
      );
    }
    out.push({ name: 'gpt_neox.final_layer_norm.weight', shape: [H] }, { name: 'gpt_neox.final_layer_norm.bias', shape: [H] });
    return out;
  },
  mlpProbe: { name: 'gpt_neox.layers.0.mlp.dense_h_to_4h.weight', axis: 0 },
  kvHeads: (c) => c.numHeads,
  attentionWindow: () => null,

  causal: true,
  positionIndex: (p) => p,
  attentionModule: (i) => `gpt_neox.layers.${i}.attention`,
  rotary: (c) => ({ dim: c.rotaryDim, theta: c.ropeTheta, scale: c.ropeScaling?.factor ?? 1 }),

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

  loraTargets: ['attention\\.query_key_value$'],
  weightLayout: 'out_in',

  specials: { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' },
  tokenizerClass: /^GPTNeoX/,
  template: (t) => t.flags(false, 'gpt_neox'),

  highlights: (c) => ({ activation: c.activation, rotaryDim: c.rotaryDim, ropeTheta: c.ropeTheta, useParallelResidual: c.useParallelResidual, layerNormEps: c.layerNormEps }),
};

function finalNorm(ctx: ForwardContext, h: Value): Value {
  const c = ctx.cfg as GptNeoxConfig;
  return nn.layerNorm(h, ctx.w('gpt_neox.final_layer_norm.weight'), ctx.w('gpt_neox.final_layer_norm.bias'), c.layerNormEps);
}

function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('embed_out.weight') ? ctx.w('embed_out.weight') : ctx.w('gpt_neox.embed_in.weight');
}
