/**
 * Hugging Face `config.json` → a normalized, typed config of one model family, plus the contract with
 * the checkpoint: the tensor names (HF's, with the family's prefix) and shapes each config implies.
 *
 * What differs between families (their config fields and HF defaults, their tensors) lives in the family's
 * file under families/; this file holds what is common: telling the family, dispatching the parse, and
 * checking a checkpoint's tensors against the config. Missing keys take the default of the HF config
 * class, so a config that loads in transformers parses the same here; `checkTensors` then catches any
 * config/weights mismatch.
 */
import { LmtuneError } from '../util/errors.ts';
import { readJsonIn, type Folder } from '../util/folder.ts';
import { asFolder } from '../util/host.ts';
import { Keys, type ExpectedTensor } from './family.ts';
import { families, familyOf, type ModelConfig, type ModelFamily } from './families/index.ts';

export type { Activation, BaseConfig, ExpectedTensor, LinearRopeScaling } from './family.ts';
export type { ModelConfig, ModelFamily } from './families/index.ts';
export type { Gpt2Config } from './families/gpt2.ts';
export type { OptConfig } from './families/opt.ts';
export type { LlamaConfig } from './families/llama.ts';
export type { GptNeoxConfig } from './families/gpt-neox.ts';
export type { RobertaConfig } from './families/roberta.ts';
export type { GemmaConfig } from './families/gemma.ts';

const SUPPORTED_HINT = `supported model_type values: ${families.flatMap((f) => f.modelTypes).join(', ')}`;

/** The family of a parsed config.json: `model_type` decides; `architectures` is the fallback. */
export function detectFamily(raw: Readonly<Record<string, unknown>>, source: string): ModelFamily {
  const mt = raw.model_type;
  if (typeof mt === 'string' && mt !== '') {
    const f = families.find((fam) => fam.modelTypes.includes(mt));
    if (f) return f.name;
    throw new LmtuneError('UNSUPPORTED', `${source}: model_type '${mt}' is not supported`, SUPPORTED_HINT);
  }
  const archs = Array.isArray(raw.architectures) ? raw.architectures.filter((a): a is string => typeof a === 'string') : [];
  for (const a of archs) for (const f of families) if (f.architectures.test(a)) return f.name;
  throw new LmtuneError(
    'UNSUPPORTED',
    `${source}: cannot tell the architecture (no model_type${archs.length ? `; architectures ${JSON.stringify(archs)} not supported` : ', no architectures'})`,
    SUPPORTED_HINT,
  );
}

/** Parses a config.json object; `source` (the file path) is named in every error. */
export function parseModelConfig(raw: unknown, source: string): ModelConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new LmtuneError('CONFIG', `${source}: not a JSON object`);
  const r = raw as Record<string, unknown>;
  return familyOf(detectFamily(r, source)).parse(new Keys(r, source));
}

/** key/value heads: grouped-query families state them; elsewhere every query head has its own */
export function kvHeads(cfg: ModelConfig): number {
  return familyOf(cfg).kvHeads(cfg);
}

/** the sliding attention window (keys a query sees, itself included), or null for full attention */
export function attentionWindow(cfg: ModelConfig): number | null {
  return familyOf(cfg).attentionWindow(cfg);
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

/** The prefix the *ForCausalLM / *ForMaskedLM classes put before the base model's tensors. */
export function basePrefix(family: ModelFamily): string {
  return familyOf(family).basePrefix;
}

/** Canonical name of the token embedding, which a tied head shares. */
export function embeddingName(cfg: ModelConfig): string {
  return familyOf(cfg).embeddingName;
}

/** Canonical name of the LM head's weight (lm_head.weight, embed_out.weight, lm_head.decoder.weight). */
export function headName(cfg: ModelConfig): string {
  return familyOf(cfg).headName;
}

/**
 * Every parameter tensor the config implies, with HF's canonical names and shapes (nn.Linear weights are
 * [out, in]; GPT-2's Conv1D weights are [in, out]). The LM head comes last, marked `tiedTo` when tied.
 */
export function expectedTensors(cfg: ModelConfig): ExpectedTensor[] {
  const fam = familyOf(cfg);
  const body = fam.tensors(cfg);
  const headIn = fam.headInputWidth ? fam.headInputWidth(cfg) : cfg.hiddenSize;
  const head: ExpectedTensor = { name: fam.headName, shape: [cfg.vocabSize, headIn] };
  if (cfg.tieWordEmbeddings) head.tiedTo = fam.embeddingName;
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
  const fam = familyOf(cfg);
  const prefix = fam.basePrefix;
  const names = [canonical];
  if (canonical.startsWith(prefix)) names.push(canonical.slice(prefix.length));
  if (fam.tensorAliases) names.push(...fam.tensorAliases(canonical));
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
  const duplicates = new Set(familyOf(cfg).duplicateTensors ?? []);
  for (const name of tensors.keys()) {
    if (used.has(name)) continue;
    // e.g. lm_head.decoder.bias duplicates lm_head.bias in RoBERTa checkpoints
    if (duplicates.has(name)) continue;
    (isBufferName(name) ? buffers : unexpected).push(name);
  }
  return { resolved, tiedHeadAbsent, unexpected, buffers };
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
  const probe = familyOf(cfg).mlpProbe;
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
