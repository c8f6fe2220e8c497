/** File helpers that never leave a half-written file behind: write to a temp file, fsync, rename. */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync, existsSync, readFileSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { duplicateKey } from '../util/json-dupes.ts';

export function atomicWrite(path: string, data: Uint8Array | string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(tmp, 'w');
    try {
      const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    // EISDIR, ENOTDIR, EACCES, ENOSPC, ...: a message naming the path, and no temp file left behind
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
    const code = (e as NodeJS.ErrnoException).code;
    throw new LmtuneError('IO', `${path}: cannot write (${code ?? (e as Error).message})`, code === 'EISDIR' ? 'the path is a folder; give a file name' : code === 'ENOSPC' ? 'the disk is full' : undefined);
  }
  // fsync the directory so the rename itself survives a crash
  try {
    const dfd = openSync(dirname(path), 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  } catch {
    /* some filesystems refuse directory fsync; the rename is still atomic */
  }
}

export function readJson<T = unknown>(path: string, what = 'JSON file'): T {
  if (!existsSync(path)) throw new LmtuneError('IO', `${what} not found: ${path}`);
  const text = readFileSync(path, 'utf8');
  let v: T;
  try {
    v = JSON.parse(text) as T;
  } catch (e) {
    throw new LmtuneError('IO', `${path}: not valid JSON (${(e as Error).message})`);
  }
  // JSON.parse would silently keep the last of two equal keys
  const dup = duplicateKey(text);
  if (dup) throw new LmtuneError('IO', `${path}: key "${[...dup.path.filter((k) => k !== ''), dup.key].join('.')}" appears twice`, 'remove one of them');
  return v;
}

export { stableStringify } from '../util/json.ts';
