/**
 * The "less-grad-shard" job kind: LESS's gradient datastore split into one job per (warmup checkpoint,
 * pool or target, shard). A worker computes its shard with the single-machine code (src/select/grads.ts:
 * `prepareGrads`, `openStores`, `computeShard`) and writes it into the selection folder, which every
 * machine sees at the same path, with the same atomic write, header and checksum. So the datastore that N
 * workers build is byte-identical to the one a single process builds, a shard computed twice (a stalled
 * job taken over) is written twice with the same bytes, and the coordinator only has to enqueue what is
 * missing on disk, wait, check every shard's checksum against the worker's report, and write done.json.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import { loadTokenizer } from '../models/tokenizer.ts';
import { readConfig, type SelectConfig } from '../select/config.ts';
import { FeatureStore } from '../select/datastore.ts';
import { computeShard, openStores, prepareGrads, readGrads, storeDir, type GradsContext, type GradsResult, type Role } from '../select/grads.ts';
import { encodeRows, readChatFile } from '../select/pool.ts';
import { readWarmup, type WarmupResult } from '../select/warmup.ts';
import type { SelectHooks } from '../select/events.ts';
import { runJobs, type QueueProgress } from './coordinator.ts';
import { CODE_VERSION, JobRefused, fingerprintModelDir, registerJobKind, type JobEnvelope } from './jobs.ts';

export const LESS_GRAD_SHARD = 'less-grad-shard';

export interface LessShardPayload {
  /** the selection folder (OUT of `lmtune select`), at the same path on every machine */
  readonly out: string;
  /** sha256 of the selection's configuration (select.json without the selection amount) */
  readonly config: string;
  /** sha256 of the warmup's checkpoint list (warmup/done.json's checkpoints) */
  readonly warmup: string;
  readonly checkpoint: string;
  readonly role: Role;
  readonly shard: number;
}

export interface LessShardResult {
  readonly checkpoint: string;
  readonly role: Role;
  readonly shard: number;
  /** sha256 of the shard's stored values, one per projection dimension (the shard's metadata) */
  readonly sha256: string[];
  /** false when the shard was already whole on disk (a re-run job) */
  readonly computed: boolean;
  readonly seconds: number;
}

/** What a worker compares with the job: the configuration every shard depends on (the amount selected does not matter). */
export function configDigest(cfg: SelectConfig): string {
  return createHash('sha256').update(stableStringify({ ...cfg, write: null })).digest('hex');
}

function warmupDigest(w: WarmupResult): string {
  return createHash('sha256').update(stableStringify(w.checkpoints)).digest('hex');
}

export function parseLessShardPayload(raw: unknown): LessShardPayload {
  if (typeof raw !== 'object' || raw === null) throw new LmtuneError('DATA', `${LESS_GRAD_SHARD} payload must be an object`);
  const r = raw as Record<string, unknown>;
  for (const k of ['out', 'config', 'warmup', 'checkpoint']) if (typeof r[k] !== 'string') throw new LmtuneError('DATA', `${LESS_GRAD_SHARD} payload: ${k} must be a string`);
  if (r['role'] !== 'pool' && r['role'] !== 'target') throw new LmtuneError('DATA', `${LESS_GRAD_SHARD} payload: role must be pool or target, got ${JSON.stringify(r['role'])}`);
  const shard = r['shard'];
  if (typeof shard !== 'number' || !Number.isInteger(shard) || shard < 0) throw new LmtuneError('DATA', `${LESS_GRAD_SHARD} payload: shard must be a non-negative integer, got ${JSON.stringify(shard)}`);
  return { out: r['out'] as string, config: r['config'] as string, warmup: r['warmup'] as string, checkpoint: r['checkpoint'] as string, role: r['role'], shard };
}

// one prepared context per worker process: the model with LoRA, the projections and the encoded data
// are reused by every shard job of the same selection (a worker serves one selection at a time)
let cached: { key: string; ctx: Promise<GradsContext> } | null = null;

