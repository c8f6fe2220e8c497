/**
 * Data files: SST-2 (classification), COPA (multiple choice) and SQuAD (generation) rows written as
 * JSONL, TSV, CSV or Kim's "<label> <text>" lines, with odd cell values (unicode, quotes, tabs, empty,
 * wrong label types) and text damage (BOM, CRLF, cut, NUL bytes, binary); read with `loadExamples` and
 * encoded for the embedded model with a short --max-length, as `lmtune eval` and `train` do.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { loadTokenizer, type HfTextTokenizer } from '../../models/tokenizer.ts';
import { encodeCausal, loadExamples, resolveTask } from '../../tasks/index.ts';
import { applyTextEdit, rarely, textEdit, type TextEdit } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';
import { diskFolder } from '../../node/folder.ts';

const ASSET = new URL('../../../assets/tiny-english-lm/', import.meta.url).pathname;
type Cell = string | number | boolean | null | string[];

export interface DataInput {
  task: 'sst2' | 'copa' | 'squad';
  format: 'jsonl' | 'tsv' | 'csv' | 'kim' | 'txt';
  rows: Record<string, Cell>[];
  /** per row, a key to drop */
  drop: number | null;
  maxLength: number;
  text: TextEdit;
}

const oddString = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('a fine film', 'It rained.', 'The man fell.', 'Who won?', 'Paris') },
  { weight: 1, arbitrary: fc.string({ maxLength: 12, unit: 'grapheme' }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', 'a\tb', 'a,b', 'say "hi"', 'line\nbreak', '\u0000', '\ufeff', '😀😀', 'x'.repeat(300)) },
);
const oddLabel: fc.Arbitrary<Cell> = fc.oneof({ weight: 6, arbitrary: fc.constantFrom<Cell>(0, 1) }, { weight: 1, arbitrary: fc.constantFrom<Cell>(2, -1, 1.5, '1', 'pos', true, null, '', 1e21) });

const row = (task: DataInput['task']): fc.Arbitrary<Record<string, Cell>> => {
  switch (task) {
    case 'sst2':
      return fc.record({ sentence: oddString, label: oddLabel });
    case 'copa':
      return fc.record({ premise: oddString, choice1: oddString, choice2: oddString, question: fc.constantFrom<Cell>('cause', 'effect', 'effect', 'why'), label: oddLabel });
    case 'squad':
      return fc.record({ title: fc.constant<Cell>('t'), context: oddString, question: oddString, answers: fc.oneof(fc.array(oddString, { maxLength: 2 }).map((a): Cell => a), oddString) });
  }
};

const input: fc.Arbitrary<DataInput> = fc.constantFrom('sst2' as const, 'copa' as const, 'squad' as const).chain((task) =>
  fc.record({
    task: fc.constant(task),
    format: fc.constantFrom('jsonl' as const, 'tsv' as const, 'csv' as const, 'kim' as const, 'txt' as const),
    rows: fc.oneof({ weight: 9, arbitrary: fc.array(row(task), { minLength: 1, maxLength: 5 }) }, { weight: 1, arbitrary: fc.constant<Record<string, Cell>[]>([]) }),
    drop: rarely(fc.nat()),
    maxLength: fc.constantFrom(2, 4, 8, 64, 1024),
    text: textEdit,
  }),
);

function csvCell(v: Cell): string {
  const s = Array.isArray(v) ? v.join('|') : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function serialize(i: DataInput): string {
  const rows = i.rows.map((r, k) => {
    if (i.drop === null) return r;
    const keys = Object.keys(r);
    const out = { ...r };
    delete out[keys[(i.drop + k) % keys.length]!];
    return out;
  });
  const header = Object.keys(i.rows[0] ?? { sentence: '', label: 0 });
  switch (i.format) {
    case 'jsonl':
      return rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
    case 'tsv':
      return [header.join('\t'), ...rows.map((r) => header.map((h) => String(r[h] ?? '')).join('\t'))].join('\n') + '\n';
    case 'csv':
      return [header.join(','), ...rows.map((r) => header.map((h) => csvCell(r[h] ?? '')).join(','))].join('\r\n') + '\r\n';
    case 'kim':
    case 'txt':
      return rows.map((r) => `${String(r.label ?? '')} ${String(r.sentence ?? r.premise ?? r.question ?? '')}`).join('\n') + '\n';
  }
}

let tok: Promise<HfTextTokenizer> | null = null;

export const dataTarget: FuzzTarget<DataInput> = {
  name: 'data',
  description: 'JSONL / TSV / CSV / Kim data files through loadExamples + encodeCausal (sst2, copa, squad)',
  input,
  prepare(i, dir) {
    writeFileSync(join(dir, `data.${i.format}`), applyTextEdit(Buffer.from(serialize(i), 'utf8'), i.text));
  },
  async run(i, dir) {
    const file = join(dir, `data.${i.format}`);
    const task = resolveTask(i.task);
    const examples = loadExamples(task, file);
    tok ??= loadTokenizer(diskFolder(ASSET), 'gpt2');
    const t = await tok;
    for (const ex of examples) encodeCausal(task, ex, t, { maxLength: i.maxLength });
  },
};
