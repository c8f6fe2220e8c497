/**
 * The inner ("auxiliary") model that TinT simulates: a pre-LN decoder (GPT-2 or OPT) with a tied LM head,
 * held in float64. Three ways to get one:
 *   - `innerModelFromHf`: from a Hugging Face config.json + safetensors tensors (names as in the file);
 *   - `randomInnerModel`: seeded random weights for tests (non-trivial LN γ, β and biases, so bugs in those
 *     paths cannot hide behind zeros);
 *   - `cloneInnerModel` / the oracle's update functions.
 *
 * Linear weights are stored as [out, in] (PyTorch nn.Linear layout): GPT-2's Conv1D tensors are [in, out]
 * and are transposed here, OPT's are used as they are.
 */
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { activationByName, type ActivationName } from './activations.ts';
import { fromData, transpose, zeros, type Mat } from './matrix.ts';

export type InnerFamily = 'gpt2' | 'opt';

export interface InnerConfig {
  readonly family: InnerFamily;
  /** hidden width d */
  readonly dModel: number;
  readonly nHeads: number;
  readonly nLayers: number;
  /** FFN width; TinT needs a multiple of dModel (it runs the FFN as ffnDim/dModel square chunks) */
  readonly ffnDim: number;
  readonly vocabSize: number;
  /** max_position_embeddings / n_positions: also TinT's `seq_length` (width of the one-hot position stream) */
  readonly maxPositions: number;
  readonly activation: ActivationName;
  readonly lnEps: number;
}

export interface LinearWeights {
  /** [out, in] */
  readonly w: Mat;
  readonly b: Float64Array;
}

export interface LayerNormWeights {
  readonly gamma: Float64Array;
  readonly beta: Float64Array;
}

export interface InnerLayer {
  readonly ln1: LayerNormWeights;
  readonly q: LinearWeights;
  readonly k: LinearWeights;
  readonly v: LinearWeights;
  /** attention output projection (GPT-2 attn.c_proj, OPT out_proj) */
  readonly o: LinearWeights;
  readonly ln2: LayerNormWeights;
  /** [ffn, d] */
  readonly fc1: LinearWeights;
  /** [d, ffn] */
  readonly fc2: LinearWeights;
}

export interface InnerModel {
  readonly config: InnerConfig;
  /** token embeddings [V, d]; also the (tied) LM head */
  readonly wte: Mat;
  /** learned position embeddings; row `positionRow(config, t)` holds position t */
  readonly wpe: Mat;
  readonly layers: readonly InnerLayer[];
  readonly lnF: LayerNormWeights;
}

/** OPT's learned position table is offset by 2 (a fairseq leftover); GPT-2's is not. */
export function positionRow(config: InnerConfig, position: number): number {
  return config.family === 'opt' ? position + 2 : position;
}

/** One training/evaluation sequence for the inner model, with the TinT masks. */
export interface InnerSequence {
  readonly tokens: readonly number[];
  /**
   * TinT's `bidirection_mask`: 1 where the simulated step may train (weight gradients are summed over these
   * positions, and the loss at position t counts when trainMask[t+1] = 1). Not a padding mask.
   */
  readonly trainMask: readonly number[];
  /** optional `gradient_mask`: multiplies the loss mask like trainMask[t+1] */
  readonly gradMask?: readonly number[];
  /** optional `icl_mask` [T][T]: token i may attend token j ≤ i only where iclMask[i][j] = 1 */
  readonly iclMask?: readonly (readonly number[])[];
  /** optional position ids (default 0..T-1); only the inner position embeddings use them */
  readonly positionIds?: readonly number[];
}

