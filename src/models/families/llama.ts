/**
 * Llama family (Llama 1/2/3, Mistral, Qwen2-style; HF LlamaForCausalLM): RMSNorm, rotary positions
 * (rotate-half convention), SwiGLU MLP, grouped-query attention. Mistral and Qwen2 differ only in their
 * config classes' defaults, biases and sliding window.
 */
import { LmtuneError } from '../../util/errors.ts';
import { nn, type Value } from '../../engine/index.ts';
import { common, headDimOf, type Activation, type BaseConfig, type ExpectedTensor, type Family, type Keys, type LinearRopeScaling } from '../family.ts';
import { activation, type ForwardContext } from '../forward.ts';

export interface LlamaConfig extends BaseConfig {
  family: 'llama';
  numKvHeads: number; // num_key_value_heads (default num_attention_heads)
  rmsNormEps: number; // rms_norm_eps
  ropeTheta: number; // rope_theta
  ropeScaling: LinearRopeScaling | null; // rope_scaling
  /** bias on q/k/v projections: attention_bias, except Qwen2 which always has it */
  qkvBias: boolean;
  /** bias on o_proj: attention_bias (Qwen2: never) */
  outBias: boolean;
  mlpBias: boolean; // mlp_bias
  activation: Activation; // hidden_act
  /**
   * keys a query sees, itself included (HF: kv_idx > q_idx − sliding_window): Mistral's sliding_window
   * in every layer; Qwen2's only with use_sliding_window, and only if it covers every layer (see qwen2Window);
   * null = full attention
   */
  slidingWindow: number | null;
}

/** Defaults of the HF config classes that the llama family's model_types differ on. */
const LLAMA_DEFAULTS: Readonly<Record<string, { vocab: number; inter: number; kv: number | null; maxPos: number }>> = {
  llama: { vocab: 32000, inter: 11008, kv: null, maxPos: 2048 },
  mistral: { vocab: 32000, inter: 14336, kv: 8, maxPos: 4096 * 32 },
  qwen2: { vocab: 151936, inter: 22016, kv: 32, maxPos: 32768 },
};

export const llama: Family<LlamaConfig> = {
  name: 'llama',
  modelTypes: ['llama', 'mistral', 'qwen2'],
  architectures: /^(Llama|Mistral|Qwen2)(For|Model)/,

  parse(k) {
    const mt = typeof k.raw.model_type === 'string' && k.raw.model_type in LLAMA_DEFAULTS ? k.raw.model_type : 'llama';
    const d = LLAMA_DEFAULTS[mt];
    const hidden = k.int('hidden_size', 4096);
    const heads = k.int('num_attention_heads', 32);
    const kv = k.int('num_key_value_heads', d.kv ?? heads);
    if (heads % kv !== 0) {
      throw new LmtuneError('CONFIG', `${k.source}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kv}`);
    }
    const headDim = k.has('head_dim') ? k.int('head_dim') : headDimOf(k, hidden, heads, 'num_attention_heads');
    const attentionBias = k.bool('attention_bias', false);
    const isQwen2 = mt === 'qwen2';
    const numLayers = k.int('num_hidden_layers', 32);
    let slidingWindow: number | null = null;
    if (mt === 'mistral') slidingWindow = windowKey(k);
    if (isQwen2 && k.bool('use_sliding_window', false)) slidingWindow = qwen2Window(k, numLayers);
    return {
      family: 'llama',
      ...common(k),
      vocabSize: k.int('vocab_size', d.vocab),
      hiddenSize: hidden,
      numLayers,
      numHeads: heads,
      headDim,
      intermediateSize: k.int('intermediate_size', d.inter),
      maxPositions: k.int('max_position_embeddings', d.maxPos),
      tieWordEmbeddings: k.bool('tie_word_embeddings', false),
      bosTokenId: k.optInt('bos_token_id', isQwen2 ? null : 1),
      eosTokenId: k.optInt('eos_token_id', isQwen2 ? null : 2),
      padTokenId: k.optInt('pad_token_id', null),
      numKvHeads: kv,
      rmsNormEps: k.num('rms_norm_eps', 1e-6),
      ropeTheta: k.ropeTheta(null, 10000),
      ropeScaling: k.ropeScaling(),
      qkvBias: isQwen2 ? true : attentionBias,
      outBias: isQwen2 ? false : attentionBias,
      mlpBias: k.bool('mlp_bias', false),
      activation: k.activation('hidden_act', 'silu'),
      slidingWindow,
    };
  },

  basePrefix: 'model.',
  embeddingName: 'model.embed_tokens.weight',
  headName: 'lm_head.weight',
  tensors(c) {
    const H = c.hiddenSize;
    const I = c.intermediateSize;
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H] }];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `model.layers.${i}.`;
      out.push(
        { name: `${p}input_layernorm.weight`, shape: [H] },
        { name: `${p}self_attn.q_proj.weight`, shape: [q, H] },
        { name: `${p}self_attn.k_proj.weight`, shape: [kv, H] },
        { name: `${p}self_attn.v_proj.weight`, shape: [kv, H] },
        { name: `${p}self_attn.o_proj.weight`, shape: [H, q] },
      );
      if (c.qkvBias) {
        out.push(
          { name: `${p}self_attn.q_proj.bias`, shape: [q] },
          { name: `${p}self_attn.k_proj.bias`, shape: [kv] },
          { name: `${p}self_attn.v_proj.bias`, shape: [kv] },
        );
      }
      if (c.outBias) out.push({ name: `${p}self_attn.o_proj.bias`, shape: [H] });
      out.push(
        { name: `${p}post_attention_layernorm.weight`, shape: [H] },
        { name: `${p}mlp.gate_proj.weight`, shape: [I, H] },
        { name: `${p}mlp.up_proj.weight`, shape: [I, H] },
        { name: `${p}mlp.down_proj.weight`, shape: [H, I] },
      );
      if (c.mlpBias) {
        out.push(
          { name: `${p}mlp.gate_proj.bias`, shape: [I] },
          { name: `${p}mlp.up_proj.bias`, shape: [I] },
          { name: `${p}mlp.down_proj.bias`, shape: [H] },
        );
      }
    }
    out.push({ name: 'model.norm.weight', shape: [H] });
    return out;
  },
  mlpProbe: { name: 'model.layers.0.mlp.gate_proj.weight', axis: 0 },
  kvHeads: (c) => c.numKvHeads,
  attentionWindow: (c) => c.slidingWindow,

  causal: true,
  positionIndex: (p) => p,
  attentionModule: (i) => `model.layers.${i}.self_attn`,
  rotary: (c) => ({ dim: c.headDim, theta: c.ropeTheta, scale: c.ropeScaling?.factor ?? 1 }),

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

  loraTargets: ['self_attn\\.(q_proj|v_proj)$'],
  weightLayout: 'out_in',

  specials: { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' },
  tokenizerClass: /^(Code)?Llama/,
  template(t) {
    const cls = typeof t.tc.tokenizer_class === 'string' ? t.tc.tokenizer_class : '';
    // LlamaTokenizer(Fast) rebuilds its post-processor from these flags; PreTrainedTokenizerFast
    // (Llama 3, SmolLM) keeps tokenizer.json's
    if ('add_bos_token' in t.tc || 'add_eos_token' in t.tc || /^(Code)?LlamaTokenizer/.test(cls)) return t.flags(true, 'llama');
    return null;
  },

  highlights: (c) => ({
    numKvHeads: c.numKvHeads,
    activation: c.activation,
    rmsNormEps: c.rmsNormEps,
    ropeTheta: c.ropeTheta,
    ropeScaling: c.ropeScaling ? `linear ×${c.ropeScaling.factor}` : null,
    qkvBias: c.qkvBias,
    slidingWindow: c.slidingWindow,
  }),
};

