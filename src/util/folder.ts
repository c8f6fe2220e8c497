/**
 * Read access to a folder of files — a model checkpoint, a tokenizer, a dataset — whatever holds it: a
 * directory on disk (src/node/folder.ts), files a user picked in a browser, bytes already in memory. The
 * core parses from this interface and never from a path, so it runs unchanged in Node and in a page.
 *
 * Synchronous on purpose: parsing code stays straight-line, and a browser reads the user's files into
 * memory (`MemoryFolder`) before handing them over. Positioned reads let a large checkpoint be read one
 * tensor at a time without holding the file twice.
 */
import { LmtuneError } from './errors.ts';
import { duplicateKey } from './json-dupes.ts';

export interface Folder {
  /** how messages name the folder (a directory path, or what the user picked) */
  readonly label: string;
  /** how messages name a file in it */
  path(name: string): string;
  exists(name: string): boolean;
  /** file names directly in the folder */
  list(): string[];
  /** bytes in a file */
  size(name: string): number;
  /** fills `target` with the bytes at [position, position + target.length) of a file */
  readInto(name: string, position: number, target: Uint8Array): void;
}

/** a whole file as bytes */
export function readBytes(folder: Folder, name: string): Uint8Array {
  const out = new Uint8Array(folder.size(name));
  folder.readInto(name, 0, out);
  return out;
}

/** a whole file as UTF-8 text (a BOM is dropped, as editors write one) */
export function readText(folder: Folder, name: string): string {
  const text = new TextDecoder('utf-8').decode(readBytes(folder, name));
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** a JSON file, with an error naming it when it does not parse */
export function readJsonIn<T = unknown>(folder: Folder, name: string, what = 'JSON file'): T {
  if (!folder.exists(name)) throw new LmtuneError('IO', `${what} not found: ${folder.path(name)}`);
  const text = readText(folder, name);
  let v: T;
  try {
    v = JSON.parse(text) as T;
  } catch (e) {
    throw new LmtuneError('IO', `${folder.path(name)}: not valid JSON (${(e as Error).message})`);
  }
  // JSON.parse would silently keep the last of two equal keys
  const dup = duplicateKey(text);
  if (dup) throw new LmtuneError('IO', `${folder.path(name)}: key "${[...dup.path.filter((k) => k !== ''), dup.key].join('.')}" appears twice`, 'remove one of them');
  return v;
}

/** Files held in memory: a browser's picked files, tests, or bytes received over the network. */
export class MemoryFolder implements Folder {
  constructor(
    readonly label: string,
    private readonly files: ReadonlyMap<string, Uint8Array>,
  ) {}

  static fromTexts(label: string, files: Record<string, string | Uint8Array>): MemoryFolder {
    const enc = new TextEncoder();
    return new MemoryFolder(label, new Map(Object.entries(files).map(([k, v]) => [k, typeof v === 'string' ? enc.encode(v) : v])));
  }

  path(name: string): string {
    return `${this.label}/${name}`;
  }
  exists(name: string): boolean {
    return this.files.has(name);
  }
  list(): string[] {
    return [...this.files.keys()];
  }
  size(name: string): number {
    return this.get(name).length;
  }
  readInto(name: string, position: number, target: Uint8Array): void {
    const f = this.get(name);
    if (position + target.length > f.length) throw new LmtuneError('IO', `${this.path(name)}: unexpected end of file (wanted ${target.length} bytes at ${position} of ${f.length})`);
    target.set(f.subarray(position, position + target.length));
  }
  private get(name: string): Uint8Array {
    const f = this.files.get(name);
    if (!f) throw new LmtuneError('IO', `${this.path(name)}: no such file`);
    return f;
  }
}

/** Where a writer streams bytes (a file opened for writing in Node, a growing buffer in a page). */
export interface ByteSink {
  write(bytes: Uint8Array): void;
}

/** A sink that keeps everything written, for downloads and tests. */
export class MemorySink implements ByteSink {
  private readonly chunks: Uint8Array[] = [];
  private n = 0;
  write(bytes: Uint8Array): void {
    // copy: a writer may reuse its buffer (F32 tensors are written straight from the caller's memory)
    this.chunks.push(bytes.slice());
    this.n += bytes.length;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.n);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}