export function checkSequence(config: InnerConfig, seq: InnerSequence): void {
  const T = seq.tokens.length;
  if (T < 2) throw new LmtuneError('DATA', `TinT needs at least 2 tokens, got ${T}`);
  if (T > config.maxPositions) {
    throw new LmtuneError('DATA', `sequence has ${T} tokens but the inner model has ${config.maxPositions} positions`, 'shorten the text (--max-tokens)');
  }
  if (seq.trainMask.length !== T) throw new LmtuneError('DATA', `trainMask has ${seq.trainMask.length} entries for ${T} tokens`);
  if (seq.gradMask && seq.gradMask.length !== T) throw new LmtuneError('DATA', `gradMask has ${seq.gradMask.length} entries for ${T} tokens`);
  if (seq.positionIds && seq.positionIds.length !== T) throw new LmtuneError('DATA', `positionIds has ${seq.positionIds.length} entries for ${T} tokens`);
  if (seq.iclMask && (seq.iclMask.length !== T || seq.iclMask.some((r) => r.length !== T))) {
    throw new LmtuneError('DATA', `iclMask must be ${T}x${T}`);
  }
  for (const t of seq.tokens) {
    if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) throw new LmtuneError('DATA', `token id ${t} is outside the vocabulary (size ${config.vocabSize})`);
  }
  for (const p of seq.positionIds ?? []) {
    if (!Number.isInteger(p) || p < 0 || p >= config.maxPositions) throw new LmtuneError('DATA', `position id ${p} is outside [0, ${config.maxPositions})`);
  }
}

