/**
 * What a LESS selection run is configured by, stored as OUT/select.json: every stage reads it, so
 * `lmtune select grads --out OUT` needs nothing else, and a second `select run` with other arguments is
 * refused instead of mixing two configurations in one folder.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, readJson, stableStringify } from '../node/fsx.ts';
import type { Aggregate } from './match.ts';
import { REPLY_ROOM } from '../tasks/chat.ts';
import type { StoreDtype } from './datastore.ts';
import type { Amount } from './write.ts';

export interface SelectConfig {
  version: 1;
  model: string;
  /** the pool file, or several files forming one pool in this order (select/pool.ts); one file stays a string */
  pool: string | string[];
  target: string;
  seed: number;
  maxLength: number;
  /** which end of a too-long row is cut: 'right' (the reference) or 'left' (keeps the final answer) */
  truncation: 'left' | 'right';
  /**
   * with 'left': the step of the room kept for the final reply (tasks/chat.ts REPLY_ROOM). Folders
   * written before left truncation had a room cut rows just enough to fit and lack it; their warmup and
   * features came from other encodings of the cut rows, so they are refused rather than mixed.
   */
  replyRoom?: number;
  skipInvalid: boolean;
  threads: number | null;
  warmup: {
    percentage: number;
    epochs: number;
    lr: number;
    batchSize: number;
    /** HF warmup_ratio: ceil(ratio · total updates) warmup steps of the linear schedule */
    warmupRatio: number;
    clipNorm: number | null;
    loraRank: number;
    loraAlpha: number;
    /** module-name regular expressions; empty: the family default */
    loraTargets: string[];
  };
  grads: {
    /**
     * dense counter-based Rademacher (the reference's kind), the structured SRHT, or the per-matrix
     * Kronecker-factored projection from activations and output gradients (no per-example gradient)
     */
    projection: 'rademacher' | 'srht' | 'kronecker';
    projDims: number[];
    projSeed: number;
    dtype: StoreDtype;
    batchSize: number;
    shardRows: number;
  };
  match: {
    aggregate: Aggregate;
    /** which projection dimension the scores use (default: the first of projDims) */
    dim: number;
    /**
     * what the target rows are grouped by for the max over groups: their "subtask" (absent: the
     * reference) or their "label" (a classification target scored per class; stored only when set, so
     * the folders of earlier runs still resume)
     */
    groupBy?: 'label';
  };
  write: Amount;
}

export const CONFIG_FILE = 'select.json';

export function withAbsolutePaths(c: SelectConfig): SelectConfig {
  return { ...c, model: resolve(c.model), pool: typeof c.pool === 'string' ? resolve(c.pool) : c.pool.map((p) => resolve(p)), target: resolve(c.target) };
}

/**
 * Stores `cfg` in `out`, or checks it against the stored one. Only the selection amount (`write`) may
 * change between calls: it is the last, cheap stage.
 */
export function saveOrCheckConfig(out: string, given: SelectConfig): SelectConfig {
  // the encoding of cut rows is this lmtune's, not the caller's choice: stored with the run
  const cfg: SelectConfig = { ...given, ...leftEncoding(given.truncation) };
  const path = join(out, CONFIG_FILE);
  if (!existsSync(path)) {
    atomicWrite(path, stableStringify(cfg));
    return cfg;
  }
  const old = checkEncoding(out, readJson<SelectConfig>(path, 'selection config'));
  for (const k of Object.keys(cfg) as (keyof SelectConfig)[]) {
    if (k === 'write') continue;
    const a = stableStringify(old[k] ?? null).trim();
    const b = stableStringify(cfg[k]).trim();
    if (a !== b) {
      // the same files in another order look like the same pool to a reader, but they number the rows
      // differently (scores, datastore shards and the pool hash all follow the order): say so
      const reordered = k === 'pool' && Array.isArray(old.pool) && Array.isArray(cfg.pool) && old.pool.length === cfg.pool.length && [...old.pool].sort().join('\n') === [...cfg.pool].sort().join('\n');
      throw new LmtuneError('CONFIG', `${out} holds a selection run with ${k} = ${a.replace(/\s+/g, ' ')}; this call has ${b.replace(/\s+/g, ' ')}${reordered ? ' (the same files in another order: the order numbers the pool rows, so it is part of the run)' : ''}`, 'resume with the same arguments (or just `lmtune select run --out DIR`), or choose another --out');
    }
  }
  if (stableStringify(old.write) !== stableStringify(cfg.write)) {
    const next = { ...old, write: cfg.write };
    atomicWrite(path, stableStringify(next));
    return next;
  }
  return old;
}

export function readConfig(out: string): SelectConfig {
  const path = join(out, CONFIG_FILE);
  if (!existsSync(path)) throw new LmtuneError('IO', `${out}: not a selection folder (no ${CONFIG_FILE})`, 'start one with `lmtune select run --model DIR --pool POOL --target TARGET --out DIR` (or `select warmup` with the same flags)');
  return checkEncoding(out, readJson<SelectConfig>(path, 'selection config'));
}

/** the chat encoding this lmtune gives rows cut on the left, as stored in a selection config */
function leftEncoding(truncation: 'left' | 'right'): { replyRoom?: number } {
  return truncation === 'left' ? { replyRoom: REPLY_ROOM } : {};
}

function checkEncoding(out: string, c: SelectConfig): SelectConfig {
  if (c.truncation === 'left' && c.replyRoom !== REPLY_ROOM) {
    throw new LmtuneError(
      'CONFIG',
      `${out} was computed by an lmtune whose left truncation cut rows ${c.replyRoom === undefined ? 'just enough to fit (so a cut row\'s answer position gave its length away)' : `with a reply room of ${c.replyRoom} tokens`}; this one keeps a room of ${REPLY_ROOM}, so its warmup and features would not match`,
      'start the selection again in a new --out folder',
    );
  }
  return c;
}
