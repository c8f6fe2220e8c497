/**
 * The MeZO trajectory log: a run is its initial checkpoint plus one line per step, (step, seeds,
 * projected gradients, lr, ε, weight decay, distribution) — about 100 bytes a step — from which
 * `replayTrajectory` rebuilds the final weights bit for bit.
 *
 * File `trajectory.jsonl`: line 1 is a header (format, z generator, optimizer config, the trainable
 * parameters' names and sizes in stream order), then one JSON object per step. Each line is appended
 * with a single write (O_APPEND) and fsynced (src/node/trajectory-file.ts), so a crash can only leave a
 * torn last line: readers ignore it and `TrajectoryWriter.resume` truncates it away. This module is the
 * format, parsed from bytes, so it runs in a browser too. Numbers are written with JavaScript's shortest
 * round-trip formatting (−0 as "-0"), so every float64 projected gradient reads back exactly.
 */
import { LmtuneError } from '../util/errors.ts';
import { sha256Hex } from '../util/sha256.ts';
import { MezoOptimizer, type MezoConfig, type MezoStepResult, type MezoUpdate } from './mezo.ts';
import type { ParamList } from './types.ts';
import { Z_GENERATOR, type ZDistribution } from './zstream.ts';

export const TRAJECTORY_FORMAT = 'lmtune-mezo-trajectory';
/**
 * Version 2 seals every line with a hash chain: `"chk"` (last key) is the first 16 hex digits of
 * sha256(previous line's chk + "\n" + the line up to that key), the header's with an empty previous. An
 * edited seed, gradient or lr, or a line removed, moved or copied from another run, breaks the chain at
 * that line, and reading refuses it there. Version 1 files (no chk) are still read, unverified: a run
 * recorded before the chain existed stays replayable, and `verified: false` says so.
 */
export const TRAJECTORY_VERSION = 2;
const READABLE_VERSIONS = [1, 2];
const CHK_RE = /,"chk":"([0-9a-f]{16})"}$/;

function chainHash(prev: string, body: string): string {
  return sha256Hex(`${prev}\n${body}`).slice(0, 16);
}

/** `body` is a JSON object's text without its closing brace */
function seal(body: string, prev: string): { line: string; chk: string } {
  const chk = chainHash(prev, body);
  return { line: `${body},"chk":"${chk}"}`, chk };
}

/** the header's line (without newline), sealed as the chain's first link, and its chk */
export function sealHeader(header: TrajectoryHeader): { line: string; chk: string } {
  return seal(JSON.stringify({ ...header, version: TRAJECTORY_VERSION }).slice(0, -1), '');
}

/** a record's line (without newline): sealed after `prev`, or unsealed (version 1) when prev is undefined */
export function sealRecord(r: TrajectoryRecord, prev: string | undefined): { line: string; chk: string | undefined } {
  const body = recordBody(r);
  return prev === undefined ? { line: `${body}}`, chk: undefined } : seal(body, prev);
}

export interface TrajectoryHeader {
  format: typeof TRAJECTORY_FORMAT;
  version: number;
  generator: string;
  config: MezoConfig;
  params: { name: string; size: number }[];
}

export interface TrajectoryRecord extends MezoUpdate {
  /** 0-based index of the update */
  step: number;
}

export interface Trajectory {
  header: TrajectoryHeader;
  records: TrajectoryRecord[];
  /** the file it was read from (errors during replay name its lines) */
  path?: string;
  /** every line's hash chain checked (false for version-1 files, which have none) */
  verified?: boolean;
}

export function trajectoryHeader(opt: MezoOptimizer): TrajectoryHeader {
  return {
    format: TRAJECTORY_FORMAT,
    version: TRAJECTORY_VERSION,
    generator: Z_GENERATOR,
    config: opt.config(),
    params: opt.params.map((p) => ({ name: p.name, size: p.data.length })),
  };
}

/** The record of one MeZO step (what the training loop appends after `step` returns). */
export function stepRecord(opt: MezoOptimizer, step: number, result: MezoStepResult, lr: number): TrajectoryRecord {
  return {
    step,
    seeds: result.samples.map((s) => s.seed),
    grads: result.samples.map((s) => s.projectedGrad),
    lr,
    eps: opt.eps,
    weightDecay: opt.weightDecay,
    distribution: opt.distribution,
  };
}

function num(x: number, what: string): string {
  if (!Number.isFinite(x)) throw new LmtuneError('NUMERIC', `trajectory: ${what} is ${x}, which cannot be logged`);
  return Object.is(x, -0) ? '-0' : String(x);
}

/**
 * One record as its JSON line (with the newline); fixed key order, so equal records give equal bytes.
 * `prev` is the previous line's chk (hash chain); without it the line is unsealed (version 1).
 */
