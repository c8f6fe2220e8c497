/**
 * Typed access to the fields of a raw record, with the aliases different copies of a dataset use
 * (GLUE TSV `sentence1` vs SuperGLUE `premise`, `Class Index` vs `label`, ...). Every accessor either
 * returns a valid value or throws a DATA error naming file:line, the field and what was found.
 */
import { dataError, type RawRecord } from './readers.ts';

/** Field names compare without case, spaces or punctuation: "Class Index" = "class_index" = "classindex". */
export function normalizeKey(k: string): string {
  return k.toLowerCase().replace(/[^a-z0-9.]/g, '');
}

/** The value under the first alias present; aliases may be dotted paths into nested objects ("target.span1_text"). */
export function lookup(rec: RawRecord, aliases: readonly string[]): { key: string; value: unknown } | undefined {
  for (const alias of aliases) {
    let cur: unknown = rec.value;
    let found = true;
    for (const part of alias.split('.')) {
      if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) {
        found = false;
        break;
      }
      const obj = cur as Record<string, unknown>;
      const want = normalizeKey(part);
      const key = Object.keys(obj).find((k) => normalizeKey(k) === want);
      if (key === undefined) {
        found = false;
        break;
      }
      cur = obj[key];
    }
    if (found && cur !== undefined && cur !== null) return { key: alias, value: cur };
  }
  return undefined;
}

function missing(rec: RawRecord, what: string, aliases: readonly string[]): never {
  const have = Object.keys(rec.value).join(', ');
  throw dataError(rec.file, rec.line, `missing field ${what} (looked for ${aliases.map((a) => `"${a}"`).join(', ')}; the row has: ${have})`);
}

/**
 * A non-empty string field. A single trailing "\r" is removed: the shared JSONL copy of GLUE SST-2 was
 * converted from a CRLF file and keeps it inside every sentence.
 */
export function getString(rec: RawRecord, what: string, aliases: readonly string[], opts: { allowEmpty?: boolean } = {}): string {
  const hit = lookup(rec, aliases) ?? missing(rec, what, aliases);
  if (typeof hit.value !== 'string') {
    throw dataError(rec.file, rec.line, `field "${hit.key}" (${what}) must be a string, got ${JSON.stringify(hit.value)}`);
  }
  const s = hit.value.endsWith('\r') ? hit.value.slice(0, -1) : hit.value;
  if (!opts.allowEmpty && s.trim() === '') throw dataError(rec.file, rec.line, `field "${hit.key}" (${what}) is empty`);
  return s;
}

/** A list of strings; accepts a JSON array, or an object holding one under `text`/`spans` (HF SQuAD/DROP). */
export function getStringList(rec: RawRecord, what: string, aliases: readonly string[]): string[] {
  const hit = lookup(rec, aliases) ?? missing(rec, what, aliases);
  let v = hit.value;
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    v = o['text'] ?? o['spans'];
  }
  if (typeof v === 'string') v = [v];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
    throw dataError(rec.file, rec.line, `field "${hit.key}" (${what}) must be a list of strings, got ${JSON.stringify(hit.value).slice(0, 80)}`);
  }
  if (v.length === 0) throw dataError(rec.file, rec.line, `field "${hit.key}" (${what}) is an empty list`);
  return v as string[];
}

/** A raw label as a canonical string: integers as decimal, booleans as "true"/"false", strings trimmed. */
export function labelString(v: unknown): string | undefined {
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  if (typeof v === 'string') return v.trim();
  return undefined;
}

/**
 * The class index of the row's label. `aliases` maps other spellings to a label name (e.g. the HF
 * integer ids "0" → "entailment").
 */
export function getLabel(
  rec: RawRecord,
  fieldAliases: readonly string[],
  labelNames: readonly string[],
  valueAliases: Readonly<Record<string, string>> = {},
): number {
  const hit = lookup(rec, fieldAliases) ?? missing(rec, 'label', fieldAliases);
  return labelIndex(rec, hit.key, hit.value, labelNames, valueAliases);
}

export function labelIndex(
  rec: RawRecord,
  key: string,
  value: unknown,
  labelNames: readonly string[],
  valueAliases: Readonly<Record<string, string>> = {},
): number {
  const s = labelString(value);
  const name = s === undefined ? undefined : (valueAliases[s] ?? s);
  const idx = name === undefined ? -1 : labelNames.indexOf(name);
  if (idx < 0) {
    throw dataError(
      rec.file,
      rec.line,
      `label "${key}" = ${JSON.stringify(value)} is not one of ${labelNames.map((l) => JSON.stringify(l)).join(', ')}`,
      Object.keys(valueAliases).length ? `also accepted: ${Object.entries(valueAliases).map(([a, b]) => `${a} (= ${b})`).join(', ')}` : undefined,
    );
  }
  return idx;
}
