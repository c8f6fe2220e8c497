/**
 * A loaded transformer: config, weights (by HF name), tokenizer, optional PEFT adapters, and compiled
 * graphs per shape bucket. Every capability above (scoring, training, MeZO, generation) goes through
 * the few graph kinds built here:
 *
 *   nll         per-target negative log-likelihood of chosen next tokens        [K]
 *   loss        a scalar objective over targets (token-weighted, or cross-entropy over candidate
 *               sequences' mean log-probs, or over label words at a mask), optionally with gradients
 *   mask        logits of candidate token ids at mask positions (masked LMs)      [K, C]
 *   decode      one generation step with a key/value cache
 *
 * The LM head runs only on the rows that matter (targets, masks, the last token), never on all B·T
 * positions: classification scoring touches a handful of rows of a 50k-wide vocabulary.
 */
import { LmtuneError } from '../util/errors.ts';
import type { Folder } from '../util/folder.ts';
import { asFolder } from '../util/host.ts';
import { type Backend, type Executable, Graph, type Value, compile, grad, toFloat64, type Feeds, type OutputTensor } from '../engine/index.ts';
import { type ModelConfig, attentionWindow, checkTensors, kvHeads, loadModelConfig, parseModelConfig, reconcileWithTensors } from './config.ts';
import { loadCheckpointTensors, readCheckpointHeaders, saveCheckpoint } from './checkpoint.ts';
import { checkMemory, estimateMemory, memoryBudget, type TrainingFootprint } from './memory.ts';
import { loadTokenizer } from './tokenizer.ts';
import { WeightStore } from './weights.ts';
import { ForwardContext, type ForwardInputs } from './forward.ts';
import { attentionBias, decodeBias, packBatch, rotaryTables, roundUp, type PackedBatch } from './batch.ts';
import type { ContinuationRequest, GenerateOptions, TextTokenizer } from './api.ts';
import type { PeftSpec } from '../peft/spec.ts';
import type { Family } from './family.ts';
import { familyOf } from './families/index.ts';

export interface ModelOptions {
  backend?: Backend;
  threads?: number;
  /** put weights in SharedArrayBuffers, for worker threads (no caller in lmtune sets it since the MeZO
   *  perturbation pool was removed: docs/zo.md; onnxruntime-node refuses such weights as graph inputs) */
  sharedWeights?: boolean;
  /** rows per scoring batch */
  evalBatch?: number;
  /** what a training run will keep per trainable weight, for the up-front memory check (models/memory.ts) */
  training?: TrainingFootprint;
}

/** What a caller's head sees (`TransformerModel.runHead`). */
export interface HeadContext {
  g: Graph;
  ctx: ForwardContext;
  /** [B, T, H] body output, before the final norm */
  hidden: Value;
  /** hidden rows [K, H] at flat positions b·T + t */
  rows(index: Value): Value;
  /** final norm + LM head on rows [K, H] → [K, V] */
  logits(rows: Value): Value;
  /** logits of the candidate ids only [K, C] (the RoBERTa head included) */
  candidateLogits(rows: Value, candIds: Value): Value;
  /** the graph value of a weight or adapter, for `grad` */
  param(name: string): Value;
}

/** targets: row-major positions (b·T + t) whose hidden state predicts `label` */
export interface Targets {
  index: Int32Array;
  label: Int32Array;
}

export type Objective =
  | { kind: 'token'; weight: Float32Array }
  | { kind: 'candidates'; examples: number; candidates: number; /** [E·C, K] */ segment: Float32Array; gold: Int32Array }
  | { kind: 'mask'; examples: number; candIds: Int32Array; gold: Int32Array };

export interface LossRequest {
  batch: PackedBatch;
  targets: Targets;
  objective: Objective;
}

export interface LossResult {
  loss: number;
  grads: Map<string, Float32Array> | null;
}

interface Built {
  exe: Executable;
  paramNames: string[];
  inputNames: Set<string>;
}