async function contextFor(p: LessShardPayload): Promise<GradsContext> {
  const key = `${p.out}\0${p.config}\0${p.warmup}`;
  if (cached?.key === key) return cached.ctx;
  const cfg = readConfig(p.out);
  if (configDigest(cfg) !== p.config) {
    throw new JobRefused(`${join(p.out, 'select.json')} on this machine is not the configuration the job was made from (sha256 ${configDigest(cfg).slice(0, 16)}…, the job has ${p.config.slice(0, 16)}…)`);
  }
  const warm = readWarmup(p.out);
  if (!warm) throw new JobRefused(`${p.out}: the warmup has not finished on this machine's view of the folder (no warmup/done.json); the selection folder must be shared`);
  if (warmupDigest(warm) !== p.warmup) throw new JobRefused(`${p.out}/warmup/done.json on this machine lists other checkpoints than the job's`);
  const ctx = prepareGrads(cfg, p.out, warm);
  cached = { key, ctx };
  ctx.catch(() => {
    if (cached?.key === key) cached = null;
  });
  return ctx;
}

registerJobKind<LessShardPayload, LessShardResult>({
  name: LESS_GRAD_SHARD,
  parsePayload: parseLessShardPayload,
  run: async (job, p) => {
    const t0 = performance.now();
    const ctx = await contextFor(p);
    // creates the stores' headers, or refuses a folder computed with another model, projection or pool
    const stores = openStores(ctx, p.out, p.checkpoint, p.role);
    if (p.shard >= stores[0]!.shards) throw new JobRefused(`${p.checkpoint} ${p.role}: shard ${p.shard} does not exist (${stores[0]!.shards} shards)`);
    let sums = stores.map((s) => s.shardChecksum(p.shard));
    const computed = sums.some((x) => x === null);
    if (computed) {
      await job.progress(0.05);
      await computeShard(ctx, p.checkpoint, p.role, stores, p.shard);
      sums = stores.map((s) => s.shardChecksum(p.shard));
      if (sums.some((x) => x === null)) throw new LmtuneError('IO', `${stores[0]!.shardPath(p.shard)}: the shard just written does not read back whole`);
    }
    return { checkpoint: p.checkpoint, role: p.role, shard: p.shard, sha256: sums as string[], computed, seconds: (performance.now() - t0) / 1000 };
  },
});

export interface QueuedGradsOptions {
  readonly queueUrl: string;
  readonly fingerprint?: (dir: string) => string;
  readonly codeVersion?: string;
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  readonly backoffMs?: number;
  readonly onQueueProgress?: (p: QueueProgress) => void;
}

/**
 * `runGrads` done by the workers of a queue: the same datastore bytes, the same done.json fields (its
 * examples/s counts the rows of the shards computed during this call over its wall time).
 */
