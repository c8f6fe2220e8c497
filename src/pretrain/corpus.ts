/**
 * The plain-English pretraining text for lmtune's embedded default model, all from ../shared/data:
 * tiny-shakespeare, WikiText-2's validation split (its test split stays untouched for perplexity), and
 * the unlabeled sentences of SST-2's *training* splits. No dev or test sentence of any labeled dataset
 * is read, so downstream evaluation on SST-2 test sentences stays clean.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';

export interface CorpusSource {
  name: string;
  path: string;
  documents(text: string): string[];
}

function jsonlField(field: string) {
  return (text: string): string[] =>
    text
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => String((JSON.parse(l) as Record<string, unknown>)[field] ?? '').replace(/\r$/, '').trim())
      .filter((s) => s.split(' ').length >= 4);
}

/** WikiText's tokenized form back to ordinary text: " @-@ " → "-", headings and <unk> lines dropped */
export function cleanWikitext(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('='))
    .map((l) => l.replace(/ @([-.,])@ /g, '$1').replace(/<unk>/g, 'something'));
}

export function defaultSources(shared: string): CorpusSource[] {
  return [
    { name: 'tinyshakespeare', path: join(shared, 'tinyshakespeare/input.txt'), documents: (t) => t.split(/\n\n+/).map((s) => s.trim()).filter(Boolean) },
    { name: 'wikitext2-valid', path: join(shared, 'wikitext2/valid.txt'), documents: cleanWikitext },
    { name: 'sst2-glue-train-sentences', path: join(shared, 'sst2/glue_train.jsonl'), documents: jsonlField('sentence') },
    { name: 'sst2-stsa-train-sentences', path: join(shared, 'sst2/stsa.binary.train.jsonl'), documents: jsonlField('text') },
  ];
}

export function readCorpus(sources: readonly CorpusSource[]): { name: string; documents: string[] }[] {
  return sources.map((s) => {
    if (!existsSync(s.path)) throw new LmtuneError('IO', `pretraining source '${s.name}' not found: ${s.path}`, 'pass --shared pointing at the shared data folder');
    return { name: s.name, documents: s.documents(readFileSync(s.path, 'utf8')) };
  });
}