export class TransformerModel {
  /** the model's family: its forward, heads and position rules */
  readonly arch: Family<ModelConfig>;
  adapters: WeightStore | null = null;
  peft: PeftSpec | null = null;
  readonly backend: Backend;
  readonly threads: number | undefined;
  readonly evalBatch: number;
  private readonly cache = new Map<string, Promise<Built>>();
  /** compiled graphs kept per model (shape buckets); the oldest is dropped beyond this */
  private static readonly MAX_GRAPHS = 32;

  private remember(key: string, p: Promise<Built>): void {
    this.cache.set(key, p);
    if (this.cache.size > TransformerModel.MAX_GRAPHS) this.cache.delete(this.cache.keys().next().value as string);
  }

  constructor(
    readonly cfg: ModelConfig,
    readonly weights: WeightStore,
    readonly tokenizer: TextTokenizer | null,
    opts: ModelOptions = {},
    readonly dir: string | null = null,
  ) {
    this.arch = familyOf(cfg);
    this.backend = opts.backend ?? 'ort';
    this.threads = opts.threads;
    this.evalBatch = opts.evalBatch ?? 8;
  }

  get kind(): 'causal' | 'masked' {
    return this.arch.causal ? 'causal' : 'masked';
  }
  get maxPositions(): number {
    return this.cfg.maxPositions;
  }

  /** a Hugging Face folder: a path (through the host, src/node/host.ts in Node) or a Folder (a page's files) */
  static async load(folder: string | Folder, opts: ModelOptions & { tokenizer?: boolean } = {}): Promise<TransformerModel> {
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
    return new TransformerModel(cfg, store, tok, opts, dir);
  }

