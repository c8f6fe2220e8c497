/**
 * Node as the core's host (src/util/host.ts): folders on disk, atomic writes. Importing this module
 * registers it; the CLI, the benchmarks and the test runner do.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { setHost, type FileToWrite, type Host } from '../util/host.ts';
import { DiskFolder } from './folder.ts';

function writeAtomic(dir: string, f: FileToWrite): string {
  const path = join(dir, f.name);
  const tmp = join(dir, `.${f.name}.${process.pid}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw new LmtuneError('IO', `${path}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let ok = false;
  try {
    f.write({
      write(b: Uint8Array): void {
        let off = 0;
        while (off < b.length) off += writeSync(fd, b, off, b.length - off);
      },
    });
    fsyncSync(fd);
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) rmSync(tmp, { force: true });
  }
  renameSync(tmp, path);
  return path;
}

export const nodeHost: Host = {
  // unchecked: a missing folder reads as an empty one, so callers report what they looked for in it
  openFolder: (path) => new DiskFolder(path),
  readFile(path) {
    try {
      return readFileSync(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new LmtuneError('IO', code === 'ENOENT' ? `file not found: ${path}` : `${path}: cannot read (${code ?? (e as Error).message})`);
    }
  },
  exists: (path) => existsSync(path),
  writeFiles(dir, files, stale) {
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new LmtuneError('IO', `${dir}: cannot create the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const written = files.map((f) => writeAtomic(dir, f));
    if (stale) {
      const keep = new Set(files.map((f) => f.name));
      for (const name of readdirSync(dir)) if (!keep.has(name) && stale(name)) rmSync(join(dir, name), { force: true });
    }
    // fsync the directory so the renames survive a crash
    try {
      const dfd = openSync(dir, 'r');
      fsyncSync(dfd);
      closeSync(dfd);
    } catch {
      /* some filesystems refuse directory fsync; the renames are still atomic */
    }
    return written;
  },
};

setHost(nodeHost);
