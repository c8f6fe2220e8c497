/**
 * The LESS pipeline, one resumable stage per function and `runSelection` doing them all:
 *
 *   warmup  OUT/warmup/       LoRA + Adam on a seeded share of the pool, a checkpoint per epoch
 *   grads   OUT/grads/        feature datastores per checkpoint, pool (Adam) and target (SGD)
 *   match   OUT/match/        lr-weighted cosine scores of every pool row (float64, pool order)
 *   write   OUT/scores.csv, OUT/selected.jsonl, OUT/report.html
 *
 * Each stage ends by writing its done.json atomically; a finished stage returns at once, an interrupted
 * one continues from what it left whole (train checkpoints, datastore shards). Every output is a
 * function of the configuration, so a resumed run writes the same bytes as an uninterrupted one.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import { faultPoint } from '../util/fault.ts';
import { FeatureStore } from './datastore.ts';
import { checkpointWeights, subtaskGroups, subtaskMeans, type SubtaskGroups } from './match.ts';
import type { ChatRow } from '../tasks/chat.ts';
import { scanScores, type SubtaskExtremes } from './scan.ts';
import { readChatFile } from './pool.ts';
import { selectionReport } from './report.ts';
import { writeSelection } from './write.ts';
import { readConfig, saveOrCheckConfig, type SelectConfig } from './config.ts';
import { readWarmup, runWarmup, type WarmupResult } from './warmup.ts';
import { readGrads, runGrads, storeDir, type GradsResult } from './grads.ts';
import { eta, type SelectHooks } from './events.ts';
import type { QueuedGradsOptions } from '../distributed/less-shards.ts';

export interface MatchResult {
  dim: number;
  aggregate: SelectConfig['match']['aggregate'];
  checkpoints: { name: string; lr: number; weight: number }[];
  subtasks: string[];
  rows: number;
  scored: number;
  sha256: string;
  seconds: number;
  /** the streaming pass over the pool datastores: bytes read, seconds waiting for reads, checksumming, computing */
  stream?: { bytes: number; waitSeconds: number; verifySeconds: number; computeSeconds: number };
}

export interface WriteResult {
  amount: SelectConfig['write'];
  scoresSha256: string;
  scored: number;
  selected: number;
  seconds: number;
}

function need<T>(v: T | null, what: string, out: string): T {
  if (v === null) throw new LmtuneError('CONFIG', `${out}: the ${what} stage has not finished`, `run \`lmtune select ${what} --out ${out}\` (or \`select run\`) first`);
  return v;
}

export function readMatch(out: string): MatchResult | null {
  const p = join(out, 'match', 'done.json');
  return existsSync(p) ? readJson<MatchResult>(p, 'match summary') : null;
}

/** per subtask, its size and the pool rows scoring highest and lowest against it (match/subtasks.json) */
export function readSubtaskExtremes(out: string): ({ name: string; rows: number } & SubtaskExtremes)[] | null {
  const p = join(out, 'match', 'subtasks.json');
  return existsSync(p) ? readJson<({ name: string; rows: number } & SubtaskExtremes)[]>(p, 'subtask extremes') : null;
}