  /** a model from a raw config.json object and canonical-name weights (tests, pretraining) */
  static fromWeights(rawConfig: Record<string, unknown>, weights: WeightStore, tokenizer: TextTokenizer | null, opts: ModelOptions = {}): TransformerModel {
    const cfg = parseModelConfig(rawConfig, '(in memory)');
    checkTensors(cfg, new Map([...weights.entries()].map(([k, v]) => [k, { shape: v.shape }])), '(in memory)');
    return new TransformerModel(cfg, weights, tokenizer, opts);
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

  tensor(name: string): Float32Array {
    if (this.adapters?.has(name)) return this.adapters.get(name).data;
    return this.weights.get(name).data;
  }

  setAdapters(peft: PeftSpec | null, adapters: WeightStore | null): void {
    this.peft = peft;
    this.adapters = adapters;
    this.cache.clear();
  }

  // ------------------------------------------------------------------ graph construction

  private prefixSlots(): number {
    return this.peft?.kind === 'prefix' ? this.peft.slots : 0;
  }

  /** graph inputs shared by every kind */
  private forwardInputs(g: Graph, B: number, T: number, past = 0): ForwardInputs {
    const S = this.prefixSlots() + past + T;
    const inputs: ForwardInputs = {
      ids: g.input('ids', [B, T], 'i64'),
      positions: g.input('positions', [B, T], 'i64'),
      bias: g.input('bias', [B, 1, T, S], 'f32'),
    };
    const rot = this.arch.rotary(this.cfg);
    if (rot) {
      inputs.cos = g.input('cos', [B, 1, T, rot.dim], 'f32');
      inputs.sin = g.input('sin', [B, 1, T, rot.dim], 'f32');
    }
    return inputs;
  }

  private context(g: Graph, inputs: ForwardInputs): ForwardContext {
    return new ForwardContext(g, this.cfg, this.weights, this.adapters, this.peft, inputs);
  }

  /** hidden rows [K, H] at flat positions `index` */
  private rows(ctx: ForwardContext, h: Value, index: Value): Value {
    const H = h.shape[2]!;
    return ctx.g.apply1('gather', [h.reshape([-1, H]), index]);
  }

  /** Build (or fetch) the graph for a loss request's shapes. */
  private async buildLoss(B: number, T: number, K: number, obj: Objective, wrt: readonly string[], perExample: readonly string[]): Promise<Built> {
    const shapeKey = obj.kind === 'token' ? 'token' : obj.kind === 'candidates' ? `cand:${obj.examples}x${obj.candidates}` : `mask:${obj.examples}x${obj.candIds.length}`;
    const key = `loss|${B}|${T}|${K}|${shapeKey}|${wrt.join(',')}|${perExample.join(',')}`;
    let p = this.cache.get(key);
    if (!p) {
      p = (async () => {
        const g = new Graph('loss');
        const inputs = this.forwardInputs(g, B, T);
        const ctx = this.context(g, inputs);
        const h = this.arch.body(ctx);
        const index = g.input('tgt_index', [K], 'i64');
        const label = g.input('tgt_label', [K], 'i64');
        const outputs: Record<string, Value> = {};
        let loss: Value;
        if (obj.kind === 'mask') {
          // label-word logits at the mask rows: decoder rows of the candidate words only
          const C = obj.candIds.length;
          const logits = this.restrictedHead(ctx, this.rows(ctx, h, index), g.input('cand_ids', [C], 'i64'));
          const nll = g.apply('cross_entropy', [logits, g.input('gold', [obj.examples], 'i64')], { ignoreIndex: -100 })[0]!;
          outputs.per_example = nll;
          loss = this.exampleMean(g, nll, obj.examples);
          outputs.scores = logits;
        } else {
          const logits = this.arch.head(ctx, this.rows(ctx, h, index));
          const nll = g.apply('cross_entropy', [logits, label], { ignoreIndex: -100 })[0]!;
          outputs.nll = nll;
          if (obj.kind === 'token') {
            loss = nll.mul(g.input('tgt_weight', [K], 'f32')).sum();
          } else {
            const E = obj.examples;
            const C = obj.candidates;
            const seg = g.input('segment', [E * C, K], 'f32');
            const seqLogp = seg.matmul(nll.reshape([K, 1])).neg().reshape([E, C]);
            const ce = g.apply('cross_entropy', [seqLogp, g.input('gold', [E], 'i64')], { ignoreIndex: -100 })[0]!;
            outputs.per_example = ce;
            outputs.scores = seqLogp;
            loss = this.exampleMean(g, ce, E);
          }
        }
        outputs.loss = loss;
        if (wrt.length) {
          const pv = ctx.paramValues();
          const wrtVals = wrt.map((n) => {
            const v = pv.get(n);
            if (!v) throw new LmtuneError('GRAPH', `parameter '${n}' is not used by the ${this.cfg.family} forward pass`);
            return v;
          });
          const perVals = perExample.map((n) => pv.get(n)!);
          // per-example gradients differentiate the sum of per-example losses
          const target = perVals.length ? (outputs.per_example ?? loss).sum() : loss;
          const grads = grad(target, wrtVals, { perExample: perVals });
          wrt.forEach((n, i) => (outputs[`grad:${n}`] = grads[i]!));
        }
        return this.finish(g, ctx, outputs);
      })();
      this.remember(key, p);
    }
    return p;
  }

  /**
   * The mean of per-example losses over the real examples only. Rows whose gold is ignored pad a
   * partial batch to its shape bucket; dividing by the bucket instead of the real count made the
   * last batch of a dev set count less, and the dev loss depend on the batch size.
   */
  private exampleMean(g: Graph, perExample: Value, E: number): Value {
    return perExample.mul(g.input('example_weight', [E], 'f32')).sum();
  }

  private restrictedHead(ctx: ForwardContext, rows: Value, candIds: Value): Value {
    // a family may compute the candidates' logits without the full vocabulary (RoBERTa's head)
    if (this.arch.restrictedHead) return this.arch.restrictedHead(ctx, rows, candIds);
    const logits = this.arch.head(ctx, rows);
    return ctx.g.apply1('gather', [logits.transpose([1, 0]), candIds]).transpose([1, 0]);
  }

  private async finish(g: Graph, ctx: ForwardContext, outputs: Record<string, Value>): Promise<Built> {
    const exe = await compile(outputs, this.backend, this.threads !== undefined ? { threads: this.threads } : {});
    return { exe, paramNames: [...ctx.paramValues().keys()], inputNames: new Set(g.inputs().map((v) => v.name)) };
  }

  // ------------------------------------------------------------------ feeding

  /** weights and batch inputs; `withBias: false` when the caller feeds its own attention bias */
  private baseFeeds(built: Built, batch: PackedBatch, withBias = true): Feeds {
    const feeds: Feeds = {};
    for (const n of built.paramNames) feeds[n] = this.tensor(n);
    const pos = new BigInt64Array(batch.positions.length);
    for (let i = 0; i < pos.length; i++) pos[i] = BigInt(this.arch.positionIndex(batch.positions[i]!, this.cfg));
    feeds.ids = batch.ids;
    feeds.positions = pos;
    if (withBias) feeds.bias = attentionBias(batch, this.arch.causal, this.prefixSlots(), attentionWindow(this.cfg));
    const rot = this.arch.rotary(this.cfg);
    if (rot) {
      const t = rotaryTables(batch, rot.dim, rot.theta, rot.scale);
      feeds.cos = t.cos;
      feeds.sin = t.sin;
    }
    return feeds;
  }

  /** Evaluate an objective (and gradients of `wrt`, optionally per example). */
  async loss(req: LossRequest, wrt: readonly string[] = [], perExample: readonly string[] = []): Promise<LossResult & { outputs: Record<string, Float64Array> }> {
    const { batch, targets, objective } = req;
    const K = targets.index.length;
    const built = await this.buildLoss(batch.batch, batch.seq, K, objective, wrt, perExample);
    const feeds = this.baseFeeds(built, batch);
    feeds.tgt_index = BigInt64Array.from(targets.index, (x) => BigInt(x));
    feeds.tgt_label = BigInt64Array.from(targets.label, (x) => BigInt(x));
    if (objective.kind === 'token') feeds.tgt_weight = objective.weight;
    else if (objective.kind === 'candidates') {
      feeds.segment = objective.segment;
      feeds.gold = BigInt64Array.from(objective.gold, (x) => BigInt(x));
    } else {
      feeds.cand_ids = BigInt64Array.from(objective.candIds, (x) => BigInt(x));
      feeds.gold = BigInt64Array.from(objective.gold, (x) => BigInt(x));
    }
    if (objective.kind !== 'token') feeds.example_weight = exampleWeights(objective.gold);
    for (const k of Object.keys(feeds)) if (!built.inputNames.has(k) && !built.paramNames.includes(k)) delete feeds[k];
    const out = await built.exe.run(feeds);
    const loss = toFloat64(out.loss!)[0]!;
    let grads: Map<string, Float32Array> | null = null;
    if (wrt.length) {
      grads = new Map();
      for (const n of wrt) {
        const d = out[`grad:${n}`]!.data;
        grads.set(n, d instanceof Float32Array ? d : Float32Array.from(d as Float64Array));
      }
    }
    const outputs: Record<string, Float64Array> = {};
    for (const k of ['nll', 'scores', 'per_example']) if (out[k]) outputs[k] = toFloat64(out[k]!);
    return { loss, grads, outputs };
  }

  /**
   * Attach a caller's head to the body: analyses (LESS gradient features, eNTK Jacobians, feature probes)
   * build their own outputs and gradients on the hidden states without the model knowing about them.
   * `key` names the head and every shape it adds beyond B and T; the compiled graph is cached under it.
   */
  async runHead(key: string, batch: PackedBatch, build: (h: HeadContext) => Record<string, Value>, feeds: Feeds = {}): Promise<Record<string, OutputTensor>> {
    const B = batch.batch;
    const T = batch.seq;
    const cacheKey = `head|${key}|${B}|${T}`;
    let p = this.cache.get(cacheKey);
    if (!p) {
      p = (async () => {
        const g = new Graph('head');
        const ctx = this.context(g, this.forwardInputs(g, B, T));
        const hidden = this.arch.body(ctx);
        const head: HeadContext = {
          g,
          ctx,
          hidden,
          rows: (index) => this.rows(ctx, hidden, index),
          logits: (rows) => this.arch.head(ctx, rows),
          candidateLogits: (rows, candIds) => this.restrictedHead(ctx, rows, candIds),
          param: (name) => ctx.w(name),
        };
        return this.finish(g, ctx, build(head));
      })();
      this.remember(cacheKey, p);
    }
    const built = await p;
    const all = { ...this.baseFeeds(built, batch), ...feeds };
    for (const k of Object.keys(all)) if (!built.inputNames.has(k) && !built.paramNames.includes(k)) delete all[k];
    return built.exe.run(all);
  }

  /**
   * Full logits [B, T, V] and final hidden states [B, T, H] (after the final norm for causal LMs' last
   * layer, as HF's hidden_states[-1] is before it; we return the body output) for small inputs: tests,
   * probes and `lmtune` diagnostics. Sequences are right-padded; rows past each length are padding.
   */
  async forwardAll(seqs: readonly (readonly number[])[]): Promise<{ logits: Float64Array; hidden: Float64Array; batch: number; seq: number }> {
    const batch = packBatch(seqs.map((s) => [...s]), { side: 'right', padId: this.padId() });
    const B = batch.batch;
    const T = batch.seq;
    const key = `all|${B}|${T}`;
    let p = this.cache.get(key);
    if (!p) {
      p = (async () => {
        const g = new Graph('all');
        const ctx = this.context(g, this.forwardInputs(g, B, T));
        const h = this.arch.body(ctx);
        const H = h.shape[2]!;
        const logits = this.arch.head(ctx, h.reshape([B * T, H]));
        return this.finish(g, ctx, { logits, hidden: h });
      })();
      this.remember(key, p);
    }
    const built = await p;
    const out = await built.exe.run(this.baseFeeds(built, batch));
    return { logits: toFloat64(out.logits!), hidden: toFloat64(out.hidden!), batch: B, seq: T };
  }

  /** per-layer attention keys and values [Hkv, T, D] of the base model (no adapters) on one sequence */
  async keyValues(ids: readonly number[]): Promise<{ k: Float64Array; v: Float64Array }[]> {
    const T = ids.length;
    const g = new Graph('kv');
    const inputs = this.forwardInputs(g, 1, T);
    // no adapters: prefix slots are initialized from the frozen model
    const S = T;
    const bias = g.input('kv_bias', [1, 1, T, S], 'f32');
    const ctx = new ForwardContext(g, this.cfg, this.weights, null, null, { ...inputs, bias });
    ctx.captureKv = true;
    this.arch.body(ctx);
    const outputs: Record<string, Value> = {};
    ctx.capturedKv.forEach((kv, l) => {
      outputs[`k${l}`] = kv.k;
      outputs[`v${l}`] = kv.v;
    });
    const built = await this.finish(g, ctx, outputs);
    const batch = packBatch([[...ids]], { side: 'right', padId: this.padId(), seq: T });
    const feeds = this.baseFeeds(built, batch, false);
    feeds.kv_bias = attentionBias(batch, this.arch.causal, 0, attentionWindow(this.cfg));
    const out = await built.exe.run(feeds);
    return ctx.capturedKv.map((_, l) => ({ k: toFloat64(out[`k${l}`]!), v: toFloat64(out[`v${l}`]!) }));
  }

  // ------------------------------------------------------------------ scoring API (tasks)

  /** per-token log-probs of each continuation given its prompt (causal LMs) */
  async continuationLogprobs(reqs: readonly ContinuationRequest[]): Promise<Float64Array[]> {
    if (!this.arch.causal) throw new LmtuneError('UNSUPPORTED', `${this.cfg.family} is a masked LM: score with maskLogits`);
    const out: Float64Array[] = [];
    const bsz = this.evalBatch;
    for (let s = 0; s < reqs.length; s += bsz) {
      const chunk = reqs.slice(s, s + bsz);
      const seqs = chunk.map((r) => this.clip([...r.prompt, ...r.continuation], r.continuation.length));
      const batch = packBatch(seqs, { side: 'right', padId: this.padId(), batch: bsz, seq: roundUp(Math.max(...seqs.map((q) => q.length)), 16) });
      const index: number[] = [];
      const label: number[] = [];
      seqs.forEach((q, b) => {
        const n = chunk[b]!.continuation.length;
        for (let j = 0; j < n; j++) {
          const t = q.length - n + j; // position of continuation token j
          index.push(b * batch.seq + t - 1);
          label.push(q[t]!);
        }
      });
      const K = roundUp(index.length, 16);
      const targets = padTargets(index, label, K);
      const { outputs } = await this.loss({ batch, targets, objective: { kind: 'token', weight: new Float32Array(K) } });
      let k = 0;
      for (const r of chunk) {
        const lp = new Float64Array(r.continuation.length);
        for (let j = 0; j < lp.length; j++) lp[j] = -outputs.nll![k++]!;
        out.push(lp);
      }
    }
    return out;
  }

  /** keep the last maxPositions tokens (the continuation must fit) */
  private clip(seq: number[], contLen: number): number[] {
    const max = this.cfg.maxPositions;
    if (seq.length <= max) return seq;
    if (contLen >= max) throw new LmtuneError('DATA', `a continuation of ${contLen} tokens does not fit the model's ${max} positions`);
    return seq.slice(seq.length - max);
  }

  padId(): number {
    return this.tokenizer?.padId ?? this.cfg.padTokenId ?? this.tokenizer?.eosId ?? 0;
  }

  /** logits of candidate ids at the mask position of each input (masked LMs; causal LMs: the last position) */
  async maskLogits(inputs: readonly (readonly number[])[], candidateIds: readonly number[]): Promise<Float64Array[]> {
    const maskId = this.tokenizer?.maskId ?? null;
    const out: Float64Array[] = [];
    const bsz = this.evalBatch;
    for (let s = 0; s < inputs.length; s += bsz) {
      const chunk = inputs.slice(s, s + bsz).map((x) => [...x]);
      const batch = packBatch(chunk, { side: 'right', padId: this.padId(), batch: bsz, seq: roundUp(Math.max(...chunk.map((q) => q.length)), 16) });
      const index = new Int32Array(bsz);
      chunk.forEach((q, b) => {
        const m = this.arch.causal ? q.length - 1 : q.indexOf(maskId ?? -1);
        if (m < 0) throw new LmtuneError('DATA', `input ${s + b} has no mask token (id ${maskId})`);
        index[b] = b * batch.seq + m;
      });
      const gold = new Int32Array(bsz).fill(-100);
      const res = await this.loss({ batch, targets: { index, label: new Int32Array(bsz).fill(-100) }, objective: { kind: 'mask', examples: bsz, candIds: Int32Array.from(candidateIds), gold } });
      const C = candidateIds.length;
      for (let b = 0; b < chunk.length; b++) out.push(res.outputs.scores!.slice(b * C, (b + 1) * C));
    }
    return out;
  }

  // ------------------------------------------------------------------ generation (KV cache)

  private async buildDecode(T: number, P: number): Promise<Built & { layers: number }> {
    const key = `decode|${T}|${P}`;
    let p = this.cache.get(key);
    if (!p) {
      p = (async () => {
        const g = new Graph('decode');
        const inputs = this.forwardInputs(g, 1, T, P);
        const ctx = this.context(g, inputs);
        ctx.captureKv = true;
        ctx.past = [];
        const L = this.cfg.numLayers;
        const Hkv = kvHeads(this.cfg);
        for (let l = 0; l < L; l++) {
          ctx.past.push({ k: g.input(`past_k${l}`, [1, Hkv, P, this.cfg.headDim]), v: g.input(`past_v${l}`, [1, Hkv, P, this.cfg.headDim]) });
        }
        const h = this.arch.body(ctx);
        const last = this.rows(ctx, h, g.input('last', [1], 'i64'));
        const outputs: Record<string, Value> = { logits: this.arch.head(ctx, last) };
        ctx.capturedKv.forEach((kv, l) => {
          outputs[`k${l}`] = kv.k;
          outputs[`v${l}`] = kv.v;
        });
        return this.finish(g, ctx, outputs);
      })();
      this.remember(key, p);
    }
    return p.then((b) => ({ ...b, layers: this.cfg.numLayers }));
  }

  /** greedy decoding; each new token costs one single-row forward pass over the cached keys/values */
  async generate(prompt: readonly number[], opts: GenerateOptions): Promise<string> {
    if (!this.arch.causal) throw new LmtuneError('UNSUPPORTED', 'generation needs a causal LM');
    if (!this.tokenizer) throw new LmtuneError('TOKENIZER', 'generation needs a tokenizer');
    const maxNew = opts.maxNewTokens;
    const budget = this.cfg.maxPositions;
    let ids = [...prompt];
    if (ids.length + maxNew > budget) ids = ids.slice(ids.length + maxNew - budget);
    const P = roundUp(ids.length + maxNew, 32); // cache capacity
    const Hkv = kvHeads(this.cfg);
    const D = this.cfg.headDim;
    const L = this.cfg.numLayers;
    const cacheK = Array.from({ length: L }, () => new Float32Array(Hkv * P * D));
    const cacheV = Array.from({ length: L }, () => new Float32Array(Hkv * P * D));
    let filled = 0;
    const generated: number[] = [];
    const eos = this.tokenizer.eosId;
    // prefill: the whole prompt at once (T = prompt bucket) against an empty cache of capacity P
    let pending = ids;
    while (generated.length < maxNew) {
      const T = pending.length === 1 ? 1 : roundUp(pending.length, 16);
      const built = await this.buildDecode(T, P);
      const batch = packBatch([pending], { side: 'right', padId: this.padId(), batch: 1, seq: T });
      // positions continue after the cache
      for (let i = 0; i < pending.length; i++) batch.positions[i] = filled + i;
      const feeds = this.baseFeeds(built, batch, false);
      feeds.bias = decodeBias(T, pending.length, filled, P, this.prefixSlots(), attentionWindow(this.cfg));
      feeds.last = [pending.length - 1];
      for (let l = 0; l < L; l++) {
        feeds[`past_k${l}`] = cacheK[l]!;
        feeds[`past_v${l}`] = cacheV[l]!;
      }
      const out = await built.exe.run(feeds);
      // append this chunk's keys/values to the cache
      for (let l = 0; l < L; l++) {
        for (const [src, dst] of [[out[`k${l}`]!, cacheK[l]!], [out[`v${l}`]!, cacheV[l]!]] as const) {
          const d = toFloat64(src);
          for (let hh = 0; hh < Hkv; hh++) {
            for (let i = 0; i < pending.length; i++) {
              for (let e = 0; e < D; e++) dst[(hh * P + filled + i) * D + e] = d[(hh * T + i) * D + e]!;
            }
          }
        }
      }
      filled += pending.length;
      const logits = toFloat64(out.logits!);
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
      if (best === eos) break;
      generated.push(best);
      const text = this.tokenizer.decode(generated);
      const stop = (opts.stop ?? []).map((s) => text.indexOf(s)).filter((i) => i >= 0);
      if (stop.length) return text.slice(0, Math.min(...stop));
      pending = [best];
    }
    return this.tokenizer.decode(generated);
  }
}

/** pad K targets to a bucket with ignored rows */
export function padTargets(index: readonly number[], label: readonly number[], K: number): Targets {
  const idx = new Int32Array(K);
  const lab = new Int32Array(K).fill(-100);
  idx.set(index);
  lab.set(label);
  return { index: idx, label: lab };
}

/** 1/n for each of the n examples whose gold is not the ignore index (-100), 0 for padding rows */
export function exampleWeights(gold: Int32Array): Float32Array {
  let n = 0;
  for (const y of gold) if (y !== -100) n++;
  const w = new Float32Array(gold.length);
  for (let i = 0; i < gold.length; i++) if (gold[i] !== -100) w[i] = 1 / n;
  return w;
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
