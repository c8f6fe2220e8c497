/** A directory on disk as the core's `Folder`: positioned reads, so a large checkpoint is never read twice. */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import type { Folder } from '../util/folder.ts';

/** Node refuses single reads of 2 GiB or more */
const READ_CHUNK_BYTES = 1 << 30;

export class DiskFolder implements Folder {
  constructor(readonly label: string) {}

  path(name: string): string {
    return join(this.label, name);
  }
  exists(name: string): boolean {
    return existsSync(this.path(name));
  }
  list(): string[] {
    try {
      return readdirSync(this.label);
    } catch {
      return [];
    }
  }
  size(name: string): number {
    try {
      return statSync(this.path(name)).size;
    } catch (e) {
      throw new LmtuneError('IO', `${this.path(name)}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  readInto(name: string, position: number, target: Uint8Array): void {
    const p = this.path(name);
    let fd: number;
    try {
      fd = openSync(p, 'r');
    } catch (e) {
      throw new LmtuneError('IO', `${p}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      let done = 0;
      while (done < target.length) {
        const n = readSync(fd, target, done, Math.min(READ_CHUNK_BYTES, target.length - done), position + done);
        if (n === 0) throw new LmtuneError('IO', `${p}: unexpected end of file (wanted ${target.length} bytes at ${position})`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
  }
}

/** the folder at `dir`, checked to be one */
export function diskFolder(dir: string): DiskFolder {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new LmtuneError('IO', `${dir}: not a folder`);
  return new DiskFolder(dir);
}
