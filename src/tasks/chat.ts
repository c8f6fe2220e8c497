/**
 * Chat-format data (the Tulu / LESS training format): rows `{"messages": [{role, content}, ...]}` and
 * `{"prompt", "completion"}`, parsed with file:line errors, and encoded for a causal LM with the loss on
 * the assistant tokens only.
 *
 * Encoding follows LESS's `get_training_dataset.py` (after open-instruct), spec less.md §2:
 * - messages render as `<|system|>\n{c}\n`, `<|user|>\n{c}\n`, `<|assistant|>\n{c}{eos}\n`, content
 *   stripped, eos the tokenizer's EOS token text; the whole text is tokenized once, BOS first;
 * - labels are masked over each non-assistant message, [len(tok(prefix)), len(tok(prefix + msg
 *   [+ "<|assistant|>\n" when an assistant message follows]))), lengths from re-tokenizing the prefixes,
 *   so what stays supervised is every assistant turn's content, its EOS and the "\n" after it;
 * - prompt/completion rows: `prompt + [" " when neither side has whitespace at the seam] + completion +
 *   eos`, no template, the loss on everything after len(tok(prompt));
 * - truncation cuts on the right to the max length (HF `truncation=True`); `truncation: 'left'` instead
 *   keeps the BOS and the last tokens (the final answer survives; not in the reference, for short-context
 *   models such as the embedded 64-token one), reserving the final reply's length rounded up to a
 *   multiple of REPLY_ROOM (8), so a cut row's reply starts at a position that does not give its
 *   length away (encodeChat); such a window may end up to 7 tokens short of the max length.
 * The model input keeps the convention of the rest of lmtune: supervised[t] = 1 means the loss at t
 * predicts ids[t] from ids[<t] (HF's shifted labels), so position 0 is never supervised.
 *
 * A row keeps its raw line so a selection can write it back byte for byte.
 */
import type { TextTokenizer } from '../models/api.ts';
import { LmtuneError } from '../util/errors.ts';
import { dataError } from './readers.ts';
import { specialPrefix } from './encode.ts';

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export interface ChatRow {
  /** 1-based line in its file */
  line: number;
  /** the line exactly as in the file, without its line break */
  raw: string;
  messages: ChatMessage[];
  /** the file the row came from (set by parseChatJsonl), for error messages */
  file?: string;
  dataset?: string;
  id?: string;
  subtask?: string;
  choices?: string[];
  label?: string;
  answers?: string[];
  /** a prompt/completion row: encoded as in the reference (no chat template); `messages` is then
   *  [user: prompt, assistant: completion] for display and evaluation */
  promptCompletion?: { prompt: string; completion: string };
}

export interface ParsedChat {
  rows: ChatRow[];
  skipped: { line: number; reason: string }[];
}

export type ChatTruncation = 'right' | 'left';

export interface EncodedChat {
  ids: number[];
  /** 1 where the token is supervised (assistant content + EOS, and the "\n" after it as in the reference), aligned with ids: loss at position t predicts ids[t] from ids[<t] */
  supervised: Uint8Array;
  truncated: boolean;
  supervisedCount: number;
}

const ROLES: readonly ChatRole[] = ['system', 'user', 'assistant'];
const HEADER: Record<ChatRole, string> = { system: '<|system|>\n', user: '<|user|>\n', assistant: '<|assistant|>\n' };
export const ASSISTANT_HEADER = HEADER.assistant;

/** A row problem: a DATA error naming file:line. */
function rowError(file: string, line: number, problem: string, hint?: string): LmtuneError {
  return dataError(file, line, problem, hint);
}

function optionalString(v: Record<string, unknown>, key: string, file: string, line: number, numbersToo = false): string | undefined {
  const x = v[key];
  if (x === undefined || x === null) return undefined;
  if (typeof x === 'string') return x;
  if (numbersToo && typeof x === 'number' && Number.isFinite(x)) return String(x);
  throw rowError(file, line, `field "${key}" must be a string, got ${JSON.stringify(x)}`);
}

