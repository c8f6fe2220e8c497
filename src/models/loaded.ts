/**
 * A loaded model's state, without its graphs: the config and family, the base weights by canonical HF
 * name, the attached adapters, the tokenizer. Loading checks what would otherwise compute garbage
 * silently (memory, tensor names and shapes, non-float or non-finite values); saving writes the HF
 * layout; the trainable selection says which of these arrays an optimizer updates in place.
 *
 * The graphs built on these weights live in `graphs.ts` (ModelGraphs), the heads on them in `heads/`,
 * and `heads/model.ts`'s TransformerModel puts the three behind one object.
 */
import { LmtuneError } from '../util/errors.ts';
import type { Folder } from '../util/folder.ts';
import { asFolder } from '../util/host.ts';
import { type ModelConfig, checkTensors, loadModelConfig, parseModelConfig, reconcileWithTensors } from './config.ts';
import { loadCheckpointTensors, readCheckpointHeaders, saveCheckpoint } from './checkpoint.ts';
import { checkMemory, estimateMemory, memoryBudget, type TrainingFootprint } from './memory.ts';
import { loadTokenizer } from './tokenizer.ts';
import { WeightStore } from './weights.ts';
import type { TextTokenizer } from './api.ts';
import type { PeftSpec } from '../peft/spec.ts';
import type { Family } from './family.ts';
import { familyOf } from './families/index.ts';

export interface LoadOptions {
  /** put weights in SharedArrayBuffers, for worker threads (no caller in lmtune sets it since the MeZO
   *  perturbation pool was removed: docs/zo.md; onnxruntime-node refuses such weights as graph inputs) */
  sharedWeights?: boolean;
  /** what a training run will keep per trainable weight, for the up-front memory check (models/memory.ts) */
  training?: TrainingFootprint;
  /** false: no tokenizer (tests, weights-only tools) */
  tokenizer?: boolean;
}

export class LoadedModel {
  /** the model's family: its forward, heads and position rules */
  readonly arch: Family<ModelConfig>;
  adapters: WeightStore | null = null;
  peft: PeftSpec | null = null;

  constructor(
    readonly cfg: ModelConfig,
    readonly weights: WeightStore,
    readonly tokenizer: TextTokenizer | null,
    readonly dir: string | null = null,
  ) {
    this.arch = familyOf(cfg);
  }

  /** a Hugging Face folder: a path (through the host, src/node/host.ts in Node) or a Folder (a page's files) */
  static async load(folder: string | Folder, opts: LoadOptions = {}): Promise<LoadedModel> {
    const src = asFolder(folder, 'loading a model');
    const dir = src.label;
    const cfg0 = loadModelConfig(src);
    const available = memoryBudget();
    if (available) {
      // from the headers alone, before a byte of tensor data is read
      let elements = 0;
      for (const h of readCheckpointHeaders(src).headers) for (const t of h.tensors.values()) elements += t.shape.reduce((p, d) => p * d, 1);
      checkMemory(`model ${dir}`, elements, estimateMemory(elements, opts.training), available, opts.training);
    }
    const { tensors } = await loadCheckpointTensors(src);
    const { config: cfg } = reconcileWithTensors(cfg0, tensors);
    const check = checkTensors(cfg, tensors, dir);
    const store = new WeightStore([], opts.sharedWeights ?? false);
    for (const [canonical, found] of check.resolved) {
      const t = tensors.get(found)!;
      checkWeightValues(dir, found, t);
      store.set(canonical, t.shape, t.data);
    }
    const tok = opts.tokenizer === false ? null : await loadTokenizer(src, cfg.family);
    return new LoadedModel(cfg, store, tok, dir);
  }

  /** a model from a raw config.json object and canonical-name weights (tests, pretraining) */
  static fromWeights(rawConfig: Record<string, unknown>, weights: WeightStore, tokenizer: TextTokenizer | null): LoadedModel {
    const cfg = parseModelConfig(rawConfig, '(in memory)');
    checkTensors(cfg, new Map([...weights.entries()].map(([k, v]) => [k, { shape: v.shape }])), '(in memory)');
    return new LoadedModel(cfg, weights, tokenizer);
  }

  /** save config + base weights in the HF layout (tied heads omitted, as transformers does) */
  save(dir: string): void {
    const tensors = new Map<string, { shape: readonly number[]; data: Float32Array }>();
    for (const [k, v] of this.weights.entries()) tensors.set(k, v);
    saveCheckpoint(dir, { ...this.cfg.raw } as Record<string, unknown>, tensors);
  }

  /** names of all weights the forward pass reads (base + adapters) */
  allParamNames(): string[] {
    return [...this.weights.names(), ...(this.adapters?.names() ?? [])];
  }

  /** the trainable parameters for the current PEFT mode: adapters, or every base weight */
  trainableNames(): string[] {
    if (this.peft && this.peft.kind !== 'full') return this.adapters?.names() ?? [];
    const only = this.peft?.kind === 'full' && this.peft.only ? new RegExp(this.peft.only) : null;
    const names = only ? this.weights.names().filter((n) => only.test(n)) : this.weights.names();
    if (only && names.length === 0) throw new LmtuneError('CONFIG', `--trainable '${this.peft!.kind === 'full' ? this.peft!.only : ''}' matches no weight of this ${this.cfg.family} model`, `weight names look like ${this.weights.names()[0]}`);
    return names;
  }

  /** the trainable tensors as the optimizers take them: name + the live array */
  trainableParams(): { name: string; data: Float32Array }[] {
    return this.trainableNames().map((name) => ({ name, data: this.tensor(name) }));
  }

  /** the live array of a weight or adapter (what graphs are fed, what optimizers update) */
  tensor(name: string): Float32Array {
    if (this.adapters?.has(name)) return this.adapters.get(name).data;
    return this.weights.get(name).data;
  }

  /**
   * Attach (or, with nulls, detach) adapters. Graphs compiled before read the old set: a model with
   * graphs changes adapters through `ModelGraphs.setAdapters`, which also drops them.
   */
  setAdapters(peft: PeftSpec | null, adapters: WeightStore | null): void {
    this.peft = peft;
    this.adapters = adapters;
  }

  /** key/value slots that prefix-tuning puts in front of every layer's keys */
  prefixSlots(): number {
    return this.peft?.kind === 'prefix' ? this.peft.slots : 0;
  }

  padId(): number {
    return this.tokenizer?.padId ?? this.cfg.padTokenId ?? this.tokenizer?.eosId ?? 0;
  }

  get kind(): 'causal' | 'masked' {
    return this.arch.causal ? 'causal' : 'masked';
  }
  get maxPositions(): number {
    return this.cfg.maxPositions;
  }
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/**
 * A weight stored as integers, or holding NaN/Inf, would load as numbers and compute garbage without a
 * word: both are refused, naming the folder and tensor.
 */
function checkWeightValues(dir: string, name: string, t: { dtype: string; data: Float32Array }): void {
  if (!FLOAT_DTYPES.has(t.dtype)) {
    throw new LmtuneError('CHECKPOINT', `${dir}: tensor '${name}' is stored as ${t.dtype}; model weights must be floating point (F32, F16, BF16 or F64)`, 'the file is corrupted or was saved from a quantized model, which lmtune does not load');
  }
  let bad = 0;
  for (let i = 0; i < t.data.length; i++) if (!Number.isFinite(t.data[i]!)) bad++;
  if (bad > 0) throw new LmtuneError('CHECKPOINT', `${dir}: tensor '${name}' holds ${bad} NaN/Inf value(s) of ${t.data.length}`, 'the checkpoint is corrupted or comes from a diverged run; use an earlier checkpoint');
}
