/** safetensors files on disk: the core's reader and writer (models/safetensors.ts) on paths, written atomically. */
import { basename, dirname } from 'node:path';
import { parseSafetensors, parseSafetensorsHeader, serializeSafetensors, type LoadedTensor, type SafetensorsHeader, type TensorToWrite } from '../models/safetensors.ts';
import { DiskFolder } from './folder.ts';
import { nodeHost } from './host.ts';

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
  let n = 0;
  nodeHost.writeFiles(dirname(path), [{ name: basename(path), write: (sink) => (n = serializeSafetensors(sink, tensors, metadata, path)) }]);
  return n;
}
