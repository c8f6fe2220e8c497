/**
 * The fuzzing property, for every target: an input either works or fails with an LmtuneError whose
 * message names a path inside the case's folder (the file, or the folder for a missing file); any other
 * exception, an LmtuneError that points nowhere, or a case slower than the time limit is a failure.
 *
 * Cases are drawn with fast-check from a seed, so `--seed S` reproduces a run. Counting runs every case
 * (fc.sample); when one fails, fc.check runs the same property to shrink it to a minimal input.
 */
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import fc from 'fast-check';
import { LmtuneError } from '../util/errors.ts';

export interface FuzzTarget<I = unknown> {
  readonly name: string;
  /** what is fuzzed and through which entry point */
  readonly description: string;
  readonly input: fc.Arbitrary<I>;
  /**
   * Writes the case's files under `dir`. Targets that have it get the "no write outside what the entry
   * point is meant to write" check: `dir` is listed (paths, sizes, mtimes) after prepare and after run,
   * and any file run created, changed or removed that `writes` does not allow fails the case.
   */
  prepare?(input: I, dir: string): void | Promise<void>;
  /** paths (relative to `dir`, '/'-separated) the entry point may write; absent: a read-only loader */
  readonly writes?: RegExp;
  /** reads the case's files through the same function the CLI uses (and, without prepare, writes them first) */
  run(input: I, dir: string): Promise<void>;
}

/** every file and folder under `dir`: relative path → size and mtime (cheap enough per case) */
export function listTree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const full = join(e.parentPath, e.name);
    const st = lstatSync(full);
    out.set(relative(dir, full).split(sep).join('/'), st.isDirectory() ? 'dir' : `${st.size}:${st.mtimeMs}`);
  }
  return out;
}

/** what changed between two listings, as '+path', '-path', '~path' */
export function treeChanges(before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>, allowed?: RegExp): string[] {
  const out: string[] = [];
  for (const [p, v] of after) if (before.get(p) !== v && !(allowed?.test(p) ?? false) && !(v === 'dir' && before.get(p) === 'dir')) out.push(`${before.has(p) ? '~' : '+'}${p}`);
  for (const p of before.keys()) if (!after.has(p) && !(allowed?.test(p) ?? false)) out.push(`-${p}`);
  return out;
}

export type Outcome =
  | { kind: 'ok' }
  | { kind: 'clear'; message: string }
  | { kind: 'unclear'; message: string }
  | { kind: 'crash'; message: string }
  | { kind: 'hang'; ms: number };

export function isFailure(o: Outcome): boolean {
  return o.kind === 'unclear' || o.kind === 'crash' || o.kind === 'hang';
}

export async function runCase<I>(target: FuzzTarget<I>, input: I, root: string, timeLimitMs: number): Promise<Outcome> {
  const dir = mkdtempSync(join(root, 'case-'));
  const t0 = performance.now();
  let outcome: Outcome;
  try {
    let before: Map<string, string> | null = null;
    if (target.prepare) {
      await target.prepare(input, dir);
      before = listTree(dir);
    }
    let thrown: unknown = null;
    try {
      await target.run(input, dir);
    } catch (e) {
      thrown = e;
    }
    // checked whether the entry point worked or failed: a failed read must not leave files behind either
    const changed = before ? treeChanges(before, listTree(dir), target.writes) : [];
    if (changed.length) throw new Error(`wrote outside what ${target.name}'s entry point may write: ${changed.slice(0, 5).join(', ')}`);
    if (thrown !== null) throw thrown;
    outcome = { kind: 'ok' };
  } catch (e) {
    if (e instanceof LmtuneError) outcome = e.message.includes(dir) ? { kind: 'clear', message: e.message } : { kind: 'unclear', message: `[${e.code}] ${e.message}` };
    else outcome = { kind: 'crash', message: e instanceof Error ? `${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 6).join('\n')}` : String(e) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const ms = performance.now() - t0;
  return ms > timeLimitMs ? { kind: 'hang', ms } : outcome;
}

export interface FuzzOptions {
  runs: number;
  seed: number;
  /** per case (default 5 s) */
  timeLimitMs?: number;
  /** start counting at this case index (the CLI restarts a worker after a hang) */
  startAt?: number;
  /** called before each case (the CLI's watchdog); index -1 while shrinking */
  onCase?: (index: number, input: string) => void;
  /** skip shrinking (counting only) */
  noShrink?: boolean;
}

export interface FuzzFailure {
  kind: Outcome['kind'];
  message: string;
  /** fast-check's seed and path: `fc.check(property, { seed, path })` replays it */
  seed: number;
  path: string;
  /** the shrunk input (fc.stringify) */
  input: string;
}

export interface FuzzReport {
  target: string;
  cases: number;
  ok: number;
  clear: number;
  /** failures without a clear error: other exceptions, or an LmtuneError that names no file */
  crashes: number;
  hangs: number;
  /** one example message per distinct failure (first 5) */
  examples: { index: number; kind: string; message: string; input: string }[];
  failure: FuzzFailure | null;
}

export async function fuzz<I>(target: FuzzTarget<I>, o: FuzzOptions): Promise<FuzzReport> {
  const limit = o.timeLimitMs ?? 5000;
  const root = mkdtempSync(join(tmpdir(), `lmtune-fuzz-${target.name}-`));
  const report: FuzzReport = { target: target.name, cases: 0, ok: 0, clear: 0, crashes: 0, hangs: 0, examples: [], failure: null };
  const seen = new Set<string>();
  try {
    const inputs = fc.sample(target.input, { seed: o.seed, numRuns: o.runs });
    for (let i = o.startAt ?? 0; i < inputs.length; i++) {
      const shown = fc.stringify(inputs[i]);
      o.onCase?.(i, shown);
      const r = await runCase(target, inputs[i]!, root, limit);
      report.cases++;
      if (r.kind === 'ok') report.ok++;
      else if (r.kind === 'clear') report.clear++;
      else if (r.kind === 'hang') report.hangs++;
      else report.crashes++;
      if (r.kind === 'hang' || r.kind === 'crash' || r.kind === 'unclear') {
        const message = r.kind === 'hang' ? `took ${r.ms.toFixed(0)} ms (limit ${limit} ms)` : r.message;
        const key = `${r.kind}:${message.split('\n')[0]!.replace(/\/tmp\/\S+/g, '<dir>').replace(/\d+/g, 'N')}`;
        if (!seen.has(key) && report.examples.length < 5) report.examples.push({ index: i, kind: r.kind, message, input: shown.slice(0, 600) });
        seen.add(key);
      }
    }
    if ((report.crashes || report.hangs) && !o.noShrink) report.failure = await shrink(target, o, root, limit);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return report;
}

async function shrink<I>(target: FuzzTarget<I>, o: FuzzOptions, root: string, limit: number): Promise<FuzzFailure | null> {
  mkdirSync(root, { recursive: true });
  const prop = fc.asyncProperty(target.input, async (input) => {
    o.onCase?.(-1, fc.stringify(input));
    return !isFailure(await runCase(target, input, root, limit));
  });
  const r = await fc.check(prop, { seed: o.seed, numRuns: o.runs });
  if (!r.failed || r.counterexample === null) return null;
  // rerun the shrunk input for its own message
  const final = await runCase(target, r.counterexample[0], root, limit);
  const msg = final.kind === 'hang' ? `took ${final.ms.toFixed(0)} ms` : final.kind === 'ok' ? '(passed when rerun)' : final.message;
  return { kind: final.kind, message: msg, seed: r.seed, path: r.counterexamplePath ?? '', input: fc.stringify(r.counterexample[0]) };
}
