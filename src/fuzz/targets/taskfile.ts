/**
 * Task files: YAML and JSON tasks (classification with label words, generation with answers) with keys
 * edited as data (wrong types, missing, extra, duplicate) and as text (YAML indentation, tabs, cut,
 * BOM/CRLF); loaded with `resolveTask` as every command does, then asked to parse one data row.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import YAML from 'yaml';
import { resolveTask } from '../../tasks/index.ts';
import { applyJsonEdits, applyTextEdit, documentEdits, type DocumentEdits, type Json } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';

export interface TaskFileInput {
  seed: number;
  yaml: boolean;
  edits: DocumentEdits;
}

const SEEDS: Json[] = [
  { name: 'movie', kind: 'classification', prompt: 'Review: {text}\nSentiment:', masked_prompt: '{text} It was{mask}.', labels: { neg: 'terrible', pos: 'great' }, metric: 'macro-f1' },
  { name: 'yn', prompt: '{premise} Question: {hypothesis}?', labels: ['no', 'yes'] },
  { name: 'qa', kind: 'generation', prompt: '{{Q}} {question}\nA:', answers_field: 'gold', max_new_tokens: 8, stop: ['\n'] },
];

export const taskFileTarget: FuzzTarget<TaskFileInput> = {
  name: 'taskfile',
  description: 'YAML / JSON task files through resolveTask, then one row through task.parse',
  input: fc.record({ seed: fc.nat(SEEDS.length - 1), yaml: fc.boolean(), edits: documentEdits }),
  prepare(i, dir) {
    const doc = applyJsonEdits(SEEDS[i.seed]!, i.edits.json);
    const text = i.yaml ? YAML.stringify(doc) : JSON.stringify(doc, null, 2);
    writeFileSync(join(dir, i.yaml ? 'task.yaml' : 'task.json'), applyTextEdit(Buffer.from(text, 'utf8'), i.edits.text));
  },
  async run(i, dir) {
    const file = join(dir, i.yaml ? 'task.yaml' : 'task.json');
    const task = resolveTask(file);
    task.parse({ file: join(dir, 'd.jsonl'), line: 1, value: { text: 'x', label: 'pos', premise: 'p', hypothesis: 'h', question: 'q', gold: ['a'] } });
    if (task.kind === 'classification' && new Set(task.labelWords).size !== task.labelWords.length) {
      throw new Error(`silent garbage: two classes share a label word (${JSON.stringify(task.labelWords)})`);
    }
  },
};