export async function runGradsQueued(cfg: SelectConfig, out: string, warm: WarmupResult, hooks: SelectHooks, o: QueuedGradsOptions): Promise<GradsResult> {
  const done = readGrads(out);
  if (done) return done;
  const t0 = performance.now();
  const files = { pool: readChatFile(cfg.pool, { skipInvalid: cfg.skipInvalid }), target: readChatFile(cfg.target, { skipInvalid: cfg.skipInvalid }) };
  // the tokenizer alone: this process encodes the rows only for done.json's counts and the early checks
  const tok = await loadTokenizer(cfg.model);
  const enc = {
    pool: encodeRows(files.pool, tok, cfg.maxLength, cfg.skipInvalid, cfg.truncation),
    target: encodeRows(files.target, tok, cfg.maxLength, cfg.skipInvalid, cfg.truncation),
  };
  if (enc.target.encoded.size === 0) throw new LmtuneError('DATA', `${cfg.target}: no usable target row`);
  const shardsOf = (role: Role) => Math.ceil(files[role].count / cfg.grads.shardRows);
  // a shard is done when every dimension's store holds it whole (the headers were checked by the worker that wrote them)
  const whole = (ck: string, role: Role, shard: number): boolean =>
    cfg.grads.projDims.every((d) => {
      const dir = storeDir(out, ck, role, d);
      return existsSync(join(dir, 'header.json')) && FeatureStore.read(dir).shardChecksum(shard) !== null;
    });
  const model = { dir: cfg.model, fingerprint: (o.fingerprint ?? fingerprintModelDir)(cfg.model) };
  const base = { out, config: configDigest(cfg), warmup: warmupDigest(warm) };
  const envelopes: JobEnvelope<LessShardPayload>[] = [];
  for (const ck of warm.checkpoints) {
    for (const role of ['pool', 'target'] as const) {
      for (let shard = 0; shard < shardsOf(role); shard++) {
        if (!whole(ck.name, role, shard)) envelopes.push({ kind: LESS_GRAD_SHARD, model, codeVersion: o.codeVersion ?? CODE_VERSION, payload: { ...base, checkpoint: ck.name, role, shard } });
      }
    }
  }
  const total = warm.checkpoints.length * (shardsOf('pool') + shardsOf('target'));
  hooks.onMessage?.(`grads: ${envelopes.length} of ${total} shards to compute on the workers of ${o.queueUrl} (pool ${enc.pool.encoded.size} rows, ${enc.pool.skipped.length} skipped, ${enc.pool.truncated} truncated; target ${enc.target.encoded.size} rows)`);
  const tWork = performance.now();
  const results = await runJobs<LessShardResult>(o.queueUrl, envelopes, {
    idsByContent: true,
    redoCompleted: true,
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
    ...(o.backoffMs !== undefined ? { backoffMs: o.backoffMs } : {}),
    onConnectionError: (m) => hooks.onMessage?.(`grads: queue connection: ${m} (reconnecting)`),
    onProgress: (p) => {
      o.onQueueProgress?.(p);
      hooks.onProgress?.({ stage: 'grads', done: total - envelopes.length + p.done, total, unit: 'shards', etaSeconds: p.etaSeconds ?? Number.POSITIVE_INFINITY, detail: `${p.workers} worker(s)${p.failedAttempts ? `, ${p.failedAttempts} failed attempt(s) retried` : ''}` });
    },
  });
  const workSeconds = (performance.now() - tWork) / 1000;
  // every shard on disk must be whole, and the ones a worker reported must carry the values it computed
  const reported = new Map(results.map((r) => [`${r.checkpoint}/${r.role}/${r.shard}`, r]));
  let rows = 0;
  let inDim = 0;
  for (const ck of warm.checkpoints) {
    for (const role of ['pool', 'target'] as const) {
      cfg.grads.projDims.forEach((d, k) => {
        const st = FeatureStore.read(storeDir(out, ck.name, role, d));
        inDim = st.header.projection.inDim;
        for (let shard = 0; shard < st.shards; shard++) {
          const sum = st.shardChecksum(shard);
          const r = reported.get(`${ck.name}/${role}/${shard}`);
          if (sum === null || (r && r.sha256[k] !== sum)) {
            throw new LmtuneError('IO', `${st.shardPath(shard)}: ${sum === null ? 'missing or damaged' : `holds values with sha256 ${sum.slice(0, 16)}…, the worker reported ${r!.sha256[k]!.slice(0, 16)}…`} after the queue finished`, 'the selection folder must be one shared folder for all workers; run the same command again to recompute the shard');
          }
        }
      });
    }
  }
  for (const r of results) {
    if (!r.computed) continue;
    const [s, e] = FeatureStore.read(storeDir(out, r.checkpoint, r.role, cfg.grads.projDims[0]!)).range(r.shard);
    rows += e - s;
  }
  const result: GradsResult = {
    checkpoints: warm.checkpoints.map((c) => c.name),
    dims: cfg.grads.projDims,
    gradDim: inDim,
    pool: { rows: files.pool.count, truncated: enc.pool.truncated, skipped: enc.pool.skipped },
    target: { rows: files.target.count, truncated: enc.target.truncated, skipped: enc.target.skipped },
    examplesPerSecond: rows / Math.max(workSeconds, 1e-9),
    seconds: (performance.now() - t0) / 1000,
  };
  atomicWrite(join(out, 'grads', 'done.json'), stableStringify(result));
  return result;
}
