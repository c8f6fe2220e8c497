/**
 * The graphs built on a loaded model. One builder makes every kind: the batch inputs (ids, positions,
 * attention bias, rotary tables; cached keys/values when generating), the ForwardContext with the
 * adapters, and the family's body, whose hidden states [B, T, H] a head turns into its outputs
 * (`HeadContext`). Compiled graphs are kept in one bounded cache under a key that names the head and its
 * shapes, and one function feeds what every graph shares: the weights, zero-copy, and the batch.
 *
 * The heads themselves (the training objectives, scoring, generation, inspection) are plain functions in
 * heads/; analyses attach their own through `runHead`. The LM head runs only on the rows a head asks for
 * (targets, masks, the last token), never on all B·T positions unless it asks for all of them.
 */
import { type Backend, type Executable, Graph, type Value, compile, type Feeds, type OutputTensor } from '../engine/index.ts';
import { attentionWindow, kvHeads } from './config.ts';
import { ForwardContext, type ForwardInputs } from './forward.ts';
import { attentionBias, rotaryTables, type PackedBatch } from './batch.ts';
import type { LoadedModel } from './loaded.ts';
import type { WeightStore } from './weights.ts';
import type { PeftSpec } from '../peft/spec.ts';

/** What a head sees: the body's output and the pieces to build on it (`ModelGraphs.graph`, `runHead`). */
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

/** a head: the outputs it adds to the body, by name */
export type HeadOutputs = (h: HeadContext) => Record<string, Value>;

export interface CompiledGraph {
  exe: Executable;
  /** the weights and adapters the graph reads, fed by name */
  paramNames: string[];
  inputNames: Set<string>;
  /** prefix-tuning slots in front of the keys (0 for a graph built without adapters) */
  slots: number;
}

export interface BodyOptions {
  /** the graph's name (the ONNX graph's) */
  name: string;
  /** P cached positions before the T new ones: inputs past_k{l}, past_v{l} [1, Hkv, P, D] (generation) */
  past?: number;
  /** record every layer's keys and values (ctx.capturedKv) */
  captureKv?: boolean;
  /** false: the base model alone, adapters left out (prefix slots initialized from the frozen model) */
  adapters?: boolean;
}

export interface GraphOptions {
  backend?: Backend;
  threads?: number;
}

/** Compiled graphs by key, the oldest dropped beyond `max` (a run sees a few shape buckets per head). */
export class GraphCache {
  private readonly graphs = new Map<string, Promise<CompiledGraph>>();

  constructor(readonly max: number) {}

  get(key: string): Promise<CompiledGraph> | undefined {
    return this.graphs.get(key);
  }

  /** keep `p` under `key`; a graph whose build failed stays too, so the error repeats rather than the build */
  add(key: string, p: Promise<CompiledGraph>): Promise<CompiledGraph> {
    this.graphs.set(key, p);
    if (this.graphs.size > this.max) this.graphs.delete(this.graphs.keys().next().value as string);
    return p;
  }

  clear(): void {
    this.graphs.clear();
  }

  get size(): number {
    return this.graphs.size;
  }
}

const HEAD: BodyOptions = { name: 'head' };

export class ModelGraphs {
  /** compiled graphs kept per model (shape buckets); the oldest is dropped beyond this */
  static readonly MAX_GRAPHS = 32;
  readonly cache = new GraphCache(ModelGraphs.MAX_GRAPHS);
  readonly backend: Backend;
  readonly threads: number | undefined;

  constructor(
    readonly model: LoadedModel,
    opts: GraphOptions = {},
  ) {
    this.backend = opts.backend ?? 'ort';
    this.threads = opts.threads;
  }

  /** attach adapters to the model; the graphs compiled for the old ones are dropped */
  setAdapters(peft: PeftSpec | null, adapters: WeightStore | null): void {
    this.model.setAdapters(peft, adapters);
    this.cache.clear();
  }

  /** the compiled graph under `key` (which names the head and every shape it depends on), built once */
  graph(key: string, B: number, T: number, outputs: HeadOutputs, opts: BodyOptions): Promise<CompiledGraph> {
    return this.cache.get(key) ?? this.cache.add(key, this.build(B, T, outputs, opts));
  }

