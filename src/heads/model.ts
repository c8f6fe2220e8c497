/**
 * TransformerModel: the one object callers hold. It puts three parts behind the methods they use:
 *
 *   models/loaded.ts   LoadedModel: config, family, weights, adapters, tokenizer; load, save, trainable
 *   models/graphs.ts   ModelGraphs: the body's graphs for a head, one bounded cache, the shared feeds
 *   heads/*.ts         the heads as plain functions: objectives (loss), scoring, generation, inspection
 *
 * Every method here is one call into a part; the work and the reasons live there. It sits above models/
 * (which never imports heads/), so the loaders that hand out a TransformerModel live here too.
 */
import { LmtuneError } from '../util/errors.ts';
import type { Folder } from '../util/folder.ts';
import { asFolder, requireHost } from '../util/host.ts';
import type { Backend, Feeds, OutputTensor } from '../engine/index.ts';
import type { ModelConfig } from '../models/config.ts';
import type { PackedBatch } from '../models/batch.ts';
import type { CausalLM, ContinuationRequest, GenerateOptions, LanguageModel, MaskedLM, TextTokenizer } from '../models/api.ts';
import type { Family } from '../models/family.ts';
import { LoadedModel, type LoadOptions } from '../models/loaded.ts';
import { ModelGraphs, type GraphOptions, type HeadOutputs } from '../models/graphs.ts';
import type { WeightStore } from '../models/weights.ts';
import { ADAPTER_CONFIG, loadAdapters } from '../models/index.ts';
import type { PeftSpec } from '../peft/spec.ts';
import { objectiveLoss, type LossRequest, type LossResult } from './objective.ts';
import { continuationLogprobs, maskLogits } from './scoring.ts';
import { forwardAll, keyValues } from './inspect.ts';
import { generate } from './generate.ts';

export interface ModelOptions extends Omit<LoadOptions, 'tokenizer'>, GraphOptions {
  /** rows per scoring batch */
  evalBatch?: number;
}

export class TransformerModel {
  readonly loaded: LoadedModel;
  readonly graphs: ModelGraphs;
  readonly evalBatch: number;

  constructor(cfg: ModelConfig, weights: WeightStore, tokenizer: TextTokenizer | null, opts: ModelOptions = {}, dir: string | null = null) {
    this.loaded = new LoadedModel(cfg, weights, tokenizer, dir);
    this.graphs = new ModelGraphs(this.loaded, opts);
    this.evalBatch = opts.evalBatch ?? 8;
  }

  /** a Hugging Face folder: a path (through the host, src/node/host.ts in Node) or a Folder (a page's files) */
  static async load(folder: string | Folder, opts: ModelOptions & { tokenizer?: boolean } = {}): Promise<TransformerModel> {
    const m = await LoadedModel.load(folder, opts);
    return new TransformerModel(m.cfg, m.weights, m.tokenizer, opts, m.dir);
  }

  /** a model from a raw config.json object and canonical-name weights (tests, pretraining) */
  static fromWeights(rawConfig: Record<string, unknown>, weights: WeightStore, tokenizer: TextTokenizer | null, opts: ModelOptions = {}): TransformerModel {
    const m = LoadedModel.fromWeights(rawConfig, weights, tokenizer);
    return new TransformerModel(m.cfg, m.weights, m.tokenizer, opts);
  }

  // ------------------------------------------------------------------ the loaded model (models/loaded.ts)

  get cfg(): ModelConfig {
    return this.loaded.cfg;
  }
  get weights(): WeightStore {
    return this.loaded.weights;
  }
  get tokenizer(): TextTokenizer | null {
    return this.loaded.tokenizer;
  }
  get dir(): string | null {
    return this.loaded.dir;
  }
  /** the model's family: its forward, heads and position rules */
  get arch(): Family<ModelConfig> {
    return this.loaded.arch;
  }
  get adapters(): WeightStore | null {
    return this.loaded.adapters;
  }
  get peft(): PeftSpec | null {
    return this.loaded.peft;
  }
  get kind(): 'causal' | 'masked' {
    return this.loaded.kind;
  }
  get maxPositions(): number {
    return this.loaded.maxPositions;
  }
  get backend(): Backend {
    return this.graphs.backend;
  }
  get threads(): number | undefined {
    return this.graphs.threads;
  }

  save(dir: string): void {
    this.loaded.save(dir);
  }
  allParamNames(): string[] {
    return this.loaded.allParamNames();
  }
  trainableNames(): string[] {
    return this.loaded.trainableNames();
  }
  trainableParams(): { name: string; data: Float32Array }[] {
    return this.loaded.trainableParams();
  }
  tensor(name: string): Float32Array {
    return this.loaded.tensor(name);
  }
  padId(): number {
    return this.loaded.padId();
  }
  /** attach adapters; compiled graphs are dropped (models/graphs.ts) */
  setAdapters(peft: PeftSpec | null, adapters: WeightStore | null): void {
    this.graphs.setAdapters(peft, adapters);
  }

  // ------------------------------------------------------------------ heads (heads/*.ts, models/graphs.ts)

  /** Evaluate an objective (and gradients of `wrt`, optionally per example, optionally into `gradInto`'s buffers): heads/objective.ts */
  loss(req: LossRequest, wrt: readonly string[] = [], perExample: readonly string[] = [], gradInto?: ReadonlyMap<string, Float32Array>): Promise<LossResult & { outputs: Record<string, Float64Array> }> {
    return objectiveLoss(this.graphs, req, wrt, perExample, gradInto);
  }
  /** a caller's head on the body, cached under `key` + B + T: models/graphs.ts */
  runHead(key: string, batch: PackedBatch, build: HeadOutputs, feeds: Feeds = {}): Promise<Record<string, OutputTensor>> {
    return this.graphs.runHead(key, batch, build, feeds);
  }
  /** full logits and hidden states of every position (small inputs): heads/inspect.ts */
  forwardAll(seqs: readonly (readonly number[])[]): Promise<{ logits: Float64Array; hidden: Float64Array; batch: number; seq: number }> {
    return forwardAll(this.graphs, seqs);
  }
  /** per-layer keys and values of the base model on one sequence: heads/inspect.ts */
  keyValues(ids: readonly number[]): Promise<{ k: Float64Array; v: Float64Array }[]> {
    return keyValues(this.graphs, ids);
  }
  /** per-token log-probs of each continuation given its prompt (causal LMs): heads/scoring.ts */
  continuationLogprobs(reqs: readonly ContinuationRequest[]): Promise<Float64Array[]> {
    return continuationLogprobs(this.graphs, reqs, this.evalBatch);
  }
  /** logits of candidate ids at each input's mask (causal LMs: its last token): heads/scoring.ts */
  maskLogits(inputs: readonly (readonly number[])[], candidateIds: readonly number[]): Promise<Float64Array[]> {
    return maskLogits(this.graphs, inputs, candidateIds, this.evalBatch);
  }
  /** greedy decoding with a key/value cache: heads/generate.ts */
  generate(prompt: readonly number[], opts: GenerateOptions): Promise<string> {
    return generate(this.graphs, prompt, opts);
  }
}

// ------------------------------------------------------------------ loading

/** a Hugging Face folder (or an lmtune run's `final/`) as a TransformerModel, with the adapters saved next to it */
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
