/**
 * Reading dataset files into raw records, each tagged with its file and 1-based line so every later
 * validation error can name the row. Formats: JSONL (the shared copies and HF exports), TSV with a
 * header (GLUE, LM-BFF k-shot folders), CSV (RFC 4180; header auto-detected) and the `label<space>text`
 * lines of Kim (2014)'s sentence-classification collection. A row that cannot be read is an error,
 * never skipped; only blank lines are ignored.
 */
import { LmtuneError } from '../util/errors.ts';
import { extensionOf, requireHost } from '../util/host.ts';

export type DataFormat = 'jsonl' | 'tsv' | 'csv' | 'kim';

export interface RawRecord {
  readonly file: string;
  /** 1-based line where the record starts */
  readonly line: number;
  readonly value: Readonly<Record<string, unknown>>;
}

export function dataError(file: string, line: number, problem: string, hint?: string): LmtuneError {
  return new LmtuneError('DATA', `${file}:${line}: ${problem}`, hint);
}

/** Reads and parses a dataset file; the format comes from the extension or, failing that, the content. */
export function readRecords(path: string, format?: DataFormat): RawRecord[] {
  const host = requireHost('reading a data file');
  if (!host.exists(path)) throw new LmtuneError('IO', `data file not found: ${path}`);
  const text = decodeText(host.readFile(path));
  return parseRecords(text, path, format ?? detectFormat(path, text));
}

/**
 * UTF-8 when the bytes are valid UTF-8, otherwise Latin-1: Kim's subj.all and TREC files are Latin-1 and
 * carry no marker. A leading byte-order mark is dropped.
 */
export function decodeText(bytes: Uint8Array): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // ISO-8859-1: each byte is its code point (TextDecoder's 'latin1' is windows-1252, which is not)
    const parts: string[] = [];
    for (let i = 0; i < bytes.length; i += 8192) parts.push(String.fromCharCode(...bytes.subarray(i, i + 8192)));
    text = parts.join('');
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

