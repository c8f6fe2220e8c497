/**
 * The runs under a folder, read for the dashboard. A run folder is recognized by its files (config.json
 * of `lmtune train`, log.jsonl), so runs written before the `.lmtune` marker count too. Reading never
 * throws on what a run wrote: a damaged config, a malformed log line or a missing file becomes a warning
 * shown on the page, because a dashboard that crashes on one bad run shows none of the good ones.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import type { TrainConfig } from '../train/options.ts';
import { validateRunConfig } from '../train/validate.ts';
import { runKind } from '../train/describe.ts';
import type { LogRecord } from '../report/run-view.ts';

/** folders a run writes inside itself, and others that never hold runs */
const NOT_RUNS = new Set(['checkpoint', 'checkpoint.tmp', 'checkpoint.old', 'best', 'final', 'initial', 'replay', 'node_modules', 'test-screenshots']);
const MAX_DEPTH = 4;

export interface JsonlRead {
  records: LogRecord[];
  warnings: string[];
}

/**
 * The records of a JSONL file; a line that is not a JSON object is skipped with a file:line warning. A
 * last line without its newline is a line being written right now: left for the next read, not a warning.
 */
export function readJsonlLenient(path: string): JsonlRead {
  if (!existsSync(path)) return { records: [], warnings: [] };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return { records: [], warnings: [`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`] };
  }
  const lines = text.split('\n');
  lines.pop(); // '' after the final newline, or an unfinished line
  const records: LogRecord[] = [];
  const warnings: string[] = [];
  lines.forEach((l, i) => {
    if (!l.trim()) return;
    try {
      const v = JSON.parse(l) as unknown;
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
      if (typeof (v as LogRecord).step !== 'number') throw new Error('no numeric "step"');
      records.push(v as LogRecord);
    } catch (e) {
      warnings.push(`${path}:${i + 1}: malformed line skipped (${(e as Error).message}): ${l.length > 80 ? `${l.slice(0, 80)}…` : l}`);
    }
  });
  return { records, warnings };
}

export type RunStatus = 'finished' | 'running' | 'stopped';

export interface RunData {
  /** the folder relative to the served root, with '/' separators ('.' for the root itself) */
  id: string;
  dir: string;
  config: TrainConfig | null;
  kind: 'train' | 'mezo' | 'svag' | 'run';
  summary: { examples?: { train: number; dev: number } } | null;
  log: LogRecord[];
  evals: LogRecord[];
  warnings: string[];
  status: RunStatus;
  /** last change of any log file (ms since the epoch) */
  updatedMs: number;
  /** from config.json's write to the last log change: wall time of the run so far (a resume adds its pause) */
  wallSeconds: number | null;
  hasReport: boolean;
}

function isRunFolder(dir: string): boolean {
  return existsSync(join(dir, 'log.jsonl')) || (existsSync(join(dir, 'config.json')) && (existsSync(join(dir, '.lmtune')) || existsSync(join(dir, 'eval.jsonl')) || existsSync(join(dir, 'checkpoint'))));
}

/** the run folders under `root` (the root itself may be one), sorted by id */
export function findRuns(root: string): string[] {
  if (!existsSync(root)) throw new LmtuneError('IO', `--runs ${root}: no such folder`, 'pass the folder your runs were written to (e.g. runs/)');
  if (!statSync(root).isDirectory()) throw new LmtuneError('IO', `--runs ${root}: not a folder`);
  const out: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (isRunFolder(dir)) {
      out.push(dir);
      return;
    }
    if (depth >= MAX_DEPTH) return;
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names.sort()) {
      if (n.startsWith('.') || NOT_RUNS.has(n)) continue;
      const p = join(dir, n);
      try {
        if (statSync(p).isDirectory()) walk(p, depth + 1);
      } catch {
        /* vanished or unreadable: not a run */
      }
    }
  };
  walk(root, 0);
  return out.map((d) => runId(root, d));
}

export function runId(root: string, dir: string): string {
  const r = relative(root, dir);
  return r === '' ? '.' : r.split(sep).join('/');
}

function mtime(p: string): number {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

/** a cheap fingerprint of what a run has written: changes whenever a log grows or the run finishes */
export function runSignature(root: string, id: string): string {
  const dir = join(root, id);
  return ['config.json', 'log.jsonl', 'eval.jsonl', 'summary.json', 'report.html']
    .map((f) => {
      try {
        const s = statSync(join(dir, f));
        return `${s.size}:${s.mtimeMs}`;
      } catch {
        return '-';
      }
    })
    .join('|');
}

/**
 * A run is "running" if it has no summary yet and its logs changed in the last `liveMs`. The loop flushes
 * its log at checkpoints and evaluations only, so a slow run is quiet for a while between flushes: ten
 * minutes of silence before it is called stopped.
 */
export function readRun(root: string, id: string, now = Date.now(), liveMs = 600_000): RunData {
  const dir = join(root, id);
  const warnings: string[] = [];
  let config: TrainConfig | null = null;
  const cfgPath = join(dir, 'config.json');
  if (existsSync(cfgPath)) {
    try {
      config = validateRunConfig(JSON.parse(readFileSync(cfgPath, 'utf8')), cfgPath);
    } catch (e) {
      warnings.push(e instanceof LmtuneError ? e.message : `${cfgPath}: not valid JSON (${(e as Error).message})`);
    }
  } else warnings.push(`${cfgPath}: missing; the run's settings are unknown`);
  const log = readJsonlLenient(join(dir, 'log.jsonl'));
  const evals = readJsonlLenient(join(dir, 'eval.jsonl'));
  warnings.push(...log.warnings, ...evals.warnings);
  let summary: RunData['summary'] = null;
  const sumPath = join(dir, 'summary.json');
  if (existsSync(sumPath)) {
    try {
      summary = JSON.parse(readFileSync(sumPath, 'utf8')) as RunData['summary'];
    } catch (e) {
      warnings.push(`${sumPath}: not valid JSON (${(e as Error).message})`);
    }
  }
  const updatedMs = Math.max(mtime(join(dir, 'log.jsonl')), mtime(join(dir, 'eval.jsonl')), mtime(sumPath));
  const started = mtime(cfgPath);
  const status: RunStatus = summary ? 'finished' : now - updatedMs < liveMs ? 'running' : 'stopped';
  return {
    id,
    dir,
    config,
    kind: config ? runKind(config) : 'run',
    summary,
    log: log.records,
    evals: evals.records,
    warnings,
    status,
    updatedMs,
    wallSeconds: started && updatedMs >= started ? (updatedMs - started) / 1000 : null,
    hasReport: existsSync(join(dir, 'report.html')),
  };
}
