/**
 * Hugging Face `config.json` → a normalized, typed config per architecture family, plus the contract with
 * the checkpoint: the tensor names (HF's, with the family's prefix) and shapes each config implies.
 *
 * Field names are uniform across families (hiddenSize, numLayers, intermediateSize, ...); each comment
 * names the HF key it comes from. Missing keys take the default of the HF config class, so a config that
 * loads in transformers parses the same here; `checkTensors` then catches any config/weights mismatch.
 */
import { LmtuneError } from '../util/errors.ts';
import { readJsonIn, type Folder } from '../util/folder.ts';
import { asFolder } from '../util/host.ts';

export type ModelFamily = 'gpt2' | 'opt' | 'llama' | 'gpt_neox' | 'roberta' | 'gemma';

/** Activations as HF names them (`swish` is read as `silu`, `gelu_python` as `gelu`). */
export type Activation = 'gelu' | 'gelu_new' | 'gelu_fast' | 'gelu_pytorch_tanh' | 'quick_gelu' | 'relu' | 'silu';

interface BaseConfig {
  /** the config.json this came from (for messages) */
  source: string;
  /** `model_type` as written (e.g. 'mistral' for the llama family) */
  modelType: string;
  architectures: string[];
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  /** width of the MLP's hidden layer */
  intermediateSize: number;
  /** longest usable sequence (tokens), after any position offset */
  maxPositions: number;
  /** the LM head shares the token embedding (then checkpoints usually omit the head tensor) */
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
  /** the parsed config.json, untouched */
  raw: Readonly<Record<string, unknown>>;
}

export interface Gpt2Config extends BaseConfig {
  family: 'gpt2';
  /** n_embd, n_layer, n_head, n_positions; intermediateSize is n_inner, or 4·n_embd when null */
  layerNormEps: number; // layer_norm_epsilon
  activation: Activation; // activation_function (not hidden_act, which GPT-2 ignores)
  scaleAttnWeights: boolean; // scale_attn_weights
  scaleAttnByInverseLayerIdx: boolean; // scale_attn_by_inverse_layer_idx
  reorderAndUpcastAttn: boolean; // reorder_and_upcast_attn
}

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

export interface LinearRopeScaling {
  type: 'linear';
  factor: number;
}

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
   * in every layer; Qwen2's only with use_sliding_window, and only if it covers every layer (see parseLlama);
   * null = full attention
   */
  slidingWindow: number | null;
}

export interface GemmaConfig extends BaseConfig {
  family: 'gemma';
  /** headDim is head_dim (default 256), decoupled from hidden_size / num_attention_heads */
  numKvHeads: number; // num_key_value_heads
  rmsNormEps: number; // rms_norm_eps; the norms scale by (1 + weight)
  ropeTheta: number; // rope_theta
  ropeScaling: LinearRopeScaling | null; // rope_scaling
  attentionBias: boolean; // attention_bias (q, k, v and o)
  /** the GeGLU gate's activation: hidden_activation, else gelu_pytorch_tanh (see parseGemma) */
  activation: Activation;
}

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

export interface RobertaConfig extends BaseConfig {
  family: 'roberta';
  /** positions start at pad_token_id + 1; the table has maxPositions + positionOffset rows */
  positionOffset: number;
  padTokenId: number;
  typeVocabSize: number; // type_vocab_size
  layerNormEps: number; // layer_norm_eps
  activation: Activation; // hidden_act
}

export type ModelConfig = Gpt2Config | OptConfig | LlamaConfig | GptNeoxConfig | RobertaConfig | GemmaConfig;

const MODEL_TYPES: Readonly<Record<string, ModelFamily>> = {
  gpt2: 'gpt2',
  opt: 'opt',
  llama: 'llama',
  mistral: 'llama',
  qwen2: 'llama',
  gpt_neox: 'gpt_neox',
  roberta: 'roberta',
  gemma: 'gemma',
};

const ARCHITECTURES: readonly (readonly [RegExp, ModelFamily])[] = [
  [/^GPT2(LMHead|Model|For)/, 'gpt2'],
  [/^OPT(For|Model)/, 'opt'],
  [/^(Llama|Mistral|Qwen2)(For|Model)/, 'llama'],
  [/^GPTNeoX(For|Model)/, 'gpt_neox'],
  [/^Roberta(For|Model)/, 'roberta'],
  [/^Gemma(For|Model)/, 'gemma'],
];

