/**
 * Gemma family (Gemma 1; HF GemmaForCausalLM): the Llama block with four differences: RMSNorm scales by
 * (1 + w) (weights stored as w, zero at init), the token embeddings are multiplied by √hidden_size, the MLP
 * is GeGLU (tanh-approximated GELU gate), and head_dim is its own setting, so q_proj and o_proj are
 * heads·head_dim wide rather than hidden_size. Multi-query / grouped KV heads, rotary over the whole head,
 * head tied to the token embedding, no biases unless attention_bias.
 */
import { LmtuneError } from '../../util/errors.ts';
import { nn, type Value } from '../../engine/index.ts';
import { common, type Activation, type BaseConfig, type ExpectedTensor, type Family, type LinearRopeScaling } from '../family.ts';
import { activation, type ForwardContext } from '../forward.ts';

export interface GemmaConfig extends BaseConfig {
  family: 'gemma';
  /** headDim is head_dim (default 256), decoupled from hidden_size / num_attention_heads */
  numKvHeads: number; // num_key_value_heads
  rmsNormEps: number; // rms_norm_eps; the norms scale by (1 + weight)
  ropeTheta: number; // rope_theta
  ropeScaling: LinearRopeScaling | null; // rope_scaling
  attentionBias: boolean; // attention_bias (q, k, v and o)
  /** the GeGLU gate's activation: hidden_activation, else gelu_pytorch_tanh (see parse) */
  activation: Activation;
}

export const gemma: Family<GemmaConfig> = {
  name: 'gemma',
  modelTypes: ['gemma'],
  architectures: /^Gemma(For|Model)/,

  /**
   * GemmaConfig (Gemma 1; model_type 'gemma'). The activation follows the rule transformers 4.38.2–4.47
   * introduced with hidden_activation (PR #29402): hidden_activation when set, else gelu_pytorch_tanh,
   * whatever hidden_act says. The Gemma 1.0 checkpoints ship hidden_act 'gelu' (exact GELU), which is not
   * the activation they were trained with; transformers ≥ 4.48 reads hidden_act again and so runs those
   * checkpoints with exact GELU. We keep the tanh approximation the weights expect.
   */
  parse(k) {
    const heads = k.int('num_attention_heads', 16);
    const kv = k.int('num_key_value_heads', 16);
    if (heads % kv !== 0) {
      throw new LmtuneError('CONFIG', `${k.source}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kv}`);
    }
    return {
      family: 'gemma',
      ...common(k),
      vocabSize: k.int('vocab_size', 256000),
      hiddenSize: k.int('hidden_size', 3072),
      numLayers: k.int('num_hidden_layers', 28),
      numHeads: heads,
      headDim: k.int('head_dim', 256),
      intermediateSize: k.int('intermediate_size', 24576),
      maxPositions: k.int('max_position_embeddings', 8192),
      tieWordEmbeddings: k.bool('tie_word_embeddings', true),
      bosTokenId: k.optInt('bos_token_id', 2),
      eosTokenId: k.optInt('eos_token_id', 1),
      padTokenId: k.optInt('pad_token_id', 0),
      numKvHeads: kv,
      rmsNormEps: k.num('rms_norm_eps', 1e-6),
      ropeTheta: k.ropeTheta(null, 10000),
      ropeScaling: k.ropeScaling(),
      attentionBias: k.bool('attention_bias', false),
      activation: k.activation('hidden_activation', 'gelu_pytorch_tanh'),
    };
  },

  basePrefix: 'model.',
  embeddingName: 'model.embed_tokens.weight',
  headName: 'lm_head.weight',
  tensors(c) {
    const H = c.hiddenSize;
    const I = c.intermediateSize;
    // head_dim is its own setting: q_proj/o_proj are heads·head_dim wide, which need not equal hidden_size
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const linear = (name: string, o: number, i: number, bias: boolean): ExpectedTensor[] => [
      { name: `${name}.weight`, shape: [o, i] },
      ...(bias ? [{ name: `${name}.bias`, shape: [o] }] : []),
    ];
    const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H] }];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.layers.${i}.`;
      out.push(
        { name: `${p}input_layernorm.weight`, shape: [H] },
        ...linear(`${p}self_attn.q_proj`, q, H, c.attentionBias),
        ...linear(`${p}self_attn.k_proj`, kv, H, c.attentionBias),
        ...linear(`${p}self_attn.v_proj`, kv, H, c.attentionBias),
        ...linear(`${p}self_attn.o_proj`, H, q, c.attentionBias),
        { name: `${p}post_attention_layernorm.weight`, shape: [H] },
        ...linear(`${p}mlp.gate_proj`, I, H, false),
        ...linear(`${p}mlp.up_proj`, I, H, false),
        ...linear(`${p}mlp.down_proj`, H, I, false),
      );
    }
    out.push({ name: 'model.norm.weight', shape: [H] });
    return out;
  },
  mlpProbe: { name: 'model.layers.0.mlp.gate_proj.weight', axis: 0 },
  kvHeads: (c) => c.numKvHeads,
  attentionWindow: () => null,

  causal: true,
  positionIndex: (p) => p,
  attentionModule: (i) => `model.layers.${i}.self_attn`,
  rotary: (c) => ({ dim: c.headDim, theta: c.ropeTheta, scale: c.ropeScaling?.factor ?? 1 }),

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

  loraTargets: ['self_attn\\.(q_proj|v_proj)$'],
  weightLayout: 'out_in',

  specials: { bos_token: '<bos>', eos_token: '<eos>', unk_token: '<unk>', pad_token: '<pad>' },
  tokenizerClass: /^Gemma/,
  template(t) {
    // GemmaTokenizer(Fast) rebuilds its post-processor from the same flags as Llama's: <bos> first by default
    const cls = typeof t.tc.tokenizer_class === 'string' ? t.tc.tokenizer_class : '';
    if ('add_bos_token' in t.tc || 'add_eos_token' in t.tc || /^GemmaTokenizer/.test(cls)) return t.flags(true, 'gemma');
    return null;
  },

  highlights: (c) => ({
    numKvHeads: c.numKvHeads,
    activation: c.activation,
    rmsNormEps: c.rmsNormEps,
    ropeTheta: c.ropeTheta,
    ropeScaling: c.ropeScaling ? `linear ×${c.ropeScaling.factor}` : null,
    attentionBias: c.attentionBias,
  }),
};

/** GemmaRMSNorm: x·rsqrt(mean(x²) + eps)·(1 + w); the graph keeps w a parameter, so its gradient is w's */
function rmsNorm(ctx: ForwardContext, x: Value, weight: string): Value {
  const c = ctx.cfg as GemmaConfig;
  return nn.rmsNorm(x, ctx.w(weight).add(1), c.rmsNormEps);
}

function finalNorm(ctx: ForwardContext, h: Value): Value {
  return rmsNorm(ctx, h, 'model.norm.weight');
}

/** the tied token embedding (Gemma's configs tie); an untied checkpoint's lm_head when it has one */
function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('lm_head.weight') ? ctx.w('lm_head.weight') : ctx.w('model.embed_tokens.weight');
}
