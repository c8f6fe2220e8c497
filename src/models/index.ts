/**
 * `loadModel(dir)`: a Hugging Face folder (or an lmtune run's `final/`) as a model the task layer and
 * trainers use. Adapters saved next to the weights (adapter_config.json) are attached automatically.
 */
import { LmtuneError } from '../util/errors.ts';
import { stableStringify } from '../util/json.ts';
import { readBytes, readJsonIn, type Folder } from '../util/folder.ts';
import { asFolder, requireHost, textFile, type FileToWrite } from '../util/host.ts';
import type { CausalLM, LanguageModel, MaskedLM } from './api.ts';
import { TransformerModel, type ModelOptions } from './model.ts';
import { WeightStore } from './weights.ts';
import { parseSafetensors, serializeSafetensors } from './safetensors.ts';
import type { PeftSpec } from '../peft/spec.ts';

export { TransformerModel, type ModelOptions } from './model.ts';
export { WeightStore } from './weights.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
const PEFT_PREFIX = 'base_model.model.';
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'generation_config.json'];

export async function loadTransformer(folder: string | Folder, opts: ModelOptions = {}): Promise<TransformerModel> {
  if (typeof folder === 'string' && !requireHost('loading a model').exists(folder)) throw new LmtuneError('IO', `model folder not found: ${folder}`);
  const dir = asFolder(folder, 'loading a model');
  const m = await TransformerModel.load(dir, opts);
  if (dir.exists(ADAPTER_CONFIG)) {
    const { spec, adapters } = loadAdapters(dir, m.weights.shared);
    m.setAdapters(spec, adapters);
  }
  return m;
}

/** a TransformerModel as the task layer's LanguageModel (causal or masked) */
export function asLanguageModel(m: TransformerModel): LanguageModel {
  const tokenizer = m.tokenizer;
  if (!tokenizer) throw new LmtuneError('TOKENIZER', `${m.dir ?? 'model'}: no tokenizer files in the folder`, 'copy tokenizer.json (or vocab.json + merges.txt) next to config.json');
  if (m.kind === 'causal') {
    const lm: CausalLM = {
      kind: 'causal',
      tokenizer,
      maxPositions: m.maxPositions,
      continuationLogprobs: (reqs) => m.continuationLogprobs(reqs),
      generate: (prompt, o) => m.generate(prompt, o),
    };
    return lm;
  }
  const lm: MaskedLM = { kind: 'masked', tokenizer, maxPositions: m.maxPositions, maskLogits: (inputs, ids) => m.maskLogits(inputs, ids) };
  return lm;
}

export async function loadModel(dir: string | Folder, opts: ModelOptions = {}): Promise<LanguageModel> {
  return asLanguageModel(await loadTransformer(dir, opts));
}

/** adapters in PEFT's file layout: adapter_config.json + adapter_model.safetensors (names with base_model.model.) */
export function saveAdapters(dir: string, spec: PeftSpec, adapters: WeightStore): void {
  requireHost('saving adapters').writeFiles(dir, adapterFiles(spec, adapters));
}

/** the files of `saveAdapters`, for a runtime that writes them itself (a page's download) */
export function adapterFiles(spec: PeftSpec, adapters: WeightStore): FileToWrite[] {
  const tensors = new Map([...adapters.entries()].map(([k, v]) => [`${PEFT_PREFIX}${k}`, { shape: v.shape, data: v.data }] as const));
  const config: Record<string, unknown> =
    spec.kind === 'lora'
      ? { peft_type: 'LORA', r: spec.rank, lora_alpha: spec.alpha, lora_dropout: spec.dropout, target_modules: spec.targets, bias: 'none', fan_in_fan_out: false, task_type: 'CAUSAL_LM' }
      : spec.kind === 'prefix'
        ? { peft_type: 'LMTUNE_PREFIX', num_prefix: spec.slots, init_by_real_act: spec.initByRealActivations }
        : { peft_type: 'NONE' };
  return [
    { name: ADAPTER_WEIGHTS, write: (sink) => void serializeSafetensors(sink, tensors, { format: 'pt' }, ADAPTER_WEIGHTS) },
    textFile(ADAPTER_CONFIG, stableStringify(config)),
  ];
}

export function loadAdapters(folder: string | Folder, shared = false): { spec: PeftSpec; adapters: WeightStore } {
  const dir = asFolder(folder, 'loading adapters');
  const cfg = readJsonIn<Record<string, unknown>>(dir, ADAPTER_CONFIG, 'adapter config');
  let spec: PeftSpec;
  if (cfg.peft_type === 'LORA') {
    spec = { kind: 'lora', rank: Number(cfg.r), alpha: Number(cfg.lora_alpha), dropout: Number(cfg.lora_dropout ?? 0), targets: (cfg.target_modules as string[]) ?? [] };
  } else if (cfg.peft_type === 'LMTUNE_PREFIX') {
    spec = { kind: 'prefix', slots: Number(cfg.num_prefix), initByRealActivations: Boolean(cfg.init_by_real_act) };
  } else {
    throw new LmtuneError('CHECKPOINT', `${dir.path(ADAPTER_CONFIG)}: unsupported peft_type '${String(cfg.peft_type)}'`);
  }
  const { tensors } = parseSafetensors(dir, ADAPTER_WEIGHTS);
  const store = new WeightStore([], shared);
  for (const [k, t] of tensors) store.set(k.startsWith(PEFT_PREFIX) ? k.slice(PEFT_PREFIX.length) : k, t.shape, t.data);
  return { spec, adapters: store };
}

export function copyTokenizerFiles(from: string | Folder, to: string): void {
  const src = asFolder(from, 'copying tokenizer files');
  const files = TOKENIZER_FILES.filter((f) => src.exists(f)).map((name) => ({ name, write: (sink: { write(b: Uint8Array): void }) => sink.write(readBytes(src, name)) }));
  requireHost('copying tokenizer files').writeFiles(to, files);
}