export function formatRecord(r: TrajectoryRecord, prev?: string): string {
  const body = recordBody(r);
  return prev === undefined ? `${body}}\n` : `${seal(body, prev).line}\n`;
}

function recordBody(r: TrajectoryRecord): string {
  const seeds = r.seeds.map((s) => {
    if (!Number.isSafeInteger(s) || s < 0) throw new LmtuneError('CONFIG', `trajectory: seed ${s} is not an integer in [0, 2^53)`);
    return String(s);
  });
  const grads = r.grads.map((g) => num(g, `projected gradient of step ${r.step}`));
  return (
    `{"step":${r.step},"seeds":[${seeds.join(',')}],"grads":[${grads.join(',')}],` +
    `"lr":${num(r.lr, 'lr')},"eps":${num(r.eps, 'eps')},"weightDecay":${num(r.weightDecay, 'weight decay')},"distribution":${JSON.stringify(r.distribution)}`
  );
}

function isNumberArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'number');
}

function parseRecord(line: string, where: string): TrajectoryRecord {
  const o = JSON.parse(line) as Record<string, unknown>;
  const dist = o.distribution;
  if (
    typeof o.step !== 'number' ||
    !isNumberArray(o.seeds) ||
    !isNumberArray(o.grads) ||
    typeof o.lr !== 'number' ||
    typeof o.eps !== 'number' ||
    typeof o.weightDecay !== 'number' ||
    (dist !== 'gaussian' && dist !== 'rademacher')
  ) {
    throw new LmtuneError('CHECKPOINT', `${where}: not a trajectory step (needs step, seeds, grads, lr, eps, weightDecay, distribution)`);
  }
  if (o.seeds.length === 0 || o.seeds.length !== o.grads.length) throw new LmtuneError('CHECKPOINT', `${where}: seeds and grads must be non-empty and of equal length`);
  return { step: o.step, seeds: o.seeds, grads: o.grads, lr: o.lr, eps: o.eps, weightDecay: o.weightDecay, distribution: dist as ZDistribution };
}

function parseHeader(line: string, where: string): TrajectoryHeader {
  const h = JSON.parse(line) as Partial<TrajectoryHeader>;
  if (h.format !== TRAJECTORY_FORMAT) throw new LmtuneError('CHECKPOINT', `${where}: not an lmtune MeZO trajectory (format "${String(h.format)}")`);
  if (typeof h.version !== 'number' || !READABLE_VERSIONS.includes(h.version)) throw new LmtuneError('CHECKPOINT', `${where}: trajectory version ${h.version} is not supported (this lmtune reads ${READABLE_VERSIONS.join(', ')})`);
  if (h.generator !== Z_GENERATOR) {
    throw new LmtuneError('CHECKPOINT', `${where}: written with z generator "${h.generator}", this lmtune has "${Z_GENERATOR}"`, 'replay it with the lmtune version that wrote it');
  }
  if (h.config === null || typeof h.config !== 'object' || !Array.isArray(h.params)) throw new LmtuneError('CHECKPOINT', `${where}: header lacks config or params`);
  h.params.forEach((p, i) => {
    if (!p || typeof p !== 'object' || typeof p.name !== 'string' || !Number.isSafeInteger(p.size) || p.size < 0) throw new LmtuneError('CHECKPOINT', `${where}: params[${i}] is not {name, size}`);
  });
  const { chk: _chk, ...header } = h as TrajectoryHeader & { chk?: string };
  return header;
}

export interface TrajectoryScan {
  trajectory: Trajectory | null;
  /** byte length of the valid prefix (header + complete, parseable lines) */
  validBytes: number;
  /** byte offset just after record k (index k), header end at index -1 → offsets[0] */
  ends: number[];
  tornBytes: number;
  /** the last sealed line's chk (the chain continues from it) */
  lastChk: string;
  /** chk of each complete line (parallel to ends; '' for version 1) */
  chks: string[];
}

/** checks a version-2 line's seal; returns its chk */
function unseal(text: string, prev: string, where: string): string {
  const m = CHK_RE.exec(text);
  if (!m) throw new LmtuneError('CHECKPOINT', `${where}: no "chk" hash-chain field (version 2 seals every line)`, 'the line was edited or comes from another file; the trajectory cannot be trusted from here on');
  if (chainHash(prev, text.slice(0, m.index)) !== m[1]) {
    throw new LmtuneError('CHECKPOINT', `${where}: the hash chain breaks here: the line was edited, or lines were removed, reordered or copied from another run`, 'replay only what was recorded: restore the original file, or replay the steps before this line with --steps');
  }
  return m[1]!;
}

/**
 * Parses a trajectory file's bytes (`path` names it in errors): the header, every complete record, the
 * hash chain checked line by line (version 2); a torn last line is left out and counted.
 */
