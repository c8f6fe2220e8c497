/**
 * LESS steps 2 and 3a: gradient features of every pool row (Adam-preconditioned with the checkpoint's
 * moments) and every target row (plain gradients) at every warmup checkpoint, for each projection
 * dimension, into datastores OUT/grads/<checkpoint>/<pool|target>/dim<d>/ (see datastore.ts).
 *
 * Work goes shard by shard; a shard is written whole or not at all, so after a kill the stage recomputes
 * only the shards that are missing. Rows that cannot have a feature (skipped with --skip-invalid) get a
 * zero row, which stays zero through normalization and is never scored.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import { faultPoint } from '../util/fault.ts';
import { loadTransformer, type TransformerModel } from '../heads/model.ts';
import { readSafetensors } from '../node/safetensors-file.ts';
import { attachPeft } from '../peft/index.ts';
import { RademacherProjection } from '../projection/rademacher.ts';
import { extractFeatures, gradLayout, type AdamMoments, type FeatureKind, type GradExample, type Projector } from './features.ts';
import { SrhtProjection } from '../projection/srht.ts';
import { KroneckerProjection } from '../projection/kronecker.ts';
import { kroneckerFeatures, kroneckerMatrices } from './kronecker.ts';
import { FeatureStore, type StoreHeader } from './datastore.ts';
import { encodeRows, readChatFile, type ChatFile } from './pool.ts';
import type { SelectConfig } from './config.ts';
import type { WarmupResult } from './warmup.ts';
import { eta, type SelectHooks } from './events.ts';

export type Role = 'pool' | 'target';

/** memory for raw per-example gradients before projection */
const CHUNK_BYTES = 256 * 1024 * 1024;

export function storeDir(out: string, checkpoint: string, role: Role, dim: number): string {
  return join(out, 'grads', checkpoint, role, `dim${dim}`);
}