export function detectFormat(path: string, text: string): DataFormat {
  const ext = extensionOf(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.json' || ext === '.ndjson') return 'jsonl';
  if (ext === '.tsv') return 'tsv';
  if (ext === '.csv') return 'csv';
  const first = text.split(/\r?\n/).find((l) => l.trim() !== '') ?? '';
  if (first.trimStart().startsWith('{')) return 'jsonl';
  if (/^-?\d+ /.test(first)) return 'kim';
  if (first.includes('\t')) return 'tsv';
  throw new LmtuneError(
    'DATA',
    `${path}: cannot tell the file format from its name or first line`,
    'use a .jsonl, .tsv (with a header) or .csv file, or "<int label> <text>" lines',
  );
}

export function parseRecords(text: string, file: string, format: DataFormat): RawRecord[] {
  switch (format) {
    case 'jsonl':
      return parseJsonl(text, file);
    case 'tsv':
      return parseTsv(text, file);
    case 'csv':
      return parseCsv(text, file);
    case 'kim':
      return parseKim(text, file);
  }
}

function lines(text: string): string[] {
  const ls = text.split(/\r?\n/);
  if (ls.length > 0 && ls[ls.length - 1] === '') ls.pop();
  return ls;
}

function parseJsonl(text: string, file: string): RawRecord[] {
  const out: RawRecord[] = [];
  lines(text).forEach((l, i) => {
    if (l.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch (e) {
      throw dataError(file, i + 1, `not valid JSON (${(e as Error).message})`, 'each line of a JSONL file must be one JSON object');
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      throw dataError(file, i + 1, `expected a JSON object, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`);
    }
    out.push({ file, line: i + 1, value: v as Record<string, unknown> });
  });
  return out;
}

/** GLUE-style TSV: a header row, tab-separated cells, no quoting (GLUE files are written with QUOTE_NONE). */
function parseTsv(text: string, file: string): RawRecord[] {
  const ls = lines(text);
  const headerAt = ls.findIndex((l) => l.trim() !== '');
  if (headerAt < 0) return [];
  const header = ls[headerAt]!.split('\t').map((h) => h.trim());
  const out: RawRecord[] = [];
  for (let i = headerAt + 1; i < ls.length; i++) {
    const l = ls[i]!;
    if (l.trim() === '') continue;
    const cells = l.split('\t');
    // GLUE's SNLI files list label1 and gold_label in the header, but rows with five annotator labels
    // carry label1..label5: the gold label is always the last cell (LM-BFF reads line[-1])
    const glueExtraLabels = cells.length > header.length && header[header.length - 1] === 'gold_label';
    if (glueExtraLabels) {
      const value: Record<string, string> = {};
      header.slice(0, -1).forEach((h, j) => (value[h] = cells[j]!));
      value['gold_label'] = cells[cells.length - 1]!;
      out.push({ file, line: i + 1, value });
      continue;
    }
    if (cells.length !== header.length) {
      throw dataError(
        file,
        i + 1,
        `expected ${header.length} tab-separated columns (${header.join(', ')}), got ${cells.length}`,
        'a TSV file needs a header row and the same number of columns on every line',
      );
    }
    const value: Record<string, string> = {};
    header.forEach((h, j) => (value[h] = cells[j]!));
    out.push({ file, line: i + 1, value });
  }
  return out;
}

/**
 * RFC 4180 CSV (quoted cells may hold commas, quotes and newlines). The first row is a header unless its
 * first cell is an integer (LM-BFF's k-shot CSVs are headerless `label,text`); headerless columns are named
 * "0", "1", ...
 */
function parseCsv(text: string, file: string): RawRecord[] {
  const rows = csvRows(text, file);
  if (rows.length === 0) return [];
  const hasHeader = !/^-?\d+$/.test(rows[0]!.cells[0]!.trim());
  const width = rows[0]!.cells.length;
  const header = hasHeader ? rows[0]!.cells.map((h) => h.trim()) : Array.from({ length: width }, (_, j) => String(j));
  const out: RawRecord[] = [];
  for (const r of hasHeader ? rows.slice(1) : rows) {
    if (r.cells.length !== header.length) {
      throw dataError(file, r.line, `expected ${header.length} comma-separated columns, got ${r.cells.length}`);
    }
    const value: Record<string, string> = {};
    header.forEach((h, j) => (value[h] = r.cells[j]!));
    out.push({ file, line: r.line, value });
  }
  return out;
}

function csvRows(text: string, file: string): { line: number; cells: string[] }[] {
  const rows: { line: number; cells: string[] }[] = [];
  let line = 1;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const start = line;
    // a blank line is not a row
    if (text[i] === '\n' || (text[i] === '\r' && text[i + 1] === '\n')) {
      i += text[i] === '\r' ? 2 : 1;
      line++;
      continue;
    }
    const cells: string[] = [];
    let cell = '';
    for (;;) {
      if (text[i] === '"') {
        i++;
        for (;;) {
          if (i >= n) throw dataError(file, start, 'unterminated quoted cell', 'close every quoted CSV cell with "');
          const c = text[i]!;
          if (c === '"') {
            if (text[i + 1] === '"') {
              cell += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === '\n') line++;
          cell += c;
          i++;
        }
        if (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
          throw dataError(file, line, `unexpected character ${JSON.stringify(text[i])} after a quoted cell`);
        }
      } else {
        while (i < n && text[i] !== ',' && text[i] !== '\n' && !(text[i] === '\r' && text[i + 1] === '\n')) cell += text[i++];
      }
      cells.push(cell);
      cell = '';
      if (i < n && text[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    if (i < n) {
      i += text[i] === '\r' ? 2 : 1;
      line++;
    }
    rows.push({ line: start, cells });
  }
  return rows;
}

/** Kim (2014) format: "<int label> <text>" with a single space after the label. */
function parseKim(text: string, file: string): RawRecord[] {
  const out: RawRecord[] = [];
  lines(text).forEach((l, i) => {
    if (l.trim() === '') return;
    const m = /^(-?\d+) (.*)$/s.exec(l);
    if (!m) throw dataError(file, i + 1, `expected "<int label> <text>", got ${JSON.stringify(l.slice(0, 40))}`);
    out.push({ file, line: i + 1, value: { label: Number(m[1]), text: m[2]! } });
  });
  return out;
}