/** The inner model's input embeddings wte[x_t] + wpe[pos_t], [T, d]. */
export function embedTokens(model: InnerModel, seq: InnerSequence): Mat {
  const { dModel: d } = model.config;
  const T = seq.tokens.length;
  const out = zeros(T, d);
  for (let t = 0; t < T; t++) {
    const tok = seq.tokens[t]!;
    const p = positionRow(model.config, seq.positionIds ? seq.positionIds[t]! : t);
    for (let c = 0; c < d; c++) out.data[t * d + c] = model.wte.data[tok * d + c]! + model.wpe.data[p * d + c]!;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Random inner models for tests

export interface RandomInnerOptions {
  family?: InnerFamily;
  dModel: number;
  nHeads: number;
  nLayers: number;
  ffnDim?: number;
  vocabSize: number;
  maxPositions: number;
  activation?: ActivationName;
  lnEps?: number;
  /** std of the weight matrices (default 1/√d, so activations stay O(1)) */
  weightStd?: number;
}

export function randomInnerModel(opts: RandomInnerOptions, rng: Rng): InnerModel {
  const family = opts.family ?? 'gpt2';
  const config: InnerConfig = {
    family,
    dModel: opts.dModel,
    nHeads: opts.nHeads,
    nLayers: opts.nLayers,
    ffnDim: opts.ffnDim ?? 4 * opts.dModel,
    vocabSize: opts.vocabSize,
    maxPositions: opts.maxPositions,
    activation: opts.activation ?? (family === 'opt' ? 'relu' : 'gelu_new'),
    lnEps: opts.lnEps ?? 1e-5,
  };
  const d = config.dModel;
  const std = opts.weightStd ?? 1 / Math.sqrt(d);
  const gauss = (rows: number, cols: number, s: number): Mat => {
    const m = zeros(rows, cols);
    for (let i = 0; i < m.data.length; i++) m.data[i] = s * rng.normal();
    return m;
  };
  const vec = (n: number, mean: number, s: number): Float64Array => Float64Array.from({ length: n }, () => mean + s * rng.normal());
  const linear = (out: number, inp: number): LinearWeights => ({ w: gauss(out, inp, std), b: vec(out, 0, 0.1) });
  const ln = (): LayerNormWeights => ({ gamma: vec(d, 1, 0.1), beta: vec(d, 0, 0.1) });
  const layers: InnerLayer[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    layers.push({
      ln1: ln(),
      q: linear(d, d),
      k: linear(d, d),
      v: linear(d, d),
      o: linear(d, d),
      ln2: ln(),
      fc1: linear(config.ffnDim, d),
      fc2: { w: gauss(d, config.ffnDim, 1 / Math.sqrt(config.ffnDim)), b: vec(d, 0, 0.1) },
    });
  }
  const posRows = config.maxPositions + (family === 'opt' ? 2 : 0);
  return { config, wte: gauss(config.vocabSize, d, 1), wpe: gauss(posRows, d, 0.3), layers, lnF: ln() };
}

export function cloneInnerModel(m: InnerModel): InnerModel {
  const cm = (x: Mat): Mat => ({ rows: x.rows, cols: x.cols, data: x.data.slice() });
  const cl = (x: LinearWeights): LinearWeights => ({ w: cm(x.w), b: x.b.slice() });
  const cn = (x: LayerNormWeights): LayerNormWeights => ({ gamma: x.gamma.slice(), beta: x.beta.slice() });
  return {
    config: m.config,
    wte: cm(m.wte),
    wpe: cm(m.wpe),
    layers: m.layers.map((L) => ({ ln1: cn(L.ln1), q: cl(L.q), k: cl(L.k), v: cl(L.v), o: cl(L.o), ln2: cn(L.ln2), fc1: cl(L.fc1), fc2: cl(L.fc2) })),
    lnF: cn(m.lnF),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Hugging Face checkpoints (config.json + safetensors tensors, names exactly as stored)

export interface HfTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array | Float64Array;
}

/**
 * Builds the inner model from a Hugging Face GPT-2 (`GPT2LMHeadModel`/`GPT2Model`) or OPT
 * (`OPTForCausalLM`/`OPTModel`) checkpoint. `source` names the folder for error messages.
 */
export function innerModelFromHf(rawConfig: Readonly<Record<string, unknown>>, tensors: ReadonlyMap<string, HfTensor>, source: string): InnerModel {
  const config = innerConfigFromHf(rawConfig, source);
  return config.family === 'gpt2' ? gpt2FromHf(config, tensors, source) : optFromHf(config, tensors, source);
}

/** The inner config from a Hugging Face config.json (no tensors needed: the size calculator uses this). */
export function innerConfigFromHf(raw: Readonly<Record<string, unknown>>, source: string): InnerConfig {
  const modelType = String(raw['model_type'] ?? '');
  if (modelType === 'gpt2') return gpt2Config(raw, source);
  if (modelType === 'opt') return optConfig(raw, source);
  throw new LmtuneError('UNSUPPORTED', `${source}/config.json: model_type "${modelType}" is not supported by TinT`, 'TinT simulates pre-LN GPT-2 and OPT models');
}

function num(raw: Readonly<Record<string, unknown>>, key: string, source: string, fallback?: number): number {
  const v = raw[key];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if ((v === undefined || v === null) && fallback !== undefined) return fallback;
  throw new LmtuneError('CONFIG', `${source}/config.json: "${key}" must be a number, got ${JSON.stringify(v)}`);
}

class TensorReader {
  constructor(
    private readonly tensors: ReadonlyMap<string, HfTensor>,
    private readonly prefix: string,
    private readonly source: string,
  ) {}

  private get(name: string, shape: readonly number[]): HfTensor {
    const full = this.prefix + name;
    const t = this.tensors.get(full);
    if (!t) throw new LmtuneError('CHECKPOINT', `${this.source}: tensor '${full}' is missing`);
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new LmtuneError('CHECKPOINT', `${this.source}: tensor '${full}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
    }
    return t;
  }

  mat(name: string, rows: number, cols: number): Mat {
    return fromData(rows, cols, this.get(name, [rows, cols]).data);
  }

  vec(name: string, n: number): Float64Array {
    return Float64Array.from(this.get(name, [n]).data);
  }

  has(name: string): boolean {
    return this.tensors.has(this.prefix + name);
  }
}

function detectPrefix(tensors: ReadonlyMap<string, HfTensor>, probe: string, prefixes: readonly string[], source: string): string {
  for (const p of prefixes) if (tensors.has(p + probe)) return p;
  throw new LmtuneError('CHECKPOINT', `${source}: no tensor named ${prefixes.map((p) => `'${p}${probe}'`).join(' or ')}`);
}

function gpt2Config(raw: Readonly<Record<string, unknown>>, source: string): InnerConfig {
  const d = num(raw, 'n_embd', source);
  const config: InnerConfig = {
    family: 'gpt2',
    dModel: d,
    nHeads: num(raw, 'n_head', source),
    nLayers: num(raw, 'n_layer', source),
    ffnDim: num(raw, 'n_inner', source, 4 * d),
    vocabSize: num(raw, 'vocab_size', source),
    maxPositions: num(raw, 'n_positions', source),
    activation: activationByName(String(raw['activation_function'] ?? 'gelu_new'), `${source}/config.json`).name,
    lnEps: num(raw, 'layer_norm_epsilon', source, 1e-5),
  };
  if (raw['scale_attn_weights'] === false || raw['scale_attn_by_inverse_layer_idx'] === true) {
    throw new LmtuneError('UNSUPPORTED', `${source}/config.json: TinT assumes attention scores scaled by 1/sqrt(head_dim) only`);
  }
  return config;
}

function gpt2FromHf(config: InnerConfig, tensors: ReadonlyMap<string, HfTensor>, source: string): InnerModel {
  const d = config.dModel;
  const r = new TensorReader(tensors, detectPrefix(tensors, 'wte.weight', ['transformer.', ''], source), source);
  const F = config.ffnDim;
  const conv1d = (name: string, inp: number, out: number): LinearWeights => ({ w: transpose(r.mat(`${name}.weight`, inp, out)), b: r.vec(`${name}.bias`, out) });
  const ln = (name: string): LayerNormWeights => ({ gamma: r.vec(`${name}.weight`, d), beta: r.vec(`${name}.bias`, d) });
  const layers: InnerLayer[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const p = `h.${l}`;
    // c_attn is one Conv1D [d, 3d]: columns [0,d) are Q, [d,2d) K, [2d,3d) V
    const qkv = conv1d(`${p}.attn.c_attn`, d, 3 * d);
    const part = (i: number): LinearWeights => ({
      w: fromData(d, d, qkv.w.data.subarray(i * d * d, (i + 1) * d * d)),
      b: qkv.b.slice(i * d, (i + 1) * d),
    });
    layers.push({
      ln1: ln(`${p}.ln_1`),
      q: part(0),
      k: part(1),
      v: part(2),
      o: conv1d(`${p}.attn.c_proj`, d, d),
      ln2: ln(`${p}.ln_2`),
      fc1: conv1d(`${p}.mlp.c_fc`, d, F),
      fc2: conv1d(`${p}.mlp.c_proj`, F, d),
    });
  }
  const wte = r.mat('wte.weight', config.vocabSize, d);
  checkTiedHead(tensors, 'lm_head.weight', wte, source);
  return { config, wte, wpe: r.mat('wpe.weight', config.maxPositions, d), layers, lnF: ln('ln_f') };
}

function optConfig(raw: Readonly<Record<string, unknown>>, source: string): InnerConfig {
  const d = num(raw, 'hidden_size', source);
  const config: InnerConfig = {
    family: 'opt',
    dModel: d,
    nHeads: num(raw, 'num_attention_heads', source),
    nLayers: num(raw, 'num_hidden_layers', source),
    ffnDim: num(raw, 'ffn_dim', source, 4 * d),
    vocabSize: num(raw, 'vocab_size', source),
    maxPositions: num(raw, 'max_position_embeddings', source),
    activation: activationByName(String(raw['activation_function'] ?? 'relu'), `${source}/config.json`).name,
    lnEps: 1e-5,
  };
  if (raw['do_layer_norm_before'] === false) {
    throw new LmtuneError('UNSUPPORTED', `${source}/config.json: post-LN OPT (do_layer_norm_before=false, e.g. OPT-350M) is not supported by TinT`);
  }
  if (raw['word_embed_proj_dim'] !== undefined && raw['word_embed_proj_dim'] !== d) {
    throw new LmtuneError('UNSUPPORTED', `${source}/config.json: word_embed_proj_dim != hidden_size (project_in/project_out) is not supported by TinT`);
  }
  if (raw['enable_bias'] === false || raw['layer_norm_elementwise_affine'] === false) {
    throw new LmtuneError('UNSUPPORTED', `${source}/config.json: OPT without biases or without affine layer norms is not supported by TinT`);
  }
  return config;
}

function optFromHf(config: InnerConfig, tensors: ReadonlyMap<string, HfTensor>, source: string): InnerModel {
  const d = config.dModel;
  const r = new TensorReader(tensors, detectPrefix(tensors, 'decoder.embed_tokens.weight', ['model.', ''], source), source);
  const F = config.ffnDim;
  const linear = (name: string, out: number, inp: number): LinearWeights => ({ w: r.mat(`${name}.weight`, out, inp), b: r.vec(`${name}.bias`, out) });
  const ln = (name: string): LayerNormWeights => ({ gamma: r.vec(`${name}.weight`, d), beta: r.vec(`${name}.bias`, d) });
  const layers: InnerLayer[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const p = `decoder.layers.${l}`;
    layers.push({
      ln1: ln(`${p}.self_attn_layer_norm`),
      q: linear(`${p}.self_attn.q_proj`, d, d),
      k: linear(`${p}.self_attn.k_proj`, d, d),
      v: linear(`${p}.self_attn.v_proj`, d, d),
      o: linear(`${p}.self_attn.out_proj`, d, d),
      ln2: ln(`${p}.final_layer_norm`),
      fc1: linear(`${p}.fc1`, F, d),
      fc2: linear(`${p}.fc2`, d, F),
    });
  }
  const wte = r.mat('decoder.embed_tokens.weight', config.vocabSize, d);
  checkTiedHead(tensors, 'lm_head.weight', wte, source);
  return {
    config,
    wte,
    wpe: r.mat('decoder.embed_positions.weight', config.maxPositions + 2, d),
    layers,
    lnF: ln('decoder.final_layer_norm'),
  };
}

/** TinT computes the loss gradient with the tied head; an untied lm_head.weight would be silently ignored. */
function checkTiedHead(tensors: ReadonlyMap<string, HfTensor>, name: string, wte: Mat, source: string): void {
  const t = tensors.get(name);
  if (!t) return;
  const same = t.data.length === wte.data.length && t.data.every((x, i) => x === wte.data[i]);
  if (!same) throw new LmtuneError('UNSUPPORTED', `${source}: '${name}' differs from the token embeddings; TinT needs a tied LM head`);
}

/** Inner configs of the published TinT models, for the size calculator (no weights needed). */
export const INNER_PRESETS: Readonly<Record<string, InnerConfig>> = {
  gpt2: { family: 'gpt2', dModel: 768, nHeads: 12, nLayers: 12, ffnDim: 3072, vocabSize: 50257, maxPositions: 1024, activation: 'gelu_new', lnEps: 1e-5 },
  'gpt2-medium': { family: 'gpt2', dModel: 1024, nHeads: 16, nLayers: 24, ffnDim: 4096, vocabSize: 50257, maxPositions: 1024, activation: 'gelu_new', lnEps: 1e-5 },
  'gpt2-large': { family: 'gpt2', dModel: 1280, nHeads: 20, nLayers: 36, ffnDim: 5120, vocabSize: 50257, maxPositions: 1024, activation: 'gelu_new', lnEps: 1e-5 },
  'gpt2-xl': { family: 'gpt2', dModel: 1600, nHeads: 25, nLayers: 48, ffnDim: 6400, vocabSize: 50257, maxPositions: 1024, activation: 'gelu_new', lnEps: 1e-5 },
  'opt-125m': { family: 'opt', dModel: 768, nHeads: 12, nLayers: 12, ffnDim: 3072, vocabSize: 50272, maxPositions: 2048, activation: 'relu', lnEps: 1e-5 },
  'opt-1.3b': { family: 'opt', dModel: 2048, nHeads: 32, nLayers: 24, ffnDim: 8192, vocabSize: 50272, maxPositions: 2048, activation: 'relu', lnEps: 1e-5 },
  'opt-2.7b': { family: 'opt', dModel: 2560, nHeads: 32, nLayers: 32, ffnDim: 10240, vocabSize: 50272, maxPositions: 2048, activation: 'relu', lnEps: 1e-5 },
};
