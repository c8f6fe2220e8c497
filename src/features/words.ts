/**
 * Task words as token ids: each word w is the single token of " w" (the reference also tries "w" and
 * "w ", keeping whatever is one token; we keep the one form a causal LM sees after a space). A word that
 * is not one token is an error naming it, unless the caller asks to drop such words (the reference's
 * default lists do that), in which case the dropped words are returned so they can be reported.
 */
import { LmtuneError } from '../util/errors.ts';
import type { TextTokenizer } from '../models/api.ts';

export interface ResolvedWords {
  words: string[];
  ids: number[];
  /** words that are not one token (only when `dropMultiToken`) */
  dropped: { word: string; tokens: number }[];
}

export function resolveWords(tok: TextTokenizer, words: readonly string[], opts: { dropMultiToken?: boolean; what?: string } = {}): ResolvedWords {
  const what = opts.what ?? '--words';
  const out: ResolvedWords = { words: [], ids: [], dropped: [] };
  const seen = new Map<number, string>();
  for (const word of words) {
    if (word.trim() === '') throw new LmtuneError('CONFIG', `${what}: an empty word`, 'separate words with commas: --words great,terrible');
    const ids = tok.encode(` ${word}`);
    if (ids.length !== 1) {
      if (opts.dropMultiToken) {
        out.dropped.push({ word, tokens: ids.length });
        continue;
      }
      throw new LmtuneError('CONFIG', `${what}: '${word}' is ${ids.length} tokens (" ${word}" → ${ids.join(' ')}), not one`, 'subset features are the logits of single tokens; choose another word');
    }
    const id = ids[0]!;
    const twin = seen.get(id);
    if (twin !== undefined) throw new LmtuneError('CONFIG', `${what}: '${word}' and '${twin}' are the same token (${id})`);
    seen.set(id, word);
    out.words.push(word);
    out.ids.push(id);
  }
  if (out.ids.length === 0 && !opts.dropMultiToken) throw new LmtuneError('CONFIG', `${what}: no words`);
  return out;
}

/** "a,b, c" → ['a', 'b', 'c'] (a comma inside a word is not supported) */
export function parseWordList(flag: string, v: string): string[] {
  const words = v.split(',').map((w) => w.trim());
  if (words.some((w) => w === '')) throw new LmtuneError('CONFIG', `${flag}: an empty word in '${v}'`, 'separate words with single commas: great,terrible');
  return words;
}
