/**
 * What a model family is: everything lmtune knows about one architecture, in one object. A family file
 * (src/models/families/<name>.ts) reads top to bottom: its config type parsed from config.json with the
 * HF config class's defaults, the tensors (HF names and shapes) that config implies, and the forward.
 * The generic code (config.ts, graphs.ts, heads/, checkpoint.ts, tokenizer.ts, peft/lora.ts) asks the family
 * instead of switching on its name, so adding one touches its file and one line of families/index.ts.
 */
import { LmtuneError } from '../util/errors.ts';
import type { Value } from '../engine/index.ts';
import type { ForwardContext } from './forward.ts';

/** Activations as HF names them (`swish` is read as `silu`, `gelu_python` as `gelu`). */
export type Activation = 'gelu' | 'gelu_new' | 'gelu_fast' | 'gelu_pytorch_tanh' | 'quick_gelu' | 'relu' | 'silu';

export interface LinearRopeScaling {
  type: 'linear';
  factor: number;
}

/**
 * Field names are uniform across families (hiddenSize, numLayers, intermediateSize, ...); each family's
 * config type adds its own fields, each commented with the HF key it comes from.
 */
export interface BaseConfig {
  /** the family's name (Family.name) */
  family: string;
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

export interface ExpectedTensor {
  /** HF name with the family's prefix, e.g. 'transformer.h.0.attn.c_attn.weight' */
  name: string;
  shape: number[];
  /** the LM head of a tied model: checkpoints usually omit it (it is the token embedding) */
  tiedTo?: string;
}

const LAYER_KEYS = new Set(['n_layer', 'num_hidden_layers']);
/** far above any published model (a few hundred layers) */
const MAX_LAYERS = 4096;

/** Typed access to config keys with HF defaults and a message naming the file and key. */
export class Keys {
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

export function headDimOf(k: Keys, hidden: number, heads: number, headsKey: string): number {
  if (hidden % heads !== 0) {
    throw new LmtuneError('CONFIG', `${k.source}: hidden size ${hidden} is not divisible by ${headsKey} ${heads}`);
  }
  return hidden / heads;
}

/** the BaseConfig fields every family copies as they are */
export function common(k: Keys): Pick<BaseConfig, 'source' | 'modelType' | 'architectures' | 'raw'> {
  const raw = k.raw;
  return {
    source: k.source,
    modelType: typeof raw.model_type === 'string' ? raw.model_type : '',
    architectures: Array.isArray(raw.architectures) ? raw.architectures.filter((a): a is string => typeof a === 'string') : [],
    raw,
  };
}

export type SpecialKey = 'bos_token' | 'eos_token' | 'unk_token' | 'pad_token' | 'mask_token' | 'cls_token' | 'sep_token';
export type SpecialDefaults = Partial<Record<SpecialKey, string>>;

/** Special ids prepended/appended when a caller asks for special tokens, and the rule that chose them. */
export interface SpecialTemplate {
  prefix: number[];
  suffix: number[];
  /** which rule decided (for `lmtune info`) */
  rule: string;
}

/** What a family's BOS/EOS template rule may look at and use (see tokenizer.ts decideTemplate). */
export interface TemplateTools {
  /** tokenizer_config.json */
  tc: Readonly<Record<string, unknown>>;
  ids: { bos: number | null; eos: number | null; cls: number | null; sep: number | null };
  /** the id, or an error naming the file and the missing token */
  need(id: number | null, what: string): number;
  /** BOS/EOS from add_bos_token/add_eos_token, BOS defaulting to `dfltBos`, EOS to false */
  flags(dfltBos: boolean, rule: string): SpecialTemplate;
}

export type Highlights = Record<string, string | number | boolean | null>;

/** A model family. `C` is its config type; every method receives a config of that family. */
export interface Family<C extends BaseConfig> {
  readonly name: C['family'];

  // ------------------------------------------------------------ config.json
  /** `model_type` values this family reads */
  readonly modelTypes: readonly string[];
  /** `architectures` entries that mean this family, when model_type is absent */
  readonly architectures: RegExp;
  /** config.json → the family's config, with the HF config class's defaults */
  parse(k: Keys): C;

  // ------------------------------------------------------------ the tensor contract
  /** the prefix the *ForCausalLM / *ForMaskedLM classes put before the base model's tensors */
  readonly basePrefix: string;
  /** canonical name of the token embedding, which a tied head shares */
  readonly embeddingName: string;
  /** canonical name of the LM head's weight */
  readonly headName: string;
  /** every parameter tensor but the LM head, with HF's canonical names and shapes */
  tensors(c: C): ExpectedTensor[];
  /** the LM head's input width (default hiddenSize) */
  headInputWidth?(c: C): number;
  /** other names a canonical tensor may be saved under (besides the prefix-less and gamma/beta ones) */
  tensorAliases?(canonical: string): string[];
  /** saved tensors that duplicate a resolved one, ignored */
  readonly duplicateTensors?: readonly string[];
  /** layer 0's MLP input→hidden weight and the axis holding the MLP width (reconcileWithTensors) */
  readonly mlpProbe: { name: string; axis: number };
  /** key/value heads (grouped-query families state them) */
  kvHeads(c: C): number;
  /** the sliding attention window (keys a query sees, itself included), or null */
  attentionWindow(c: C): number | null;

  // ------------------------------------------------------------ the forward
  /** is attention causal */
  readonly causal: boolean;
  /** position id rule: the table index for a token at real position p */
  positionIndex(p: number, cfg: C): number;
  /** HF name of layer i's attention module (prefix-tuning slots live there) */
  attentionModule(i: number): string;
  /** rotary: dims and base, or null */
  rotary(cfg: C): { dim: number; theta: number; scale: number } | null;
  /** hidden states [B, T, H] (before the final norm) */
  body(ctx: ForwardContext): Value;
  /** final norm + LM head applied to rows of hidden states [N, H] → logits [N, V] */
  head(ctx: ForwardContext, h: Value): Value;
  /**
   * Causal LMs, whose head is a plain linear map: the features f [N, E] of hidden rows [N, H] (final norm,
   * plus OPT's project_out), so that head(h) = f·Φᵀ. Conditional-mean features and Quad need f and Φ apart.
   */
  finalNorm?(ctx: ForwardContext, h: Value): Value;
  /** causal LMs: the output embedding Φ [V, E], one row φ_w per word (the tied input embedding or lm_head) */
  outputEmbedding?(ctx: ForwardContext): Value;
  /** logits of candidate ids only [K, C] from rows [K, H], when cheaper than slicing head()'s output */
  restrictedHead?(ctx: ForwardContext, rows: Value, candIds: Value): Value;

  // ------------------------------------------------------------ adapters
  /** PEFT's default LoRA target modules (regular expressions) */
  readonly loraTargets: readonly string[];
  /** how linear weights are stored: nn.Linear [out, in], or Conv1D [in, out] */
  readonly weightLayout: 'out_in' | 'in_out';

  // ------------------------------------------------------------ tokenizer
  /** special tokens of the family's tokenizer class, when the tokenizer files do not name them */
  readonly specials: SpecialDefaults;
  /** tokenizer_config.json's tokenizer_class values that mean this family */
  readonly tokenizerClass?: RegExp;
  /** the mask token strips the space before it (RoBERTa's `<mask>`) */
  readonly maskLstrip?: boolean;
  /** the BOS/EOS template the family's tokenizer class applies; null: tokenizer.json's post-processor */
  template(t: TemplateTools): SpecialTemplate | null;

  // ------------------------------------------------------------ lmtune info
  /** the family's own config fields worth showing */
  highlights(c: C): Highlights;
}
