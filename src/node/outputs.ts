/**
 * Outputs never replace or delete what lmtune did not create. A folder lmtune makes (a run folder, a
 * saved model folder) carries a marker file `.lmtune` naming what it is; a command may replace or reuse
 * a folder only when it is absent, empty, or carries the marker of the same kind (and role, for model
 * folders: a replay's --out may not replace a run's `initial/`). Checks run before the work, so a bad
 * --out fails in a second, not after an hour of training, and errors name the flag and the path.
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite } from './fsx.ts';

export const MARKER = '.lmtune';
/** the temporary file `atomicWrite` (fsx.ts) writes the marker through */
const MARKER_TMP = /^\.\.lmtune\.\d+\.tmp$/;

export interface Marker {
  kind: 'run' | 'model';
  /** model folders: best, final, initial, replay, ... */
  role?: string;
}

export function readMarker(dir: string): Marker | null {
  const p = join(dir, MARKER);
  if (!existsSync(p)) return null;
  try {
    const m = JSON.parse(readFileSync(p, 'utf8')) as Marker;
    return m && (m.kind === 'run' || m.kind === 'model') ? m : null;
  } catch {
    return null;
  }
}

export function writeMarker(dir: string, m: Marker): void {
  atomicWrite(join(dir, MARKER), JSON.stringify(m) + '\n');
}

/** the nearest existing ancestor must be a writable folder (checked before any work) */
function checkParent(path: string, flag: string): void {
  let p = dirname(resolve(path));
  while (!existsSync(p)) {
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  if (!statSync(p).isDirectory()) throw new LmtuneError('IO', `${flag} ${path}: ${p} is a file, not a folder`, `choose another ${flag}`);
  try {
    accessSync(p, constants.W_OK);
  } catch {
    throw new LmtuneError('IO', `${flag} ${path}: ${p} is not writable`, `choose another ${flag}`);
  }
  // kernel filesystems: writes fail oddly and a recursive mkdir there can hang
  if (['/proc', '/sys', '/dev'].some((k) => p === k || p.startsWith(`${k}/`))) throw new LmtuneError('IO', `${flag} ${path}: cannot write under ${p}`, `choose another ${flag}`);
}

/** An output file: not a folder, in a writable place. Call before the work that produces it. */
export function checkOutputFile(path: string, flag: string): void {
  if (existsSync(path) && statSync(path).isDirectory()) throw new LmtuneError('IO', `${flag} ${path}: is a folder, not a file`, `give ${flag} a file name`);
  checkParent(path, flag);
}

/**
 * May `dir` become (or be replaced by) an lmtune folder of this kind? Absent, empty, or ours of the same
 * kind and role. Throws naming the flag and the path otherwise.
 */
export function checkOutputFolder(dir: string, m: Marker, flag: string): void {
  if (!existsSync(dir)) {
    checkParent(dir, flag);
    return;
  }
  if (!statSync(dir).isDirectory()) throw new LmtuneError('IO', `${flag} ${dir}: is a file, not a folder`, `choose another ${flag}`);
  // a marker still being written (atomicWrite's temporary file) does not make the folder someone else's:
  // the ranks of a data-parallel run claim one run folder at the same time (the kill harness's
  // data-parallel job, src/fuzz/kill.ts, saw rank 0 refused while rank 1 wrote the marker), and a kill
  // between the temporary file's creation and its rename leaves it behind
  if (readdirSync(dir).every((e) => MARKER_TMP.test(e))) return;
  const have = readMarker(dir);
  if (have === null) {
    throw new LmtuneError('IO', `${flag} ${dir}: the folder exists and lmtune did not create it; refusing to write into it`, `choose a new or empty ${flag} folder (lmtune never replaces what it did not make)`);
  }
  if (have.kind !== m.kind || (m.role !== undefined && have.role !== m.role)) {
    const what = (x: Marker) => `${x.kind}${x.role ? ` (${x.role})` : ''} folder`;
    throw new LmtuneError('IO', `${flag} ${dir}: is an lmtune ${what(have)}, not a ${what(m)}; refusing to replace it`, `choose another ${flag}`);
  }
}

/** creates `dir` (or reuses an empty one) as an lmtune folder of this kind */
export function claimFolder(dir: string, m: Marker, flag: string): void {
  checkOutputFolder(dir, m, flag);
  mkdirSync(dir, { recursive: true });
  if (readMarker(dir) === null) writeMarker(dir, m);
}

/**
 * Writes a folder through a temporary sibling and swaps it in, so `dir` is replaced whole or not at
 * all. `write` fills the temporary folder; the marker is added.
 */
export function replaceFolder(dir: string, m: Marker, flag: string, write: (tmp: string) => void): void {
  checkOutputFolder(dir, m, flag);
  const tmp = `${dir}.tmp-${process.pid}`;
  const old = `${dir}.old-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    write(tmp);
    writeMarker(tmp, m);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (e instanceof LmtuneError) throw e;
    throw new LmtuneError('IO', `${flag} ${dir}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const had = existsSync(dir);
  if (had) renameSync(dir, old);
  try {
    renameSync(tmp, dir);
  } catch (e) {
    if (had) renameSync(old, dir); // the previous folder back, whole
    rmSync(tmp, { recursive: true, force: true });
    throw new LmtuneError('IO', `${flag} ${dir}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (had) rmSync(old, { recursive: true, force: true });
}
