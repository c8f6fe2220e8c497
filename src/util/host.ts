/**
 * What the core asks of the runtime it is hosted in, for the conveniences that take a path: opening a
 * folder by name and writing files into one atomically. Node registers its implementation
 * (src/node/host.ts, imported by the CLI, benchmarks and tests); a web page registers none and hands the
 * core `Folder`s and sinks instead. Everything that parses or computes takes a `Folder`, never a path.
 */
import { LmtuneError } from './errors.ts';
import type { ByteSink, Folder } from './folder.ts';

export interface FileToWrite {
  name: string;
  write(sink: ByteSink): void;
}

export interface Host {
  /** a folder by path (not checked: a missing folder reads as empty) */
  openFolder(path: string): Folder;
  /** a whole file by path; errors name the path */
  readFile(path: string): Uint8Array;
  /** whether a path names an existing file or folder */
  exists(path: string): boolean;
  /** writes each file atomically (temp name, then rename) into `dir`, creating it; then removes the
   * existing files `stale` selects that were not just written */
  writeFiles(dir: string, files: readonly FileToWrite[], stale?: (name: string) => boolean): string[];
}

let host: Host | null = null;

export function setHost(h: Host): void {
  host = h;
}

export function requireHost(what: string): Host {
  if (!host) {
    throw new LmtuneError('UNSUPPORTED', `${what} needs file access by path, which this runtime does not provide`, 'pass a Folder (e.g. MemoryFolder) instead of a path; in Node, import src/node/host.ts first');
  }
  return host;
}

/** a path opened through the host, or a Folder as given */
export function asFolder(dir: string | Folder, what: string): Folder {
  return typeof dir === 'string' ? requireHost(what).openFolder(dir) : dir;
}

/** text as a file to write */
export function textFile(name: string, text: string): FileToWrite {
  return { name, write: (sink) => sink.write(new TextEncoder().encode(text)) };
}

/** a file by path through the host, as UTF-8 text (a BOM is dropped) */
export function readTextFile(path: string, what: string): string {
  const text = new TextDecoder('utf-8').decode(requireHost(what).readFile(path));
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** the extension of a path's last component with its dot ('.jsonl'), or '' — as Node's path.extname */
export function extensionOf(path: string): string {
  const base = path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);
  const dot = base.lastIndexOf('.');
  return dot <= 0 ? '' : base.slice(dot);
}