function optionalStringList(v: Record<string, unknown>, key: string, file: string, line: number): string[] | undefined {
  const x = v[key];
  if (x === undefined || x === null) return undefined;
  if (typeof x === 'string') return [x];
  if (!Array.isArray(x) || x.some((e) => typeof e !== 'string')) throw rowError(file, line, `field "${key}" must be a list of strings`);
  return x as string[];
}

/**
 * One JSON object as a chat row (the validation behind parseChatJsonl, for callers that read records
 * themselves). Throws a DATA error naming file:line.
 */
export function chatRowFromValue(value: unknown, file: string, line: number, raw: string): ChatRow {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw rowError(file, line, `expected a JSON object, got ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}`);
  }
  const v = value as Record<string, unknown>;
  let messages: ChatMessage[];
  let promptCompletion: ChatRow['promptCompletion'];
  if (v['messages'] !== undefined) {
    const m = v['messages'];
    if (!Array.isArray(m)) throw rowError(file, line, `"messages" must be a list of {role, content}, got ${JSON.stringify(m)?.slice(0, 60)}`);
    if (m.length === 0) throw rowError(file, line, '"messages" is empty', 'a chat row needs at least one message');
    messages = m.map((msg: unknown, i: number) => {
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw rowError(file, line, `messages[${i}] must be an object {role, content}`);
      const o = msg as Record<string, unknown>;
      const role = o['role'];
      if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) {
        throw rowError(file, line, `messages[${i}] has role ${JSON.stringify(role)}`, `roles are ${ROLES.join(', ')}`);
      }
      const content = o['content'];
      if (typeof content !== 'string') throw rowError(file, line, `messages[${i}] (${role}) content must be a string, got ${JSON.stringify(content)}`);
      if (role === 'assistant' && pyStrip(content) === '') throw rowError(file, line, `messages[${i}] is an empty assistant turn`, 'an assistant turn is what the loss is computed on; remove the row or fill the turn');
      return { role: role as ChatRole, content };
    });
  } else if (v['prompt'] !== undefined || v['completion'] !== undefined) {
    const prompt = v['prompt'];
    const completion = v['completion'];
    if (typeof prompt !== 'string') throw rowError(file, line, `"prompt" must be a string, got ${JSON.stringify(prompt)}`);
    if (typeof completion !== 'string') throw rowError(file, line, `"completion" must be a string, got ${JSON.stringify(completion)}`);
    if (pyStrip(completion) === '') throw rowError(file, line, 'empty "completion" (the assistant turn)');
    promptCompletion = { prompt, completion };
    messages = [
      { role: 'user', content: prompt },
      { role: 'assistant', content: completion },
    ];
  } else {
    throw rowError(file, line, 'no "messages" (and no "prompt"/"completion")', 'chat rows are {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}');
  }
  const row: ChatRow = { line, raw, messages, file };
  const dataset = optionalString(v, 'dataset', file, line);
  const id = optionalString(v, 'id', file, line, true);
  const subtask = optionalString(v, 'subtask', file, line);
  const choices = optionalStringList(v, 'choices', file, line);
  const label = optionalString(v, 'label', file, line, true);
  const answers = optionalStringList(v, 'answers', file, line);
  if (dataset !== undefined) row.dataset = dataset;
  if (id !== undefined) row.id = id;
  if (subtask !== undefined) row.subtask = subtask;
  if (choices !== undefined) {
    if (choices.length === 0) throw rowError(file, line, '"choices" is empty');
    const seen = new Set<string>();
    for (const c of choices) {
      if (c.trim() === '') throw rowError(file, line, '"choices" holds an empty choice');
      if (seen.has(c.trim())) throw rowError(file, line, `"choices" lists ${JSON.stringify(c)} twice`);
      seen.add(c.trim());
    }
    row.choices = choices;
  }
  if (label !== undefined) {
    if (choices !== undefined && !choices.includes(label)) {
      throw rowError(file, line, `"label" ${JSON.stringify(label)} is not one of the choices ${JSON.stringify(choices)}`);
    }
    row.label = label;
  }
  if (answers !== undefined) {
    if (answers.length === 0) throw rowError(file, line, '"answers" is empty');
    row.answers = answers;
  }
  if (promptCompletion) row.promptCompletion = promptCompletion;
  return row;
}