export function readScores(out: string): Float64Array {
  const m = need(readMatch(out), 'match', out);
  const buf = readFileSync(join(out, 'match', 'scores.f64'));
  if (createHash('sha256').update(buf).digest('hex') !== m.sha256) throw new LmtuneError('IO', `${out}/match/scores.f64: checksum mismatch`, 'rerun `lmtune select match` after removing the match folder');
  return new Float64Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export async function runMatch(cfg: SelectConfig, out: string, warm: WarmupResult, grads: GradsResult, hooks: SelectHooks = {}): Promise<MatchResult> {
  const done = readMatch(out);
  if (done && done.dim === cfg.match.dim && done.aggregate === cfg.match.aggregate) return done;
  const t0 = performance.now();
  const dim = cfg.match.dim;
  if (!grads.dims.includes(dim)) throw new LmtuneError('CONFIG', `--match-dim ${dim} is not one of the computed projection dimensions (${grads.dims.join(', ')})`);
  const target = readChatFile(cfg.target, { skipInvalid: cfg.skipInvalid });
  const skippedT = new Set(grads.target.skipped.map((s) => s.index));
  const rowsT = target.rows.filter((r) => !skippedT.has(r.index));
  const groups = targetGroups(cfg, target.path, rowsT);
  const M = rowsT.length;
  const V = warm.checkpoints.map((ck) => {
    const st = FeatureStore.read(storeDir(out, ck.name, 'target', dim));
    const all = new Float32Array(st.header.rows * dim);
    for (let i = 0; i < st.shards; i++) all.set(st.readShard(i), st.range(i)[0] * dim);
    const v = new Float32Array(M * dim);
    rowsT.forEach((r, m) => v.set(all.subarray(r.index * dim, (r.index + 1) * dim), m * dim));
    return v;
  });
  const lrs = warm.checkpoints.map((c) => c.lr);
  const weights = checkpointWeights(lrs);
  const stores = warm.checkpoints.map((ck) => FeatureStore.read(storeDir(out, ck.name, 'pool', dim)));
  const N = stores[0]!.header.rows;
  const skippedP = new Set(grads.pool.skipped.map((s) => s.index));
  const tWork = performance.now();
  // streamed with bounded memory against one mean target feature per (checkpoint, subtask): scan.ts
  const scan = await scanScores(stores, {
    aggregate: cfg.match.aggregate,
    weights,
    means: V.map((v) => subtaskMeans(v, M, dim, groups)),
    skipped: skippedP,
    threads: cfg.threads ?? availableParallelism(),
    onProgress: (done, total) => hooks.onProgress?.({ stage: 'match', done, total, unit: 'rows', etaSeconds: eta(tWork, done, total) }),
  });
  const scores = scan.scores;
  const bytes = new Uint8Array(scores.buffer);
  atomicWrite(join(out, 'match', 'scores.f64'), bytes);
  atomicWrite(join(out, 'match', 'subtasks.json'), stableStringify(groups.names.map((name, s) => ({ name, rows: groups.sizes[s]!, ...scan.subtasks[s]! }))));
  faultPoint('select:match:scores-written');
  const result: MatchResult = {
    dim,
    aggregate: cfg.match.aggregate,
    checkpoints: warm.checkpoints.map((c, k) => ({ name: c.name, lr: c.lr, weight: weights[k]! })),
    subtasks: groups.names,
    rows: N,
    scored: N - skippedP.size,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    seconds: (performance.now() - t0) / 1000,
    stream: { bytes: scan.bytesRead, waitSeconds: scan.seconds.wait, verifySeconds: scan.seconds.verify, computeSeconds: scan.seconds.compute },
  };
  atomicWrite(join(out, 'match', 'done.json'), stableStringify(result));
  return result;
}

export function readWrite(out: string): WriteResult | null {
  const p = join(out, 'write.json');
  return existsSync(p) ? readJson<WriteResult>(p, 'write summary') : null;
}

export async function runWrite(cfg: SelectConfig, out: string, hooks: SelectHooks = {}): Promise<WriteResult> {
  const match = need(readMatch(out), 'match', out);
  const done = readWrite(out);
  if (done && done.scoresSha256 === match.sha256 && stableStringify(done.amount) === stableStringify(cfg.write) && existsSync(join(out, 'selected.jsonl')) && existsSync(join(out, 'report.html'))) return done;
  const t0 = performance.now();
  const scores = readScores(out);
  const pool = readChatFile(cfg.pool, { skipInvalid: cfg.skipInvalid });
  // selected.jsonl copies the rows from the pool files as they are now: they must be the files the scores
  // were computed from (an edited row would otherwise be written under another row's score)
  const store = storeDir(out, match.checkpoints[0]!.name, 'pool', match.dim);
  const scoredSha = FeatureStore.read(store).header.data.sha256;
  if (scoredSha !== pool.sha256) {
    throw new LmtuneError('DATA', `--pool ${pool.path}: changed since the scores were computed (sha256 ${pool.sha256.slice(0, 16)}…, the features in ${store} are of ${scoredSha.slice(0, 16)}…)`, 'restore the pool files as they were, or start a new selection with another --out');
  }
  const w = writeSelection(out, pool, scores, cfg.write);
  faultPoint('select:write:selection-written');
  hooks.onProgress?.({ stage: 'write', done: 1, total: 1, unit: 'files', etaSeconds: 0 });
  const warm = readWarmup(out);
  const grads = readGrads(out);
  const result: WriteResult = { amount: cfg.write, scoresSha256: match.sha256, scored: w.scored, selected: w.selected, seconds: (performance.now() - t0) / 1000 };
  const timings = [
    { stage: 'warmup', seconds: warm?.seconds ?? 0 },
    { stage: 'grads', seconds: grads?.seconds ?? 0 },
    { stage: 'match', seconds: match.seconds },
    { stage: 'write', seconds: result.seconds },
  ];
  atomicWrite(
    join(out, 'report.html'),
    selectionReport({ pool, scores, selected: w.indices, checkpoints: match.checkpoints, subtasks: match.subtasks, aggregate: match.aggregate, timings, subtaskExtremes: readSubtaskExtremes(out), matchStream: match.stream, skipped: grads?.pool.skipped ?? [], truncated: grads?.pool.truncated ?? 0, config: cfg }),
  );
  atomicWrite(join(out, 'write.json'), stableStringify(result));
  return result;
}

export interface SelectionSummary {
  out: string;
  warmup: WarmupResult;
  grads: GradsResult;
  match: MatchResult;
  write: WriteResult;
}

export type Stage = 'warmup' | 'grads' | 'match' | 'write';

export interface StageOptions {
  /** compute the gradient datastore on the workers of this Redis queue (src/distributed/less-shards.ts) */
  queue?: QueuedGradsOptions;
}

/** the target rows' groups for the max over groups (by subtask, or by label with --group-by label) */
function targetGroups(cfg: SelectConfig, path: string, rows: readonly { chat: ChatRow }[]): SubtaskGroups {
  const groupBy = cfg.match.groupBy ?? 'subtask';
  return subtaskGroups(
    rows.map((r) => (groupBy === 'label' ? r.chat.label : r.chat.subtask)),
    rows.map((r) => `${path}:${r.chat.line}`),
    cfg.match.aggregate,
    groupBy,
  );
}

/** Runs one stage (and checks that the ones before it finished), or every stage for 'run'. */
export async function runStage(stage: Stage | 'run', out: string, cfg: SelectConfig | null, hooks: SelectHooks = {}, opts: StageOptions = {}): Promise<Partial<SelectionSummary>> {
  const c = cfg ? saveOrCheckConfig(out, cfg) : readConfig(out);
  const res: Partial<SelectionSummary> = { out };
  // a target the matching cannot group fails now, not after the warmup and the gradients
  if (stage !== 'write') {
    const target = readChatFile(c.target, { skipInvalid: c.skipInvalid });
    targetGroups(c, target.path, target.rows);
  }
  if (stage === 'warmup' || stage === 'run') res.warmup = await runWarmup(c, out, hooks);
  if (stage === 'grads' || stage === 'run') {
    const warm = need(readWarmup(out), 'warmup', out);
    // the queue's module is loaded only when asked for: a single-machine run needs no Redis client
    res.grads = opts.queue ? await (await import('../distributed/less-shards.ts')).runGradsQueued(c, out, warm, hooks, opts.queue) : await runGrads(c, out, warm, hooks);
  }
  if (stage === 'match' || stage === 'run') res.match = await runMatch(c, out, need(readWarmup(out), 'warmup', out), need(readGrads(out), 'grads', out), hooks);
  if (stage === 'write' || stage === 'run') res.write = await runWrite(c, out, hooks);
  return res;
}