const SUPPORTED_HINT = `supported model_type values: ${Object.keys(MODEL_TYPES).join(', ')}`;

/** The family of a parsed config.json: `model_type` decides; `architectures` is the fallback. */
export function detectFamily(raw: Readonly<Record<string, unknown>>, source: string): ModelFamily {
  const mt = raw.model_type;
  if (typeof mt === 'string' && mt !== '') {
    const f = MODEL_TYPES[mt];
    if (f) return f;
    throw new LmtuneError('UNSUPPORTED', `${source}: model_type '${mt}' is not supported`, SUPPORTED_HINT);
  }
  const archs = Array.isArray(raw.architectures) ? raw.architectures.filter((a): a is string => typeof a === 'string') : [];
  for (const a of archs) for (const [re, f] of ARCHITECTURES) if (re.test(a)) return f;
  throw new LmtuneError(
    'UNSUPPORTED',
    `${source}: cannot tell the architecture (no model_type${archs.length ? `; architectures ${JSON.stringify(archs)} not supported` : ', no architectures'})`,
    SUPPORTED_HINT,
  );
}

const LAYER_KEYS = new Set(['n_layer', 'num_hidden_layers']);
/** far above any published model (a few hundred layers) */
const MAX_LAYERS = 4096;

/** Typed access to config keys with HF defaults and a message naming the file and key. */
class Keys {
  readonly raw: Readonly<Record<string, unknown>>;
  readonly source: string;
  constructor(raw: Readonly<Record<string, unknown>>, source: string) {
    this.raw = raw;
    this.source = source;
  }
  private bad(key: string, want: string): never {
    throw new LmtuneError('CONFIG', `${this.source}: '${key}' is ${JSON.stringify(this.raw[key])}, expected ${want}`);
  }
  /** null/undefined count as absent, as they do for HF configs */
  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }
  int(key: string, dflt?: number, min = 1): number {
    if (!this.has(key)) {
      if (dflt === undefined) throw new LmtuneError('CONFIG', `${this.source}: missing '${key}'`);
      return dflt;
    }
    const v = this.raw[key];
    // a corrupted size must not make the loader enumerate billions of tensors (or overflow int32 indices)
    const max = LAYER_KEYS.has(key) ? MAX_LAYERS : 2 ** 31 - 1;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) this.bad(key, `an integer in [${min}, ${max}]`);
    return v;
  }
  optInt(key: string, dflt: number | null): number | null {
    return this.has(key) ? this.int(key, undefined, 0) : dflt;
  }
  num(key: string, dflt: number): number {
    if (!this.has(key)) return dflt;
    const v = this.raw[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.bad(key, 'a finite number');
    return v;
  }
  bool(key: string, dflt: boolean): boolean {
    if (!this.has(key)) return dflt;
    const v = this.raw[key];
    if (typeof v !== 'boolean') this.bad(key, 'true or false');
    return v;
  }
  activation(key: string, dflt: Activation): Activation {
    if (!this.has(key)) return dflt;
    const v = this.raw[key];
    const known: Record<string, Activation> = {
      gelu: 'gelu',
      gelu_python: 'gelu',
      gelu_new: 'gelu_new',
      gelu_fast: 'gelu_fast',
      gelu_pytorch_tanh: 'gelu_pytorch_tanh',
      quick_gelu: 'quick_gelu',
      relu: 'relu',
      silu: 'silu',
      swish: 'silu',
    };
    if (typeof v !== 'string' || !(v in known)) {
      throw new LmtuneError('UNSUPPORTED', `${this.source}: ${key} ${JSON.stringify(v)} is not supported`, `supported: ${Object.keys(known).join(', ')}`);
    }
    return known[v];
  }
  /** rope_scaling (or transformers 5's rope_parameters): none and 'linear' are supported */
  ropeScaling(): LinearRopeScaling | null {
    const rs = this.has('rope_scaling') ? this.raw.rope_scaling : this.raw.rope_parameters;
    if (rs === undefined || rs === null) return null;
    if (typeof rs !== 'object' || Array.isArray(rs)) this.bad('rope_scaling', 'an object or null');
    const o = rs as Record<string, unknown>;
    const type = o.rope_type ?? o.type ?? 'default';
    if (type === 'default') return null;
    if (type === 'linear') {
      const f = o.factor;
      if (typeof f !== 'number' || !(f > 0)) throw new LmtuneError('CONFIG', `${this.source}: rope_scaling.factor is ${JSON.stringify(f)}, expected a positive number`);
      return { type: 'linear', factor: f };
    }
    throw new LmtuneError('UNSUPPORTED', `${this.source}: rope_scaling type ${JSON.stringify(type)} is not supported`, "supported: none (default) and 'linear'");
  }
  ropeTheta(legacyKey: string | null, dflt: number): number {
    if (legacyKey && this.has(legacyKey)) return this.num(legacyKey, dflt);
    if (this.has('rope_theta')) return this.num('rope_theta', dflt);
    const rp = this.raw.rope_parameters;
    if (rp && typeof rp === 'object' && typeof (rp as Record<string, unknown>).rope_theta === 'number') return (rp as Record<string, number>).rope_theta;
    return dflt;
  }
}