/**
 * Parses chat JSONL text. Blank lines are ignored; every other line must be a valid row, else a DATA
 * error naming file:line, or with `skipInvalid` the row is skipped and reported in `skipped`.
 */
export function parseChatJsonl(text: string, file: string, opts: { skipInvalid?: boolean } = {}): ParsedChat {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const lines = body.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const rows: ChatRow[] = [];
  const skipped: { line: number; reason: string }[] = [];
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    try {
      let value: unknown;
      try {
        value = JSON.parse(raw);
      } catch (e) {
        throw rowError(file, line, `not valid JSON (${(e as Error).message})`, 'each line of a JSONL file must be one JSON object');
      }
      rows.push(chatRowFromValue(value, file, line, raw));
    } catch (e) {
      if (!opts.skipInvalid || !(e instanceof LmtuneError)) throw e;
      skipped.push({ line, reason: e.message });
    }
  });
  return { rows, skipped };
}

/** The Tulu rendering of messages (content stripped as Python's str.strip()). */
export function renderTulu(messages: readonly ChatMessage[], eosText: string): string {
  let s = '';
  for (const m of messages) {
    s += HEADER[m.role] + pyStrip(m.content) + (m.role === 'assistant' ? eosText : '') + '\n';
  }
  return s;
}

/** Python's str.isspace() characters (JS \s differs: it has U+FEFF and lacks U+001C-U+001F and U+0085). */
const PY_SPACE = '[\\t\\n\\v\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'g');

/** Python's str.strip() with no argument. */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

/**
 * The tokens a chat encoding starts with: the tokenizer's BOS when it has one (LESS tokenizes with BOS;
 * GPT-2's BOS is <|endoftext|>, which HF would not add but which gives the first token a context), else
 * whatever `encode(addSpecialTokens)` puts first.
 */
export function chatPrefix(tok: TextTokenizer): number[] {
  return tok.bosId !== null ? [tok.bosId] : specialPrefix(tok);
}

/** The EOS token's text (`</s>`, `<|endoftext|>`), checked to tokenize back to exactly the EOS id. */
export function eosText(tok: TextTokenizer): string {
  const eos = tok.eosId;
  if (eos === null) throw new LmtuneError('TOKENIZER', 'the tokenizer has no EOS token; chat data ends every assistant turn with EOS');
  const text = tok.decode([eos]);
  const back = tok.encode(text);
  if (back.length !== 1 || back[0] !== eos) {
    throw new LmtuneError('TOKENIZER', `the EOS token text ${JSON.stringify(text)} does not tokenize back to the EOS id ${eos} (got ${JSON.stringify(back)})`, 'the tokenizer must treat its EOS token as a special (unsplittable) token');
  }
  return text;
}

/** the step in which left truncation reserves room for a reply (see encodeChat) */
export const REPLY_ROOM = 8;

function roundUpTo(n: number, step: number): number {
  return Math.ceil(n / step) * step;
}

function where(row: ChatRow): string {
  return `${row.file ?? '<chat>'}:${row.line}`;
}

/**
 * Encodes one row for training: ids (BOS first, truncated to maxLength, on the right by default) and
 * the supervised mask. A row with no supervised token left (no assistant turn, or every assistant token
 * cut by maxLength) is a DATA error naming file:line.
 */