export function scanTrajectory(buf: Uint8Array, path: string): TrajectoryScan {
  const decoder = new TextDecoder();
  const ends: number[] = [];
  let header: TrajectoryHeader | null = null;
  const records: TrajectoryRecord[] = [];
  let pos = 0;
  let lineNo = 0;
  let prev = '';
  const chks: string[] = [];
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    const complete = nl >= 0;
    const end = complete ? nl + 1 : buf.length;
    lineNo++;
    const text = decoder.decode(buf.subarray(pos, complete ? nl : buf.length));
    const last = end >= buf.length;
    const where = `${path}:${lineNo}`;
    if (!complete) break; // torn last line: never acknowledged, ignore it
    let rec: TrajectoryRecord | null = null;
    try {
      if (header === null) header = parseHeader(text, where);
      else rec = parseRecord(text, where);
    } catch (e) {
      // a complete but unparseable LAST line is what a crash during the write can leave (e.g. NUL bytes)
      if (last && e instanceof SyntaxError) break;
      if (e instanceof LmtuneError) throw e;
      throw new LmtuneError('CHECKPOINT', `${where}: not valid JSON (${(e as Error).message})`, 'the trajectory is corrupt before its last line');
    }
    if (rec !== null) {
      if (rec.step !== records.length) throw new LmtuneError('CHECKPOINT', `${where}: expected step ${records.length}, found ${rec.step}`);
      records.push(rec);
    }
    if (header !== null && header.version >= 2) prev = unseal(text, prev, where);
    chks.push(prev);
    ends.push(end);
    pos = end;
  }
  const validBytes = ends.length > 0 ? ends[ends.length - 1]! : 0;
  const trajectory = header === null ? null : { header, records, path, verified: header.version >= 2 };
  return { trajectory, validBytes, ends, tornBytes: buf.length - validBytes, lastChk: prev, chks };
}

/** A MeZO optimizer configured as the header says, checking that `params` are the logged ones. */
export function optimizerForTrajectory(params: ParamList, header: TrajectoryHeader): MezoOptimizer {
  if (params.length !== header.params.length) {
    throw new LmtuneError('CHECKPOINT', `trajectory logs ${header.params.length} trainable tensors, the model has ${params.length}`, 'use the same model and --peft settings as the logged run');
  }
  header.params.forEach((h, i) => {
    const p = params[i]!;
    if (p.name !== h.name || p.data.length !== h.size) {
      throw new LmtuneError('CHECKPOINT', `trainable tensor #${i} is "${p.name}" (${p.data.length} elements), the trajectory logged "${h.name}" (${h.size})`);
    }
  });
  const c = header.config;
  const noDecay = new Set(c.noDecay);
  return new MezoOptimizer(params, { eps: c.eps, weightDecay: c.weightDecay, distribution: c.distribution, nSpsa: c.nSpsa, rule: c.rule, decayFilter: (n) => !noDecay.has(n) });
}

/**
 * Rebuilds the weights after records [from, to) in place. `params` must hold the weights before step
 * `from` (the initial checkpoint for from = 0); momentum/Adam state lives in the returned optimizer (or
 * in `opt`, when continuing one).
 */
export async function replayTrajectory(
  params: ParamList,
  trajectory: Trajectory,
  opts: { optimizer?: MezoOptimizer; from?: number; to?: number; onStep?: (step: number) => void } = {},
): Promise<MezoOptimizer> {
  const src = trajectory.path ?? 'trajectory';
  const from = opts.from ?? 0;
  const to = opts.to ?? trajectory.records.length;
  let k = from;
  try {
    const opt = opts.optimizer ?? optimizerForTrajectory(params, trajectory.header);
    for (; k < to; k++) {
      const r = trajectory.records[k]!;
      await opt.replay(r);
      // a logged scalar (lr, projected gradient) that overflows the weights must not replay into a NaN model
      for (const p of params) {
        for (let i = 0; i < p.data.length; i++) {
          if (!Number.isFinite(p.data[i]!)) {
            throw new LmtuneError('NUMERIC', `${src}:${k + 2}: replaying step ${r.step} makes weight '${p.name}'[${i}] ${p.data[i]} (lr ${r.lr}, projected gradients ${JSON.stringify(r.grads)})`, 'the trajectory is corrupt or belongs to other weights; replay the steps before it with --steps');
          }
        }
      }
      opts.onStep?.(r.step);
    }
    return opt;
  } catch (e) {
    // errors from the optimizer name the step but not the file: say which file (and line)
    if (e instanceof LmtuneError && !e.message.includes(src)) throw new LmtuneError(e.code, `${src}${k < to ? `:${k + 2}` : ''}: ${e.message}`, e.hint);
    throw e;
  }
}