function headDimOf(k: Keys, hidden: number, heads: number, headsKey: string): number {
  if (hidden % heads !== 0) {
    throw new LmtuneError('CONFIG', `${k.source}: hidden size ${hidden} is not divisible by ${headsKey} ${heads}`);
  }
  return hidden / heads;
}

function common(k: Keys, raw: Readonly<Record<string, unknown>>) {
  return {
    source: k.source,
    modelType: typeof raw.model_type === 'string' ? raw.model_type : '',
    architectures: Array.isArray(raw.architectures) ? raw.architectures.filter((a): a is string => typeof a === 'string') : [],
    raw,
  };
}

function parseGpt2(k: Keys): Gpt2Config {
  const hidden = k.int('n_embd', 768);
  const heads = k.int('n_head', 12);
  return {
    family: 'gpt2',
    ...common(k, k.raw),
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
}

function parseOpt(k: Keys): OptConfig {
  const hidden = k.int('hidden_size', 768);
  const heads = k.int('num_attention_heads', 12);
  return {
    family: 'opt',
    ...common(k, k.raw),
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
}

/** Defaults of the HF config classes that the llama family's model_types differ on. */
const LLAMA_DEFAULTS: Readonly<Record<string, { vocab: number; inter: number; kv: number | null; maxPos: number }>> = {
  llama: { vocab: 32000, inter: 11008, kv: null, maxPos: 2048 },
  mistral: { vocab: 32000, inter: 14336, kv: 8, maxPos: 4096 * 32 },
  qwen2: { vocab: 151936, inter: 22016, kv: 32, maxPos: 32768 },
};

function parseLlama(k: Keys): LlamaConfig {
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
    ...common(k, k.raw),
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
}

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

/**
 * GemmaConfig (Gemma 1; model_type 'gemma'). The activation follows the rule transformers 4.38.2–4.47
 * introduced with hidden_activation (PR #29402): hidden_activation when set, else gelu_pytorch_tanh,
 * whatever hidden_act says. The Gemma 1.0 checkpoints ship hidden_act 'gelu' (exact GELU), which is not
 * the activation they were trained with; transformers ≥ 4.48 reads hidden_act again and so runs those
 * checkpoints with exact GELU. We keep the tanh approximation the weights expect.
 */
function parseGemma(k: Keys): GemmaConfig {
  const heads = k.int('num_attention_heads', 16);
  const kv = k.int('num_key_value_heads', 16);
  if (heads % kv !== 0) {
    throw new LmtuneError('CONFIG', `${k.source}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kv}`);
  }
  return {
    family: 'gemma',
    ...common(k, k.raw),
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
}

function parseNeox(k: Keys): GptNeoxConfig {
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
    ...common(k, k.raw),
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
}

function parseRoberta(k: Keys): RobertaConfig {
  const hidden = k.int('hidden_size', 768);
  const heads = k.int('num_attention_heads', 12);
  const pad = k.int('pad_token_id', 1, 0);
  const table = k.int('max_position_embeddings', 512);
  const pet = k.raw.position_embedding_type;
  if (pet !== undefined && pet !== null && pet !== 'absolute') {
    throw new LmtuneError('UNSUPPORTED', `${k.source}: position_embedding_type ${JSON.stringify(pet)} is not supported (only 'absolute')`);
  }
  if (table <= pad + 1) throw new LmtuneError('CONFIG', `${k.source}: max_position_embeddings ${table} leaves no positions after pad_token_id ${pad} + 1`);
  return {
    family: 'roberta',
    ...common(k, k.raw),
    vocabSize: k.int('vocab_size', 50265),
    hiddenSize: hidden,
    numLayers: k.int('num_hidden_layers', 12),
    numHeads: heads,
    headDim: headDimOf(k, hidden, heads, 'num_attention_heads'),
    intermediateSize: k.int('intermediate_size', 3072),
    // roberta-base's 514-row table serves 512 tokens: rows 0..pad are never used by real tokens
    maxPositions: table - (pad + 1),
    tieWordEmbeddings: k.bool('tie_word_embeddings', true),
    bosTokenId: k.optInt('bos_token_id', 0),
    eosTokenId: k.optInt('eos_token_id', 2),
    padTokenId: pad,
    positionOffset: pad + 1,
    typeVocabSize: k.int('type_vocab_size', 2),
    layerNormEps: k.num('layer_norm_eps', 1e-12),
    activation: k.activation('hidden_act', 'gelu'),
  };
}

/** Parses a config.json object; `source` (the file path) is named in every error. */
export function parseModelConfig(raw: unknown, source: string): ModelConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new LmtuneError('CONFIG', `${source}: not a JSON object`);
  const r = raw as Record<string, unknown>;
  const k = new Keys(r, source);
  switch (detectFamily(r, source)) {
    case 'gpt2':
      return parseGpt2(k);
    case 'opt':
      return parseOpt(k);
    case 'llama':
      return parseLlama(k);
    case 'gpt_neox':
      return parseNeox(k);
    case 'roberta':
      return parseRoberta(k);
    case 'gemma':
      return parseGemma(k);
  }
}

/** key/value heads: grouped-query families state them; elsewhere every query head has its own */
export function kvHeads(cfg: ModelConfig): number {
  return cfg.family === 'llama' || cfg.family === 'gemma' ? cfg.numKvHeads : cfg.numHeads;
}

/** the sliding attention window (keys a query sees, itself included), or null for full attention */
export function attentionWindow(cfg: ModelConfig): number | null {
  return cfg.family === 'llama' ? cfg.slidingWindow : null;
}

/** Reads and parses `<dir>/config.json`. */
export function loadModelConfig(folder: string | Folder): ModelConfig {
  const dir = asFolder(folder, 'reading config.json');
  if (!dir.exists('config.json')) {
    throw new LmtuneError('CHECKPOINT', `${dir.label}: no config.json in this folder`, 'point lmtune at a Hugging Face model folder (config.json + model.safetensors)');
  }
  return parseModelConfig(readJsonIn(dir, 'config.json', 'config.json'), dir.path('config.json'));
}

// ---------------------------------------------------------------------------------------------------
// The tensor contract

export interface ExpectedTensor {
  /** HF name with the family's prefix, e.g. 'transformer.h.0.attn.c_attn.weight' */
  name: string;
  shape: number[];
  /** the LM head of a tied model: checkpoints usually omit it (it is the token embedding) */
  tiedTo?: string;
}

/** The prefix the *ForCausalLM / *ForMaskedLM classes put before the base model's tensors. */
export function basePrefix(family: ModelFamily): string {
  return { gpt2: 'transformer.', opt: 'model.', llama: 'model.', gpt_neox: 'gpt_neox.', roberta: 'roberta.', gemma: 'model.' }[family];
}

/** Canonical name of the token embedding, which a tied head shares. */
export function embeddingName(cfg: ModelConfig): string {
  return {
    gpt2: 'transformer.wte.weight',
    opt: 'model.decoder.embed_tokens.weight',
    llama: 'model.embed_tokens.weight',
    gpt_neox: 'gpt_neox.embed_in.weight',
    roberta: 'roberta.embeddings.word_embeddings.weight',
    gemma: 'model.embed_tokens.weight',
  }[cfg.family];
}

/** Canonical name of the LM head's weight (lm_head.weight, embed_out.weight, lm_head.decoder.weight). */
export function headName(cfg: ModelConfig): string {
  return { gpt2: 'lm_head.weight', opt: 'lm_head.weight', llama: 'lm_head.weight', gpt_neox: 'embed_out.weight', roberta: 'lm_head.decoder.weight', gemma: 'lm_head.weight' }[cfg.family];
}

function gpt2Tensors(c: Gpt2Config): ExpectedTensor[] {
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
}

function optTensors(c: OptConfig): ExpectedTensor[] {
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
}

function llamaTensors(c: LlamaConfig): ExpectedTensor[] {
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
}

function gemmaTensors(c: GemmaConfig): ExpectedTensor[] {
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
}

function neoxTensors(c: GptNeoxConfig): ExpectedTensor[] {
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
}

function robertaTensors(c: RobertaConfig): ExpectedTensor[] {
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  const lin = (name: string, o: number, i: number): ExpectedTensor[] => [
    { name: `${name}.weight`, shape: [o, i] },
    { name: `${name}.bias`, shape: [o] },
  ];
  const ln = (name: string): ExpectedTensor[] => [
    { name: `${name}.weight`, shape: [H] },
    { name: `${name}.bias`, shape: [H] },
  ];
  const out: ExpectedTensor[] = [
    { name: 'roberta.embeddings.word_embeddings.weight', shape: [c.vocabSize, H] },
    { name: 'roberta.embeddings.position_embeddings.weight', shape: [c.maxPositions + c.positionOffset, H] },
    { name: 'roberta.embeddings.token_type_embeddings.weight', shape: [c.typeVocabSize, H] },
    ...ln('roberta.embeddings.LayerNorm'),
  ];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `roberta.encoder.layer.${i}.`;
    out.push(
      ...lin(`${p}attention.self.query`, H, H),
      ...lin(`${p}attention.self.key`, H, H),
      ...lin(`${p}attention.self.value`, H, H),
      ...lin(`${p}attention.output.dense`, H, H),
      ...ln(`${p}attention.output.LayerNorm`),
      ...lin(`${p}intermediate.dense`, I, H),
      ...lin(`${p}output.dense`, H, I),
      ...ln(`${p}output.LayerNorm`),
    );
  }
  out.push(...lin('lm_head.dense', H, H), ...ln('lm_head.layer_norm'), { name: 'lm_head.bias', shape: [c.vocabSize] });
  return out;
}

/**
 * Every parameter tensor the config implies, with HF's canonical names and shapes (nn.Linear weights are
 * [out, in]; GPT-2's Conv1D weights are [in, out]). The LM head comes last, marked `tiedTo` when tied.
 */
export function expectedTensors(cfg: ModelConfig): ExpectedTensor[] {
  let body: ExpectedTensor[];
  let headIn = cfg.hiddenSize;
  switch (cfg.family) {
    case 'gpt2':
      body = gpt2Tensors(cfg);
      break;
    case 'opt':
      body = optTensors(cfg);
      headIn = cfg.wordEmbedProjDim;
      break;
    case 'llama':
      body = llamaTensors(cfg);
      break;
    case 'gpt_neox':
      body = neoxTensors(cfg);
      break;
    case 'roberta':
      body = robertaTensors(cfg);
      break;
    case 'gemma':
      body = gemmaTensors(cfg);
      break;
  }
  const head: ExpectedTensor = { name: headName(cfg), shape: [cfg.vocabSize, headIn] };
  if (cfg.tieWordEmbeddings) head.tiedTo = embeddingName(cfg);
  return [...body, head];
}

/** Buffers some checkpoints carry (causal masks, rotary tables, position ids); never parameters. */
const BUFFER_PATTERNS: readonly RegExp[] = [
  /\.attn\.(bias|masked_bias)$/,
  /\.attention\.(bias|masked_bias)$/,
  /rotary_emb\.inv_freq$/,
  /\.position_ids$/,
];

export function isBufferName(name: string): boolean {
  return BUFFER_PATTERNS.some((re) => re.test(name));
}

/** The names a canonical tensor may have on disk: with or without the base-model prefix, old LN names. */
function candidateNames(cfg: ModelConfig, canonical: string): string[] {
  const prefix = basePrefix(cfg.family);
  const names = [canonical];
  if (canonical.startsWith(prefix)) names.push(canonical.slice(prefix.length));
  // RoBERTa's head bias is saved as lm_head.bias and/or lm_head.decoder.bias (the same parameter)
  if (canonical === 'lm_head.bias') names.push('lm_head.decoder.bias');
  // very old BERT-style checkpoints call LayerNorm parameters gamma/beta (HF renames them on load)
  if (/LayerNorm\.weight$/.test(canonical)) names.push(...names.map((n) => n.replace(/weight$/, 'gamma')));
  if (/LayerNorm\.bias$/.test(canonical)) names.push(...names.map((n) => n.replace(/bias$/, 'beta')));
  return names;
}

export interface TensorCheck {
  /** canonical HF name → the name found in the checkpoint */
  resolved: Map<string, string>;
  /** the tied LM head is absent (use the token embedding) */
  tiedHeadAbsent: boolean;
  /** tensors the config does not imply and that are not known buffers (HF ignores these with a warning) */
  unexpected: string[];
  /** known buffers found (causal masks, rotary tables), ignored */
  buffers: string[];
}

function fmtShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/**
 * Checks that every tensor the config implies is present with the right shape, accepting the prefix
 * variants real checkpoints use. Throws one LmtuneError listing each missing tensor and wrong shape
 * (name, expected shape, found shape), naming `file`.
 */
export function checkTensors(cfg: ModelConfig, tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>, file: string): TensorCheck {
  const resolved = new Map<string, string>();
  const problems: string[] = [];
  let tiedHeadAbsent = false;
  for (const e of expectedTensors(cfg)) {
    const found = candidateNames(cfg, e.name).find((n) => tensors.has(n));
    if (found === undefined) {
      if (e.tiedTo) {
        tiedHeadAbsent = true;
        continue;
      }
      problems.push(`missing tensor '${e.name}' (expected shape ${fmtShape(e.shape)}, found: absent)`);
      continue;
    }
    const shape = tensors.get(found)!.shape;
    if (shape.length !== e.shape.length || shape.some((d, i) => d !== e.shape[i])) {
      problems.push(`tensor '${found}': expected shape ${fmtShape(e.shape)}, found ${fmtShape(shape)}`);
    }
    resolved.set(e.name, found);
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 8).join('; ');
    const more = problems.length > 8 ? ` (and ${problems.length - 8} more)` : '';
    throw new LmtuneError(
      'CHECKPOINT',
      `${file}: ${problems.length} tensor problem(s) for a ${cfg.family} config (${cfg.source}): ${shown}${more}`,
      'the weights do not match config.json: check that both come from the same model',
    );
  }
  const used = new Set(resolved.values());
  const unexpected: string[] = [];
  const buffers: string[] = [];
  for (const name of tensors.keys()) {
    if (used.has(name)) continue;
    // lm_head.decoder.bias duplicates lm_head.bias in RoBERTa checkpoints
    if (cfg.family === 'roberta' && name === 'lm_head.decoder.bias') continue;
    (isBufferName(name) ? buffers : unexpected).push(name);
  }
  return { resolved, tiedHeadAbsent, unexpected, buffers };
}

