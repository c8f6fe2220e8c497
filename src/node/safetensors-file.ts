/** safetensors files on disk: the core's reader and writer (models/safetensors.ts) on paths, written atomically. */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { parseSafetensors, parseSafetensorsHeader, serializeSafetensors, type LoadedTensor, type SafetensorsHeader, type TensorToWrite } from '../models/safetensors.ts';
import { DiskFolder } from './folder.ts';

export function readSafetensorsHeader(path: string): SafetensorsHeader {
  return parseSafetensorsHeader(new DiskFolder(dirname(path)), basename(path));
}

/** Reads every tensor of a file (each into its own Float32Array), in header order. */
export function readSafetensors(path: string, only?: ReadonlySet<string>): { header: SafetensorsHeader; tensors: Map<string, LoadedTensor> } {
  return parseSafetensors(new DiskFolder(dirname(path)), basename(path), only);
}

/** Writes through a temp file renamed into place: a crash never leaves a half-written file. Returns the bytes written. */
export function writeSafetensors(
  path: string,
  tensors: Iterable<readonly [string, TensorToWrite]> | ReadonlyMap<string, TensorToWrite>,
  metadata: Record<string, string> = { format: 'pt' },
): number {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw new LmtuneError('IO', `${path}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let ok = false;
  let n = 0;
  try {
    n = serializeSafetensors(
      {
        write(b: Uint8Array): void {
          let off = 0;
          while (off < b.length) off += writeSync(fd, b, off, b.length - off);
        },
      },
      tensors,
      metadata,
      path,
    );
    fsyncSync(fd);
    ok = true;
  } finally {
    closeSync(fd);
    if (!ok) rmSync(tmp, { force: true });
  }
  renameSync(tmp, path);
  return n;
}
