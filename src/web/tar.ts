/**
 * A run folder as one download: a POSIX ustar archive (no compression), which `tar -xf` unpacks on
 * Linux, macOS and Windows 10+. A page cannot write folders, and a run folder must keep its layout
 * (`checkpoint/state.json`, …) for `lmtune train --resume`. Entries carry mtime 0 and mode 0644, so
 * the same files give the same bytes.
 */
import { LmtuneError } from '../util/errors.ts';

const BLOCK = 512;

function field(h: Uint8Array, offset: number, length: number, text: string): void {
  const b = new TextEncoder().encode(text);
  if (b.length > length) throw new LmtuneError('IO', `tar: "${text}" does not fit a ${length}-byte header field`);
  h.set(b, offset);
}

/** octal, zero-padded, NUL-terminated, as ustar wants numbers */
function octal(h: Uint8Array, offset: number, length: number, n: number): void {
  field(h, offset, length, n.toString(8).padStart(length - 1, '0') + '\0');
}

function header(name: string, size: number, type: '0' | '5'): Uint8Array {
  const h = new Uint8Array(BLOCK);
  if (new TextEncoder().encode(name).length > 100) throw new LmtuneError('IO', `tar: the path "${name}" is longer than 100 bytes`);
  field(h, 0, 100, name);
  octal(h, 100, 8, type === '5' ? 0o755 : 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, 0);
  h.fill(0x20, 148, 156); // the checksum is summed with its own field as spaces
  field(h, 156, 1, type);
  field(h, 257, 6, 'ustar\0');
  field(h, 263, 2, '00');
  const sum = h.reduce((s, b) => s + b, 0);
  field(h, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

/** an archive of `files` (path → bytes) under the folder `root`, folders listed before their files */
export function tarFolder(root: string, files: Readonly<Record<string, Uint8Array>>): Uint8Array {
  const parts: Uint8Array[] = [];
  const dirs = new Set<string>([root]);
  for (const path of Object.keys(files)) {
    const segs = path.split('/');
    for (let i = 1; i < segs.length; i++) dirs.add(`${root}/${segs.slice(0, i).join('/')}`);
  }
  for (const d of [...dirs].sort()) parts.push(header(`${d}/`, 0, '5'));
  for (const path of Object.keys(files).sort()) {
    const data = files[path]!;
    parts.push(header(`${root}/${path}`, data.length, '0'), data);
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(2 * BLOCK)); // two zero blocks end the archive
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