export function encodeChat(row: ChatRow, tok: TextTokenizer, maxLength: number, opts: { truncation?: ChatTruncation } = {}): EncodedChat {
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new LmtuneError('CONFIG', `max length must be an integer >= 2, got ${maxLength}`);
  const eos = eosText(tok);
  const prefix = chatPrefix(tok);
  const len = (text: string) => prefix.length + tok.encode(text).length;
  let full: number[];
  let sup: Uint8Array;
  /** tokens of the final reply (last assistant turn or completion, with EOS and what follows it); 0 when the row ends with another role */
  let reply: number;
  if (row.promptCompletion) {
    const { prompt, completion } = row.promptCompletion;
    const seam = /[ \n\t]$/.test(prompt) || /^[ \n\t]/.test(completion) ? '' : ' ';
    full = [...prefix, ...tok.encode(prompt + seam + completion + eos)];
    sup = new Uint8Array(full.length).fill(1);
    sup.fill(0, 0, Math.min(len(prompt), full.length));
    reply = Math.max(0, full.length - len(prompt));
  } else {
    const msgs = row.messages;
    full = [...prefix, ...tok.encode(renderTulu(msgs, eos))];
    sup = new Uint8Array(full.length).fill(1);
    for (let i = 0; i < msgs.length; i++) {
      if (msgs[i]!.role === 'assistant') continue;
      const start = i === 0 ? 0 : len(renderTulu(msgs.slice(0, i), eos));
      const end = len(renderTulu(msgs.slice(0, i + 1), eos) + (msgs[i + 1]?.role === 'assistant' ? ASSISTANT_HEADER : ''));
      sup.fill(0, Math.min(start, full.length), Math.min(end, full.length));
    }
    reply = msgs[msgs.length - 1]?.role === 'assistant' ? Math.max(0, full.length - len(renderTulu(msgs.slice(0, -1), eos) + ASSISTANT_HEADER)) : 0;
  }
  sup[0] = 0;
  const keep = prefix.length;
  // Left truncation makes room for the reply in steps of REPLY_ROOM tokens, so that where a cut row's
  // reply starts (maxLength − room) does not tell how long the reply is: cut just enough and, in a
  // file of short labels, every "entity" row would start its answer 3 positions later than every
  // "abbreviation" row, and a model with learned positions fits the labels from the positions alone
  // (the embedded 64-token model did: training loss 0, held-out accuracy at the class prior).
  const room = roundUpTo(reply, REPLY_ROOM);
  const roomFits = opts.truncation === 'left' && reply > 0 && room < maxLength - keep;
  const truncated = roomFits ? full.length - reply + room > maxLength : full.length > maxLength;
  let ids = full;
  let supervised = sup;
  if (truncated && opts.truncation === 'left') {
    if (maxLength <= keep) throw new LmtuneError('CONFIG', `max length ${maxLength} leaves no room after ${keep} special tokens`);
    const from = full.length - (maxLength - keep) + (roomFits ? room - reply : 0);
    ids = [...full.slice(0, keep), ...full.slice(from)];
    supervised = new Uint8Array(ids.length);
    supervised.set(sup.subarray(0, keep));
    supervised.set(sup.subarray(from), keep);
    supervised[0] = 0;
  } else if (truncated) {
    ids = full.slice(0, maxLength);
    supervised = sup.slice(0, maxLength);
  }
  let supervisedCount = 0;
  for (const s of supervised) supervisedCount += s;
  if (supervisedCount === 0) {
    const hasAssistant = row.messages.some((m) => m.role === 'assistant');
    throw new LmtuneError(
      'DATA',
      hasAssistant
        ? `${where(row)}: every assistant token is cut by the max length ${maxLength} (the row has ${full.length} tokens)`
        : `${where(row)}: no assistant turn to train on`,
      hasAssistant ? 'raise --max-length, truncate on the left (--truncation left), or pass --skip-invalid to leave such rows out' : 'a training row needs an assistant turn',
    );
  }
  return { ids, supervised, truncated, supervisedCount };
}

/** Encodes many rows; with skipInvalid, rows encodeChat rejects are skipped and listed instead. */
export function encodeChatRows(
  rows: readonly ChatRow[],
  tok: TextTokenizer,
  maxLength: number,
  opts: { skipInvalid?: boolean; truncation?: ChatTruncation } = {},
): { encoded: EncodedChat[]; rows: ChatRow[]; skipped: { line: number; reason: string }[]; truncated: number } {
  const encoded: EncodedChat[] = [];
  const kept: ChatRow[] = [];
  const skipped: { line: number; reason: string }[] = [];
  let truncated = 0;
  for (const r of rows) {
    let e: EncodedChat;
    try {
      e = encodeChat(r, tok, maxLength, opts.truncation ? { truncation: opts.truncation } : {});
    } catch (err) {
      if (!opts.skipInvalid || !(err instanceof LmtuneError) || err.code !== 'DATA') throw err;
      skipped.push({ line: r.line, reason: err.message });
      continue;
    }
    encoded.push(e);
    kept.push(r);
    if (e.truncated) truncated++;
  }
  return { encoded, rows: kept, skipped, truncated };
}