  /** body on a [B, T] batch + the head's outputs, compiled; not cached (`graph` caches) */
  async build(B: number, T: number, outputs: HeadOutputs, opts: BodyOptions): Promise<CompiledGraph> {
    const m = this.model;
    const adapters = opts.adapters !== false;
    const slots = adapters ? m.prefixSlots() : 0;
    const P = opts.past ?? 0;
    const g = new Graph(opts.name);
    const ctx = new ForwardContext(g, m.cfg, m.weights, adapters ? m.adapters : null, adapters ? m.peft : null, this.inputs(g, B, T, slots + P));
    if (opts.captureKv) ctx.captureKv = true;
    if (opts.past !== undefined) {
      const Hkv = kvHeads(m.cfg);
      ctx.past = [];
      for (let l = 0; l < m.cfg.numLayers; l++) {
        ctx.past.push({ k: g.input(`past_k${l}`, [1, Hkv, P, m.cfg.headDim]), v: g.input(`past_v${l}`, [1, Hkv, P, m.cfg.headDim]) });
      }
    }
    const hidden = m.arch.body(ctx);
    const H = hidden.shape[2]!;
    const head: HeadContext = {
      g,
      ctx,
      hidden,
      rows: (index) => g.apply1('gather', [hidden.reshape([-1, H]), index]),
      logits: (rows) => m.arch.head(ctx, rows),
      candidateLogits: (rows, candIds) => {
        // a family may compute the candidates' logits without the full vocabulary (RoBERTa's head)
        if (m.arch.restrictedHead) return m.arch.restrictedHead(ctx, rows, candIds);
        return g.apply1('gather', [m.arch.head(ctx, rows).transpose([1, 0]), candIds]).transpose([1, 0]);
      },
      param: (name) => ctx.w(name),
    };
    const exe = await compile(outputs(head), this.backend, this.threads !== undefined ? { threads: this.threads } : {});
    return { exe, paramNames: [...ctx.paramValues().keys()], inputNames: new Set(g.inputs().map((v) => v.name)), slots };
  }

  /** graph inputs shared by every kind; S = prefix slots + cached positions + T keys */
  private inputs(g: Graph, B: number, T: number, before: number): ForwardInputs {
    const inputs: ForwardInputs = {
      ids: g.input('ids', [B, T], 'i64'),
      positions: g.input('positions', [B, T], 'i64'),
      bias: g.input('bias', [B, 1, T, before + T], 'f32'),
    };
    const rot = this.model.arch.rotary(this.model.cfg);
    if (rot) {
      inputs.cos = g.input('cos', [B, 1, T, rot.dim], 'f32');
      inputs.sin = g.input('sin', [B, 1, T, rot.dim], 'f32');
    }
    return inputs;
  }

  /** weights and batch inputs; `withBias: false` when the caller feeds its own attention bias */
  feeds(built: CompiledGraph, batch: PackedBatch, withBias = true): Feeds {
    const m = this.model;
    const feeds: Feeds = {};
    for (const n of built.paramNames) feeds[n] = m.tensor(n);
    const pos = new BigInt64Array(batch.positions.length);
    for (let i = 0; i < pos.length; i++) pos[i] = BigInt(m.arch.positionIndex(batch.positions[i]!, m.cfg));
    feeds.ids = batch.ids;
    feeds.positions = pos;
    if (withBias) feeds.bias = attentionBias(batch, m.arch.causal, built.slots, attentionWindow(m.cfg));
    const rot = m.arch.rotary(m.cfg);
    if (rot) {
      const t = rotaryTables(batch, rot.dim, rot.theta, rot.scale);
      feeds.cos = t.cos;
      feeds.sin = t.sin;
    }
    return feeds;
  }

  /** drop the feeds the graph does not read (a head's optional inputs, inputs the body left unused) */
  prune(built: CompiledGraph, feeds: Feeds): Feeds {
    for (const k of Object.keys(feeds)) if (!built.inputNames.has(k) && !built.paramNames.includes(k)) delete feeds[k];
    return feeds;
  }

  /**
   * Attach a caller's head to the body: analyses (LESS gradient features, eNTK Jacobians, feature probes)
   * build their own outputs and gradients on the hidden states without the model knowing about them.
   * `key` names the head and every shape it adds beyond B and T; the compiled graph is cached under it.
   */
  async runHead(key: string, batch: PackedBatch, build: HeadOutputs, feeds: Feeds = {}): Promise<Record<string, OutputTensor>> {
    const built = await this.graph(`head|${key}|${batch.batch}|${batch.seq}`, batch.batch, batch.seq, build, HEAD);
    return built.exe.run(this.prune(built, { ...this.feeds(built, batch), ...feeds }));
  }
}
