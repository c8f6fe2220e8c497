/**
 * The files next to a model's weights: PEFT adapters (adapter_config.json + adapter_model.safetensors)
 * and the tokenizer's files. Loading a folder as a model, adapters attached, is `loadTransformer` /
 * `loadModel` in heads/model.ts (above models/, as TransformerModel is).
 */
import { LmtuneError } from '../util/errors.ts';
import { stableStringify } from '../util/json.ts';
import { readBytes, readJsonIn, type Folder } from '../util/folder.ts';
import { asFolder, requireHost, textFile, type FileToWrite } from '../util/host.ts';
import { WeightStore } from './weights.ts';
import { parseSafetensors, serializeSafetensors } from './safetensors.ts';
import type { PeftSpec } from '../peft/spec.ts';

export { WeightStore } from './weights.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';
const PEFT_PREFIX = 'base_model.model.';
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.json', 'merges.txt', 'generation_config.json'];

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
