/**
 * A chat JSONL file as LESS selection sees it: its sha256 (the datastore's identity), every row with its
 * pool index (0-based among non-blank lines, so indices follow the file even when invalid rows are
 * skipped) and its raw line (written back byte for byte), and the encoded rows.
 *
 * A pool may be several files (`--pool a.jsonl,b.jsonl`, as the reference pools Flan v2, CoT, Dolly and
 * OASST1): they form one index space in the order given (file k's rows follow file k−1's), selection is
 * global with no per-file quota (the reference's write_selected_data.py), and `locate` maps a pool index
 * back to its file and its index there (scores.csv). The pool's sha256 is the sha256 of the files'
 * sha256s in order, so the datastore header covers every file and their order; a single file keeps its
 * own sha256, so datastores made before multi-file pools stay valid.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { LmtuneError } from '../util/errors.ts';
import type { TextTokenizer } from '../models/api.ts';
import { encodeChat, parseChatJsonl, type ChatRow, type ChatTruncation, type EncodedChat } from '../tasks/chat.ts';

export interface PoolRow {
  /** 0-based among the file's non-blank lines */
  index: number;
  chat: ChatRow;
}

export interface ChatFile {
  /** the file, or the files joined by ',' */
  path: string;
  sha256: string;
  /** non-blank lines of the file (the index space) */
  count: number;
  rows: PoolRow[];
  /** `line` is the line in the row's own file (`locate` names the file) */
  skipped: { index: number; line: number; reason: string }[];
  /** the files in order, with the pool index of each one's first row */
  parts: PoolPart[];
}

export interface PoolPart {
  path: string;
  sha256: string;
  count: number;
  offset: number;
}

export function fileSha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** One file, or several as one pool (see above). */
export function readChatFile(paths: string | readonly string[], opts: { skipInvalid?: boolean } = {}): ChatFile {
  const list = typeof paths === 'string' ? [paths] : [...paths];
  if (list.length === 0) throw new LmtuneError('CONFIG', 'no pool file given');
  const seen = new Set<string>();
  for (const p of list) {
    if (seen.has(p)) throw new LmtuneError('CONFIG', `--pool lists ${p} twice`, 'each pool file once; its rows would otherwise be scored and selected twice');
    seen.add(p);
  }
  if (list.length === 1) return readOne(list[0]!, opts);
  const files = list.map((p) => readOne(p, opts));
  const parts: PoolPart[] = [];
  const rows: PoolRow[] = [];
  const skipped: ChatFile['skipped'] = [];
  let offset = 0;
  for (const f of files) {
    parts.push({ path: f.path, sha256: f.sha256, count: f.count, offset });
    for (const r of f.rows) rows.push({ index: r.index + offset, chat: r.chat });
    for (const s of f.skipped) skipped.push({ ...s, index: s.index + offset });
    offset += f.count;
  }
  return {
    path: list.join(','),
    sha256: createHash('sha256').update(files.map((f) => f.sha256).join('\n')).digest('hex'),
    count: offset,
    rows,
    skipped,
    parts,
  };
}

/** the file of pool index `index` and the row's index in that file (0-based among its non-blank lines) */
export function locate(pool: ChatFile, index: number): { file: string; index: number } {
  if (!(Number.isInteger(index) && index >= 0 && index < pool.count)) throw new LmtuneError('SHAPE', `pool index ${index} is outside the pool's ${pool.count} rows`);
  let lo = 0;
  let hi = pool.parts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (pool.parts[mid]!.offset <= index) lo = mid;
    else hi = mid - 1;
  }
  const part = pool.parts[lo]!;
  return { file: part.path, index: index - part.offset };
}

function readOne(path: string, opts: { skipInvalid?: boolean }): ChatFile {
  if (!existsSync(path)) throw new LmtuneError('IO', `file not found: ${path}`);
  const bytes = readFileSync(path);
  const text = bytes.toString('utf8');
  const parsed = parseChatJsonl(text, path, opts);
  // line number (1-based) → index among non-blank lines, as parseChatJsonl splits them
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = body.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const indexOfLine = new Int32Array(lines.length + 1).fill(-1);
  let count = 0;
  lines.forEach((l, i) => {
    if (l.trim() !== '') indexOfLine[i + 1] = count++;
  });
  if (count === 0) throw new LmtuneError('DATA', `${path}: no rows`);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return {
    path,
    sha256,
    parts: [{ path, sha256, count, offset: 0 }],
    count,
    rows: parsed.rows.map((chat) => ({ index: indexOfLine[chat.line]!, chat })),
    skipped: parsed.skipped.map((s) => ({ index: indexOfLine[s.line]!, line: s.line, reason: s.reason })),
  };
}

/**
 * Encodes rows for gradients. A row whose supervised tokens are all cut by the max length (or that has no
 * assistant turn) is an error naming file:line, or with skipInvalid it is listed and left out.
 */
export function encodeRows(file: ChatFile, tok: TextTokenizer, maxLength: number, skipInvalid: boolean, truncation: ChatTruncation = 'right'): { encoded: Map<number, EncodedChat>; skipped: { index: number; line: number; reason: string }[]; truncated: number } {
  const encoded = new Map<number, EncodedChat>();
  const skipped = [...file.skipped];
  let truncated = 0;
  for (const r of file.rows) {
    let e: EncodedChat;
    try {
      e = encodeChat(r.chat, tok, maxLength, { truncation });
    } catch (err) {
      if (!skipInvalid || !(err instanceof LmtuneError) || err.code !== 'DATA') throw err;
      skipped.push({ index: r.index, line: r.chat.line, reason: err.message });
      continue;
    }
    if (e.truncated) truncated++;
    encoded.set(r.index, e);
  }
  skipped.sort((a, b) => a.index - b.index);
  return { encoded, skipped, truncated };
}
