/**
 * Structured mutations as fast-check arbitraries. A mutation is plain data (which path, which edit,
 * which value), applied deterministically to a valid seed document, so fast-check can shrink a failing
 * case to the one edit that matters and print it.
 */
import fc from 'fast-check';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** values that break assumptions: wrong types, extremes, non-integers, odd strings */
export const weirdValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(null, true, false, 0, -1, 1, 1.5, -0.5, 2 ** 31, 2 ** 53 + 2, 1e308, -1e308, 5e-324, '', ' ', '0', 'NaN', '\u0000', '\ufeff', '😀', 'a\r\nb', [], {}, [1], { a: 1 }),
  fc.integer({ min: -5, max: 100 }),
  fc.string({ maxLength: 8 }),
  fc.array(fc.integer({ min: -2, max: 9 }), { maxLength: 4 }),
);

export type JsonEdit =
  | { op: 'delete'; at: number }
  | { op: 'set'; at: number; value: Json }
  | { op: 'scale'; at: number; by: number }
  | { op: 'add'; at: number; key: string; value: Json };

export const jsonEdit: fc.Arbitrary<JsonEdit> = fc.oneof(
  fc.record({ op: fc.constant('delete' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: weirdValue }),
  fc.record({ op: fc.constant('scale' as const), at: fc.nat(), by: fc.constantFrom(-1, 0, 2, 1000, 1e12, 0.5) }),
  fc.record({ op: fc.constant('add' as const), at: fc.nat(), key: fc.oneof(fc.constantFrom('__proto__', 'constructor', 'step', 'dtype'), fc.string({ maxLength: 6 })), value: weirdValue }),
);

/** every container/value path of a document, in a fixed order */
function paths(doc: Json, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(doc)) doc.forEach((v, i) => paths(v, [...prefix, i], out));
  else if (doc !== null && typeof doc === 'object') for (const k of Object.keys(doc)) paths(doc[k]!, [...prefix, k], out);
  return out;
}

function clone(doc: Json): Json {
  return JSON.parse(JSON.stringify(doc)) as Json;
}

/** applies edits in order; `at` picks a path modulo the number of paths (so any nat is valid) */
export function applyJsonEdits(doc: Json, edits: readonly JsonEdit[]): Json {
  let root = clone(doc);
  for (const e of edits) {
    const ps = paths(root);
    const p = ps[e.at % ps.length]!;
    const parent = p.length ? (p.slice(0, -1).reduce<Json>((o, k) => (o as Record<string, Json>)[k as string]!, root) as Record<string, Json> | Json[]) : null;
    const key = p[p.length - 1];
    const get = (): Json => (parent === null ? root : (parent as Record<string, Json>)[key as string]!);
    const put = (v: Json): void => {
      if (parent === null) root = v;
      else (parent as Record<string, Json>)[key as string] = v;
    };
    if (e.op === 'delete') {
      if (parent === null) root = {};
      else if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
    } else if (e.op === 'set') put(e.value);
    else if (e.op === 'scale') {
      const v = get();
      put(typeof v === 'number' ? v * e.by : Array.isArray(v) ? v.map((x) => (typeof x === 'number' ? x * e.by : x)) : v);
    } else {
      const v = get();
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.defineProperty(v, e.key, { value: e.value, enumerable: true, writable: true, configurable: true });
      else if (Array.isArray(v)) v.push(e.value);
    }
  }
  return root;
}

/** null three times in four: most cases carry one kind of damage, so each is seen on its own */
export function rarely<T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: a });
}

export type TextEdit =
  | { op: 'none' }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; text: string }
  | { op: 'delete'; at: number; len: number }
  | { op: 'bom' }
  | { op: 'crlf' }
  | { op: 'cr' }
  | { op: 'duplicate-line'; at: number }
  | { op: 'duplicate-key'; at: number }
  | { op: 'binary'; at: number; bytes: number[] };

export const textEdit: fc.Arbitrary<TextEdit> = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ op: 'none' as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('\n', '\r\n', '\t', '"', '{', '}', ',', ':', '\\', '\u0000', '\ufeff', '\u2028', '😀', ' NaN', 'Infinity', '-', '#', '  - ', ': x')) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'bom' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'crlf' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'cr' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate-line' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('duplicate-key' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('binary' as const), at: fc.nat(), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 8 }) }) },
);

/** text edits work on bytes so a cut can split a UTF-8 sequence, as a truncated download does */
export function applyTextEdit(data: Uint8Array, e: TextEdit): Uint8Array {
  const text = (): string => Buffer.from(data).toString('utf8');
  const pos = (at: number): number => (data.length ? at % (data.length + 1) : 0);
  switch (e.op) {
    case 'none':
      return data;
    case 'truncate':
      return data.subarray(0, pos(e.at));
    case 'insert': {
      const p = pos(e.at);
      return Buffer.concat([data.subarray(0, p), Buffer.from(e.text, 'utf8'), data.subarray(p)]);
    }
    case 'delete': {
      const p = pos(e.at);
      return Buffer.concat([data.subarray(0, p), data.subarray(Math.min(data.length, p + e.len))]);
    }
    case 'bom':
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), data]);
    case 'crlf':
      return Buffer.from(text().replace(/\n/g, '\r\n'), 'utf8');
    case 'cr':
      return Buffer.from(text().replace(/\n/g, '\r'), 'utf8');
    case 'duplicate-line': {
      const ls = text().split('\n');
      const i = e.at % ls.length;
      ls.splice(i, 0, ls[i]!);
      return Buffer.from(ls.join('\n'), 'utf8');
    }
    case 'duplicate-key': {
      // repeat one `"key": value` member right after itself (JSON.parse keeps the last silently)
      const t = text();
      const keys = [...t.matchAll(/"((?:[^"\\]|\\.)*)"\s*:\s*("(?:[^"\\]|\\.)*"|-?[\d.eE+-]+|true|false|null)/g)];
      if (!keys.length) return data;
      const m = keys[e.at % keys.length]!;
      const end = m.index + m[0].length;
      return Buffer.from(t.slice(0, end) + ',' + m[0].replace(/:\s*.*/s, ': 0') + t.slice(end), 'utf8');
    }
    case 'binary': {
      const out = Buffer.from(data);
      const p = pos(e.at);
      return Buffer.concat([out.subarray(0, p), Buffer.from(e.bytes), out.subarray(p)]);
    }
  }
}

/** 0–2 structural edits then one text edit: the shape of most generated cases */
export const documentEdits = fc.record({ json: fc.array(jsonEdit, { maxLength: 2, size: 'xsmall' }), text: textEdit });
export type DocumentEdits = { json: JsonEdit[]; text: TextEdit };

export function mutateJsonText(doc: Json, edits: DocumentEdits, indent?: number): Uint8Array {
  const mutated = applyJsonEdits(doc, edits.json);
  return applyTextEdit(Buffer.from(JSON.stringify(mutated, null, indent), 'utf8'), edits.text);
}
