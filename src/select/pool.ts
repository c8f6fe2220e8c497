/**
 * A chat JSONL file as LESS selection sees it: its sha256 (the datastore's identity), every row with its
 * pool index (0-based among non-blank lines, so indices follow the file even when invalid rows are
 * skipped) and its raw line (written back byte for byte), and the encoded rows.
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
  path: string;
  sha256: string;
  /** non-blank lines of the file (the index space) */
  count: number;
  rows: PoolRow[];
  skipped: { index: number; line: number; reason: string }[];
}

export function fileSha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function readChatFile(path: string, opts: { skipInvalid?: boolean } = {}): ChatFile {
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
  return {
    path,
    sha256: createHash('sha256').update(bytes).digest('hex'),
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