/**
 * sliding_window: absent means the config class default (4096); an explicit null means no window
 * (Mistral-7B-v0.2 and later ship `"sliding_window": null`), unlike most keys, where null is the default.
 */
function windowKey(k: Keys): number | null {
  if (k.raw.sliding_window === null) return null;
  return k.int('sliding_window', 4096);
}

/**
 * Qwen2Config: with use_sliding_window, layer i uses the window when layer_types[i] is
 * 'sliding_attention', by default when i ≥ max_window_layers (28). One attention bias serves every layer
 * here, so a window is applied only when it covers all layers (none: full attention); a mix is refused.
 */
function qwen2Window(k: Keys, numLayers: number): number | null {
  const window = windowKey(k);
  if (window === null) return null;
  let sliding: boolean[];
  const lt = k.raw.layer_types;
  if (Array.isArray(lt)) {
    if (lt.length !== numLayers) throw new LmtuneError('CONFIG', `${k.source}: layer_types has ${lt.length} entries for ${numLayers} layers`);
    sliding = lt.map((t) => t === 'sliding_attention');
  } else {
    const from = k.int('max_window_layers', 28, 0);
    sliding = Array.from({ length: numLayers }, (_, i) => i >= from);
  }
  if (sliding.every((s) => !s)) return null;
  if (sliding.every((s) => s)) return window;
  throw new LmtuneError(
    'UNSUPPORTED',
    `${k.source}: use_sliding_window with a window on only ${sliding.filter((s) => s).length} of ${numLayers} layers (max_window_layers / layer_types) is not supported`,
    'lmtune applies one attention mask to every layer: set max_window_layers to 0 (all layers) or use_sliding_window to false',
  );
}

function finalNorm(ctx: ForwardContext, h: Value): Value {
  const c = ctx.cfg as LlamaConfig;
  return nn.rmsNorm(h, ctx.w('model.norm.weight'), c.rmsNormEps);
}

function outputEmbedding(ctx: ForwardContext): Value {
  return ctx.has('lm_head.weight') ? ctx.w('lm_head.weight') : ctx.w('model.embed_tokens.weight');
}
