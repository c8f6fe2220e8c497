/**
 * `--config FILE` errors that point at the file: option values read from a config file are checked by
 * the same code as command-line flags, whose messages name the flag (`--lr must be >= 0, got -1`). For
 * a value the user wrote in the file and not on the command line, that names a flag never typed; this
 * rewrites such a message to name the file, the line and the key as written there
 * (`run.yaml:3: "lr" must be >= 0, got -1`). Flags typed on the command line keep their name.
 */
import { readFileSync } from 'node:fs';
import { isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import { LmtuneError } from '../util/errors.ts';

/** 1-based line of each top-level key of a YAML/JSON mapping, by the key's camelCase option name */
export function configKeyLines(path: string): Map<string, { key: string; line: number }> {
  const out = new Map<string, { key: string; line: number }>();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return out;
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (!isMap(doc.contents)) return out;
  for (const item of doc.contents.items) {
    if (!isScalar(item.key)) continue;
    const key = String(item.key.value);
    const camel = key.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase());
    out.set(camel, { key, line: lc.linePos(item.key.range?.[0] ?? 0).line });
  }
  return out;
}

function kebab(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * `e` with every `--flag` whose value came from `file` (a key of `fromFile`, not typed on the command
 * line: not in `typed`) replaced by the file's key; when the message starts with such a flag, it starts
 * with FILE:LINE instead. Other errors are returned unchanged.
 */
export function blameConfigFile(e: unknown, file: string, fromFile: Readonly<Record<string, unknown>>, typed: Readonly<Record<string, unknown>>): unknown {
  if (!(e instanceof LmtuneError)) return e;
  const lines = configKeyLines(file);
  const fileFlag = new Map<string, { key: string; line: number }>();
  for (const k of Object.keys(fromFile)) {
    if (k in typed) continue;
    fileFlag.set(`--${kebab(k)}`, lines.get(k) ?? { key: k, line: 1 });
  }
  let first: { key: string; line: number } | null = null;
  const message = e.message.replace(/--[a-z0-9]+(?:-[a-z0-9]+)*/g, (flag, offset: number) => {
    const at = fileFlag.get(flag);
    if (!at) return flag;
    if (offset === 0) first = at;
    return offset === 0 ? `"${at.key}"` : `"${at.key}" (${file}:${at.line})`;
  });
  if (message === e.message) return e;
  const head = first as { key: string; line: number } | null;
  const blamed = new LmtuneError(e.code, head ? `${file}:${head.line}: ${message}` : `${message} (set in --config ${file})`, e.hint);
  blamed.stack = e.stack;
  return blamed;
}
