/**
 * LM-BFF's template language for masked LMs (Gao et al. 2021; `tokenize_multipart_input` in
 * princeton-nlp/LM-BFF and MeZO medium_models/src/dataset.py), parsed, rendered and tokenized the way the
 * reference does it: the template is split on `*`; each part is tokenized on its own and the ids are
 * concatenated (so token boundaries fall at part boundaries, exactly as in the reference).
 *
 *   *cls* *mask* *sep* *sep+*     special tokens (<s>, <mask>, </s>)
 *   *sent_i*                      sentence i
 *   *+sent_i*                     ' ' + sentence i
 *   *sent-_i*                     sentence i without its last character
 *   *sentl_i* / *+sentl_i*        first letter lower-cased (with a leading space)
 *   *sentl-_i*, *sentu_i*, *+sentu_i*, *+sentu-_i*   the remaining combinations
 *   other text                    literal, with '_' standing for a space; one-character literals are
 *                                 looked up as a single token (the reference's convert_tokens_to_ids),
 *                                 longer ones are encoded
 */
import { LmtuneError } from '../util/errors.ts';
import type { TextTokenizer } from '../models/api.ts';

export type MaskedPart =
  | { readonly kind: 'special'; readonly token: 'cls' | 'mask' | 'sep' }
  | { readonly kind: 'text'; readonly text: string }
  | {
      readonly kind: 'sent';
      readonly index: number;
      readonly leadingSpace: boolean;
      readonly firstCase: 'keep' | 'lower' | 'upper';
      readonly dropLastChar: boolean;
    };

const SENT = /^(\+?)sent(l|u)?(-?)_(\d+)$/;

/** Parses an LM-BFF template string such as `*cls**sent_0*_It_was*mask*.*sep+*`. */
export function parseLmBffTemplate(template: string): MaskedPart[] {
  const parts: MaskedPart[] = [];
  for (const p of template.split('*')) {
    if (p === '') continue;
    if (p === 'cls' || p === 'bos') parts.push({ kind: 'special', token: 'cls' });
    else if (p === 'mask') parts.push({ kind: 'special', token: 'mask' });
    else if (p === 'sep' || p === 'sep+' || p === 'eos') parts.push({ kind: 'special', token: 'sep' });
    else {
      const m = SENT.exec(p);
      if (m) {
        parts.push({
          kind: 'sent',
          index: Number(m[4]),
          leadingSpace: m[1] === '+',
          firstCase: m[2] === 'l' ? 'lower' : m[2] === 'u' ? 'upper' : 'keep',
          dropLastChar: m[3] === '-',
        });
      } else if (/^\+?sent/.test(p) || /^label/.test(p)) {
        throw new LmtuneError('CONFIG', `template part *${p}* is not supported`, 'use *sent_i*, *+sent_i*, *sent-_i*, *sentl_i*, *+sentl_i*, *cls*, *mask*, *sep+*');
      } else parts.push({ kind: 'text', text: p.replace(/_/g, ' ') });
    }
  }
  const masks = parts.filter((p) => p.kind === 'special' && p.token === 'mask').length;
  if (masks !== 1) throw new LmtuneError('CONFIG', `template ${JSON.stringify(template)} has ${masks} *mask* parts; exactly one is needed`);
  return parts;
}

/** The sentence as a `sent` part transforms it (before tokenization). */
export function sentenceText(part: Extract<MaskedPart, { kind: 'sent' }>, sentence: string): string {
  let t = sentence;
  if (part.firstCase === 'lower') t = t.slice(0, 1).toLowerCase() + t.slice(1);
  else if (part.firstCase === 'upper') t = t.slice(0, 1).toUpperCase() + t.slice(1);
  if (part.dropLastChar) t = t.slice(0, -1);
  return part.leadingSpace ? ' ' + t : t;
}

/** Renders the template as text with RoBERTa's special-token spellings: what the spec tables show. */
export function renderMasked(parts: readonly MaskedPart[], sentences: readonly string[]): string {
  return parts
    .map((p) => {
      if (p.kind === 'special') return p.token === 'cls' ? '<s>' : p.token === 'mask' ? '<mask>' : '</s>';
      if (p.kind === 'text') return p.text;
      return sentenceText(p, sentenceAt(sentences, p.index));
    })
    .join('');
}

function sentenceAt(sentences: readonly string[], i: number): string {
  const s = sentences[i];
  if (s === undefined) throw new LmtuneError('CONFIG', `template refers to sentence ${i} but the task provides ${sentences.length}`);
  return s;
}

export interface MaskedInput {
  readonly input: number[];
  readonly maskPos: number;
}

/**
 * Token ids of the filled template. Sentence 0 is cut to `firstSentLimit` tokens and later sentences to
 * `otherSentLimit`; the whole input is then cut at its tail to `maxLength` (the reference default); the mask
 * must survive the cut.
 */
export function encodeMasked(
  parts: readonly MaskedPart[],
  sentences: readonly string[],
  tok: TextTokenizer,
  opts: { maxLength: number; firstSentLimit?: number; otherSentLimit?: number },
): MaskedInput {
  const ids: number[] = [];
  for (const p of parts) {
    if (p.kind === 'special') ids.push(specialId(tok, p.token));
    else if (p.kind === 'text') {
      // one character: looked up as a token, as the reference does; fall back to encoding (e.g. ' ')
      const id = p.text.length === 1 ? tok.tokenToId(p.text) : null;
      if (id !== null) ids.push(id);
      else ids.push(...tok.encode(p.text));
    } else {
      let t = tok.encode(sentenceText(p, sentenceAt(sentences, p.index)));
      const limit = p.index === 0 ? opts.firstSentLimit : opts.otherSentLimit;
      if (limit !== undefined) t = t.slice(0, limit);
      ids.push(...t);
    }
  }
  const input = ids.slice(0, opts.maxLength);
  const maskId = specialId(tok, 'mask');
  const maskPos = input.indexOf(maskId);
  if (maskPos < 0) {
    throw new LmtuneError('DATA', `the mask falls beyond max length ${opts.maxLength} (input has ${ids.length} tokens)`, 'raise the max length or set a sentence limit');
  }
  return { input, maskPos };
}

function specialId(tok: TextTokenizer, token: 'cls' | 'mask' | 'sep'): number {
  const id = token === 'cls' ? tok.bosId : token === 'mask' ? tok.maskId : tok.eosId;
  if (id === null) {
    throw new LmtuneError('TOKENIZER', `this tokenizer has no ${token === 'cls' ? 'BOS/CLS' : token === 'mask' ? 'mask' : 'EOS/SEP'} token`, 'masked-LM templates need a masked LM tokenizer (RoBERTa family)');
  }
  return id;
}

/** Label word ids: ' ' + word must be exactly one token (asserted by the reference too). */
export function labelWordIds(words: readonly string[], tok: TextTokenizer): number[] {
  return words.map((w) => {
    const ids = tok.encode(' ' + w);
    if (ids.length !== 1) {
      throw new LmtuneError('TOKENIZER', `label word ${JSON.stringify(' ' + w)} is ${ids.length} tokens for this tokenizer; it must be one`, 'pick label words that are single tokens with a leading space');
    }
    return ids[0]!;
  });
}
