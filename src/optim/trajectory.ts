/**
 * The MeZO trajectory log: a run is its initial checkpoint plus one line per step, (step, seeds,
 * projected gradients, lr, ε, weight decay, distribution) — about 100 bytes a step — from which
 * `replayTrajectory` rebuilds the final weights bit for bit.
 *
 * File `trajectory.jsonl`: line 1 is a header (format, z generator, optimizer config, the trainable
 * parameters' names and sizes in stream order), then one JSON object per step. Each line is appended
 * with a single write (O_APPEND) and fsynced, so a crash can only leave a torn last line: readers ignore
 * it and `openTrajectoryForAppend` truncates it away. Numbers are written with JavaScript's shortest
 * round-trip formatting (−0 as "-0"), so every float64 projected gradient reads back exactly.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { MezoOptimizer, type MezoConfig, type MezoStepResult, type MezoUpdate, type PassRunner } from './mezo.ts';
import type { ParamList } from './types.ts';
import { Z_GENERATOR, type ZDistribution } from './zstream.ts';

export const TRAJECTORY_FORMAT = 'lmtune-mezo-trajectory';
export const TRAJECTORY_VERSION = 1;

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

/** One record as its JSON line (with the newline); fixed key order, so equal records give equal bytes. */
export function formatRecord(r: TrajectoryRecord): string {
  const seeds = r.seeds.map((s) => {
    if (!Number.isSafeInteger(s) || s < 0) throw new LmtuneError('CONFIG', `trajectory: seed ${s} is not an integer in [0, 2^53)`);
    return String(s);
  });
  const grads = r.grads.map((g) => num(g, `projected gradient of step ${r.step}`));
  return (
    `{"step":${r.step},"seeds":[${seeds.join(',')}],"grads":[${grads.join(',')}],` +
    `"lr":${num(r.lr, 'lr')},"eps":${num(r.eps, 'eps')},"weightDecay":${num(r.weightDecay, 'weight decay')},"distribution":${JSON.stringify(r.distribution)}}\n`
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
  if (h.version !== TRAJECTORY_VERSION) throw new LmtuneError('CHECKPOINT', `${where}: trajectory version ${h.version} is not supported (expected ${TRAJECTORY_VERSION})`);
  if (h.generator !== Z_GENERATOR) {
    throw new LmtuneError('CHECKPOINT', `${where}: written with z generator "${h.generator}", this lmtune has "${Z_GENERATOR}"`, 'replay it with the lmtune version that wrote it');
  }
  if (h.config === undefined || !Array.isArray(h.params)) throw new LmtuneError('CHECKPOINT', `${where}: header lacks config or params`);
  return h as TrajectoryHeader;
}

interface Scan {
  trajectory: Trajectory | null;
  /** byte length of the valid prefix (header + complete, parseable lines) */
  validBytes: number;
  /** byte offset just after record k (index k), header end at index -1 → offsets[0] */
  ends: number[];
  tornBytes: number;
}

function scan(path: string): Scan {
  if (!existsSync(path)) throw new LmtuneError('IO', `trajectory not found: ${path}`);
  const buf = readFileSync(path);
  const ends: number[] = [];
  let header: TrajectoryHeader | null = null;
  const records: TrajectoryRecord[] = [];
  let pos = 0;
  let lineNo = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    const complete = nl >= 0;
    const end = complete ? nl + 1 : buf.length;
    lineNo++;
    const text = buf.subarray(pos, complete ? nl : buf.length).toString('utf8');
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
    ends.push(end);
    pos = end;
  }
  const validBytes = ends.length > 0 ? ends[ends.length - 1]! : 0;
  return { trajectory: header === null ? null : { header, records }, validBytes, ends, tornBytes: buf.length - validBytes };
}

/** Reads a trajectory, ignoring a torn last line (reported as tornBytes). */
export function readTrajectory(path: string): Trajectory & { tornBytes: number } {
  const s = scan(path);
  if (s.trajectory === null) throw new LmtuneError('CHECKPOINT', `${path}: trajectory has no complete header line`);
  return { ...s.trajectory, tornBytes: s.tornBytes };
}

export interface AppendOptions {
  /** fsync after every line (default true: a step's record survives a power loss once `append` returns) */
  fsync?: boolean;
}