/** sha256 over the config and every base weight (name, shape, bytes), in name order */
export function modelFingerprint(model: TransformerModel): string {
  const h = createHash('sha256');
  h.update(stableStringify(model.cfg.raw));
  for (const name of [...model.weights.names()].sort()) {
    const t = model.weights.get(name);
    h.update(`${name}[${t.shape.join(',')}]`);
    h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return h.digest('hex');
}

/** the checkpoint's adapters and moments, and a hash of both */
function loadCheckpoint(dir: string): { trainable: Map<string, Float32Array>; moments: Map<string, AdamMoments>; hash: string } {
  const h = createHash('sha256');
  const trainable = new Map<string, Float32Array>();
  for (const [k, t] of readSafetensors(join(dir, 'trainable.safetensors')).tensors) trainable.set(k, t.data);
  const opt = existsSync(join(dir, 'optimizer.safetensors')) ? readSafetensors(join(dir, 'optimizer.safetensors')).tensors : new Map();
  const moments = new Map<string, AdamMoments>();
  for (const name of trainable.keys()) {
    const m = opt.get(`exp_avg:${name}`);
    const v = opt.get(`exp_avg_sq:${name}`);
    if (m && v) moments.set(name, { expAvg: m.data, expAvgSq: v.data });
  }
  for (const name of [...trainable.keys()].sort()) {
    h.update(name);
    for (const x of [trainable.get(name)!, moments.get(name)?.expAvg, moments.get(name)?.expAvgSq]) if (x) h.update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  }
  return { trainable, moments, hash: h.digest('hex') };
}

export interface GradsResult {
  checkpoints: string[];
  dims: number[];
  gradDim: number;
  pool: { rows: number; truncated: number; skipped: { index: number; line: number; reason: string }[] };
  target: { rows: number; truncated: number; skipped: { index: number; line: number; reason: string }[] };
  examplesPerSecond: number;
  seconds: number;
}

export function readGrads(out: string): GradsResult | null {
  const p = join(out, 'grads', 'done.json');
  return existsSync(p) ? readJson<GradsResult>(p, 'gradient summary') : null;
}

/** what computing any shard needs: the model with LoRA attached, the projections, the data, the checkpoints */
export interface GradsContext {
  readonly cfg: SelectConfig;
  readonly model: TransformerModel;
  readonly layout: ReturnType<typeof gradLayout>;
  readonly fingerprint: string;
  readonly projections: Projector[];
  readonly files: Record<Role, ChatFile>;
  readonly enc: Record<Role, ReturnType<typeof encodeRows>>;
  readonly checkpoints: { ck: WarmupResult['checkpoints'][number]; trainable: Map<string, Float32Array>; moments: Map<string, AdamMoments>; hash: string }[];
  /** rows whose raw gradients are held at once */
  readonly chunkRows: number;
  /** the checkpoint whose adapters are in the model now */
  loaded: string | null;
}

/**
 * Loads the model, attaches the warmup's LoRA, builds the projections and encodes both files: everything a
 * shard needs, on this machine or on a queue worker (src/distributed/less-shards.ts), by the same code.
 */
export async function prepareGrads(cfg: SelectConfig, out: string, warm: WarmupResult): Promise<GradsContext> {
  const model = await loadTransformer(cfg.model, { ...(cfg.threads ? { threads: cfg.threads } : {}), sharedWeights: false });
  if (!model.tokenizer) throw new LmtuneError('TOKENIZER', `${cfg.model}: no tokenizer; chat data needs one`);
  const w = cfg.warmup;
  await attachPeft(model, { kind: 'lora', rank: w.loraRank, alpha: w.loraAlpha, dropout: 0, targets: w.loraTargets }, cfg.seed);
  const layout = gradLayout(model, model.trainableNames());
  const projections: Projector[] = cfg.grads.projDims.map((d) =>
    cfg.grads.projection === 'srht'
      ? new SrhtProjection({ seed: cfg.grads.projSeed, inDim: layout.dim, outDim: d })
      : cfg.grads.projection === 'kronecker'
        ? new KroneckerProjection({ seed: cfg.grads.projSeed, matrices: kroneckerMatrices(model, layout), outDim: d, ...(cfg.threads ? { threads: cfg.threads } : {}) })
        : new RademacherProjection({ seed: cfg.grads.projSeed, inDim: layout.dim, outDim: d, ...(cfg.threads ? { threads: cfg.threads } : {}) }),
  );
  const files = {
    pool: readChatFile(cfg.pool, { skipInvalid: cfg.skipInvalid }),
    target: readChatFile(cfg.target, { skipInvalid: cfg.skipInvalid }),
  };
  const enc = {
    pool: encodeRows(files.pool, model.tokenizer, cfg.maxLength, cfg.skipInvalid, cfg.truncation),
    target: encodeRows(files.target, model.tokenizer, cfg.maxLength, cfg.skipInvalid, cfg.truncation),
  };
  if (enc.target.encoded.size === 0) throw new LmtuneError('DATA', `${cfg.target}: no usable target row`);
  // bounded memory for large adapters; the projection is exact per row, so chunking does not change a byte
  const chunkRows = gradChunkRows(layout.dim, cfg.grads.batchSize);
  const checkpoints = warm.checkpoints.map((ck) => ({ ck, ...loadCheckpoint(join(out, ck.dir)) }));
  return { cfg, model, layout, fingerprint: modelFingerprint(model), projections, files, enc, checkpoints, chunkRows, loaded: null };
}

/** Rows whose gradients are held and projected together: a whole number of gradient batches in CHUNK_BYTES. */
export function gradChunkRows(dim: number, batchSize: number): number {
  return Math.max(batchSize, Math.floor(CHUNK_BYTES / (4 * dim) / batchSize) * batchSize);
}

/** The datastores (one per projection dimension) of a checkpoint and role: created, or checked against their headers. */
export function openStores(ctx: GradsContext, out: string, checkpoint: string, role: Role): FeatureStore[] {
  const c = ctx.checkpoints.find((x) => x.ck.name === checkpoint);
  if (!c) throw new LmtuneError('CONFIG', `${out}: no warmup checkpoint named ${JSON.stringify(checkpoint)} (have ${ctx.checkpoints.map((x) => x.ck.name).join(', ')})`);
  const { cfg } = ctx;
  const file = ctx.files[role];
  return cfg.grads.projDims.map((d) => {
    const header: StoreHeader = {
      format: 'lmtune-less-features',
      version: 1,
      rows: file.count,
      dim: d,
      dtype: cfg.grads.dtype,
      shardRows: cfg.grads.shardRows,
      model: ctx.fingerprint,
      checkpoint: `${c.ck.name}:${c.hash}`,
      projection: { kind: cfg.grads.projection, seed: cfg.grads.projSeed, inDim: ctx.layout.dim },
      data: { file: file.path, sha256: file.sha256 },
      feature: role === 'pool' ? (cfg.grads.projection === 'kronecker' ? 'adam-factored' : 'adam') : 'sgd',
      maxLength: cfg.maxLength,
    };
    return FeatureStore.open(storeDir(out, c.ck.name, role, d), header);
  });
}

/** Computes shard `shard` of a checkpoint and role and writes it into every store (atomically, with its checksum). */
export async function computeShard(ctx: GradsContext, checkpoint: string, role: Role, stores: readonly FeatureStore[], shard: number): Promise<void> {
  const c = ctx.checkpoints.find((x) => x.ck.name === checkpoint)!;
  if (ctx.loaded !== checkpoint) {
    for (const [name, data] of c.trainable) {
      if (!ctx.model.adapters?.has(name)) throw new LmtuneError('CHECKPOINT', `${c.ck.dir}: tensor '${name}' is not a LoRA matrix of this model`, 'the warmup checkpoint belongs to another model or LoRA configuration');
      const dst = ctx.model.tensor(name);
      if (dst.length !== data.length) throw new LmtuneError('CHECKPOINT', `${c.ck.dir}: '${name}' has ${data.length} values, the adapter has ${dst.length}`);
      dst.set(data);
    }
    ctx.loaded = checkpoint;
  }
  const kind: FeatureKind = role === 'pool' ? 'adam' : 'sgd';
  const encoded = ctx.enc[role].encoded;
  const { projections, chunkRows } = ctx;
  const [s, e] = stores[0]!.range(shard);
  const present: number[] = [];
  const examples: GradExample[] = [];
  for (let i = s; i < e; i++) {
    const ex = encoded.get(i);
    if (ex) {
      present.push(i - s);
      examples.push(ex);
    }
  }
  const feats = projections.map((p) => new Float32Array(examples.length * p.outDim));
  for (let k = 0; k < examples.length; k += chunkRows) {
    const part = examples.slice(k, k + chunkRows);
    // the Kronecker projection never forms per-example gradients: its own path from activations and output gradients
    const kron = projections.every((p) => p instanceof KroneckerProjection) ? (projections as KroneckerProjection[]) : null;
    const opts = { batchSize: ctx.cfg.grads.batchSize, kind, moments: c.moments };
    // a non-finite feature is refused naming its file:line (extractFeatures' numerics guard)
    const rowName = (j: number): string => {
      const index = s + present[k + j]!;
      const row = ctx.files[role].rows.find((r) => r.index === index)?.chat;
      // the row's own file: `line` counts in it, and a pool of several files has the files joined by ',' as its path
      return `${row?.file ?? ctx.files[role].path}:${row?.line ?? '?'} (${role} row ${index}, checkpoint ${checkpoint})`;
    };
    const f = (kron ? await kroneckerFeatures(ctx.model, ctx.layout, part, { ...opts, projections: kron }) : await extractFeatures(ctx.model, ctx.layout, part, { ...opts, projections, rowName })).features;
    f.forEach((x, p) => feats[p]!.set(x, k * projections[p]!.outDim));
  }
  stores.forEach((store, p) => {
    const d = store.header.dim;
    const full = new Float32Array((e - s) * d);
    present.forEach((r, k) => full.set(feats[p]!.subarray(k * d, (k + 1) * d), r * d));
    store.writeShard(shard, full);
  });
}

export async function runGrads(cfg: SelectConfig, out: string, warm: WarmupResult, hooks: SelectHooks = {}): Promise<GradsResult> {
  const done = readGrads(out);
  if (done) return done;
  const t0 = performance.now();
  const ctx = await prepareGrads(cfg, out, warm);
  const { layout, enc, files } = ctx;
  hooks.onMessage?.(`grads: ${layout.dim} LoRA gradient values per example (${layout.names.length} matrices); pool ${enc.pool.encoded.size} rows (${enc.pool.skipped.length} skipped, ${enc.pool.truncated} truncated), target ${enc.target.encoded.size} rows`);
  const jobs: { ck: string; role: Role; stores: FeatureStore[]; missing: number[] }[] = [];
  for (const c of ctx.checkpoints) {
    for (const role of ['pool', 'target'] as const) {
      const stores = openStores(ctx, out, c.ck.name, role);
      const missing = [...new Set(stores.flatMap((s) => s.missing()))].sort((a, b) => a - b);
      jobs.push({ ck: c.ck.name, role, stores, missing });
    }
  }
  const total = jobs.reduce((s, j) => s + j.missing.reduce((a, i) => a + j.stores[0]!.range(i)[1] - j.stores[0]!.range(i)[0], 0), 0);
  let rowsDone = 0;
  const tWork = performance.now();
  for (const job of jobs) {
    for (const shard of job.missing) {
      await computeShard(ctx, job.ck, job.role, job.stores, shard);
      const [s, e] = job.stores[0]!.range(shard);
      rowsDone += e - s;
      faultPoint(`select:grads:${job.ck}:${job.role}:${shard}`);
      hooks.onProgress?.({ stage: 'grads', done: rowsDone, total, unit: 'rows', etaSeconds: eta(tWork, rowsDone, total), detail: `${job.ck} ${job.role}` });
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const workSeconds = (performance.now() - tWork) / 1000;
  const result: GradsResult = {
    checkpoints: ctx.checkpoints.map((c) => c.ck.name),
    dims: cfg.grads.projDims,
    gradDim: layout.dim,
    pool: { rows: files.pool.count, truncated: enc.pool.truncated, skipped: enc.pool.skipped },
    target: { rows: files.target.count, truncated: enc.target.truncated, skipped: enc.target.skipped },
    examplesPerSecond: rowsDone / Math.max(workSeconds, 1e-9),
    seconds,
  };
  atomicWrite(join(out, 'grads', 'done.json'), stableStringify(result));
  return result;
}