/** The MLP input→hidden weight of layer 0 and which axis holds the hidden width. */
function mlpProbe(cfg: ModelConfig): { name: string; axis: number } {
  switch (cfg.family) {
    case 'gpt2':
      return { name: 'transformer.h.0.mlp.c_fc.weight', axis: 1 };
    case 'opt':
      return { name: 'model.decoder.layers.0.fc1.weight', axis: 0 };
    case 'llama':
    case 'gemma':
      return { name: 'model.layers.0.mlp.gate_proj.weight', axis: 0 };
    case 'gpt_neox':
      return { name: 'gpt_neox.layers.0.mlp.dense_h_to_4h.weight', axis: 0 };
    case 'roberta':
      return { name: 'roberta.encoder.layer.0.intermediate.dense.weight', axis: 0 };
  }
}

/**
 * Lets the weights decide what a config states ambiguously: the MLP width is read off layer 0's first
 * MLP weight (configs such as tiny-random-gpt2 carry a stray `intermediate_size` that no model reads).
 * Returns the config (a copy when something changed) and a note per change.
 */
export function reconcileWithTensors<C extends ModelConfig>(
  cfg: C,
  tensors: ReadonlyMap<string, { readonly shape: readonly number[] }>,
): { config: C; notes: string[] } {
  const probe = mlpProbe(cfg);
  const found = candidateNames(cfg, probe.name).find((n) => tensors.has(n));
  if (found === undefined) return { config: cfg, notes: [] };
  const shape = tensors.get(found)!.shape;
  const width = shape[probe.axis];
  if (shape.length !== 2 || width === undefined || width === cfg.intermediateSize) return { config: cfg, notes: [] };
  return {
    config: { ...cfg, intermediateSize: width },
    notes: [`MLP width ${width} taken from '${found}' ${fmtShape(shape)} (config implies ${cfg.intermediateSize})`],
  };
}

/** Number of parameters the config implies (a tied head counted once). */
export function parameterCount(cfg: ModelConfig): number {
  let n = 0;
  for (const e of expectedTensors(cfg)) if (!e.tiedTo) n += e.shape.reduce((p, d) => p * d, 1);
  return n;
}