export class TrajectoryWriter {
  private fd: number | null;
  private nextStep: number;

  private constructor(
    readonly path: string,
    fd: number,
    nextStep: number,
    private readonly sync: boolean,
  ) {
    this.fd = fd;
    this.nextStep = nextStep;
  }

  /** Starts a new trajectory (replacing any file at `path`) with its header line. */
  static create(path: string, header: TrajectoryHeader, opts: AppendOptions = {}): TrajectoryWriter {
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(path, 'w');
    const w = new TrajectoryWriter(path, fd, 0, opts.fsync ?? true);
    w.writeLine(JSON.stringify(header) + '\n');
    fsyncDir(dirname(path));
    return w;
  }

  /**
   * Reopens a trajectory to continue a run: drops a torn last line, keeps the first `keepSteps` records
   * (the checkpoint's step; default all) and truncates the rest, which the resumed run will redo.
   */
  static resume(path: string, opts: AppendOptions & { keepSteps?: number } = {}): { writer: TrajectoryWriter; trajectory: Trajectory } {
    const s = scan(path);
    if (s.trajectory === null) throw new LmtuneError('CHECKPOINT', `${path}: trajectory has no complete header line`, 'start the run again from its initial checkpoint');
    const have = s.trajectory.records.length;
    const keep = opts.keepSteps ?? have;
    if (!Number.isInteger(keep) || keep < 0 || keep > have) {
      throw new LmtuneError('CHECKPOINT', `${path}: the checkpoint is at step ${keep} but the trajectory holds only ${have} steps`, 'the trajectory and the checkpoint come from different runs');
    }
    const bytes = s.ends[keep]!; // ends[0] = end of the header
    const fd = openSync(path, 'r+');
    ftruncateSync(fd, bytes);
    fsyncSync(fd);
    closeSync(fd);
    const afd = openSync(path, 'a');
    const trajectory = { header: s.trajectory.header, records: s.trajectory.records.slice(0, keep) };
    return { writer: new TrajectoryWriter(path, afd, keep, opts.fsync ?? true), trajectory };
  }

  append(r: TrajectoryRecord): void {
    if (r.step !== this.nextStep) throw new LmtuneError('RUNTIME', `trajectory ${this.path}: appending step ${r.step}, expected ${this.nextStep}`);
    this.writeLine(formatRecord(r));
    this.nextStep++;
  }

  private writeLine(line: string): void {
    if (this.fd === null) throw new LmtuneError('RUNTIME', `trajectory ${this.path} is closed`);
    const b = Buffer.from(line, 'utf8');
    let off = 0;
    while (off < b.length) off += writeSync(this.fd, b, off, b.length - off);
    if (this.sync) fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** Makes a new file's directory entry durable (some filesystems refuse; the file itself is fsynced). */
function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    fsyncSync(fd);
    closeSync(fd);
  } catch {
    /* directory fsync unsupported here */
  }
}

/** A MeZO optimizer configured as the header says, checking that `params` are the logged ones. */
export function optimizerForTrajectory(params: ParamList, header: TrajectoryHeader, runner?: PassRunner): MezoOptimizer {
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
  return new MezoOptimizer(params, { eps: c.eps, weightDecay: c.weightDecay, distribution: c.distribution, nSpsa: c.nSpsa, rule: c.rule, decayFilter: (n) => !noDecay.has(n) }, runner);
}

/**
 * Rebuilds the weights after records [from, to) in place. `params` must hold the weights before step
 * `from` (the initial checkpoint for from = 0); momentum/Adam state lives in the returned optimizer (or
 * in `opt`, when continuing one).
 */
export async function replayTrajectory(
  params: ParamList,
  trajectory: Trajectory,
  opts: { runner?: PassRunner; optimizer?: MezoOptimizer; from?: number; to?: number; onStep?: (step: number) => void } = {},
): Promise<MezoOptimizer> {
  const opt = opts.optimizer ?? optimizerForTrajectory(params, trajectory.header, opts.runner);
  const from = opts.from ?? 0;
  const to = opts.to ?? trajectory.records.length;
  for (let k = from; k < to; k++) {
    const r = trajectory.records[k]!;
    await opt.replay(r);
    opts.onStep?.(r.step);
  }
  return opt;
}
