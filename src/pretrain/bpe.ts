/**
 * A byte-level BPE trainer producing GPT-2-format `vocab.json` + `merges.txt`, so lmtune can pretrain
 * a small model with a vocabulary sized for it (a 50k vocabulary would be most of a 1M-parameter model).
 * Same pre-tokenization regex and byte↦unicode map as GPT-2; merges are learned greedily by pair
 * frequency over the corpus's word counts (ties broken by the pair's string order, so the result is
 * deterministic), exactly the procedure whose rank-ordered application the tokenizer performs.
 */
import { LmtuneError } from '../util/errors.ts';

export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
export const END_OF_TEXT = '<|endoftext|>';

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to code points from 256 up */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const table = new Array<string>(256);
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i]!)));
  return table;
}

export interface BpeResult {
  vocab: Record<string, number>;
  merges: [string, string][];
}

/** counts of pre-tokenized words, each as its byte↦unicode string */
export function wordCounts(texts: Iterable<string>): Map<string, number> {
  const table = bytesToUnicode();
  const enc = new TextEncoder();
  const counts = new Map<string, number>();
  for (const t of texts) {
    for (const m of t.matchAll(GPT2_PATTERN)) {
      let w = '';
      for (const b of enc.encode(m[0])) w += table[b];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  return counts;
}

export function trainBpe(counts: Map<string, number>, vocabSize: number, opts: { minFrequency?: number } = {}): BpeResult {
  const table = bytesToUnicode();
  if (vocabSize < 257) throw new LmtuneError('CONFIG', `BPE vocabulary size must be at least 257 (256 bytes + end of text), got ${vocabSize}`);
  const vocab: Record<string, number> = {};
  table.forEach((c, i) => (vocab[c] = i));
  const words = [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([w, c]) => ({ syms: [...w], count: c }));
  // pair → count, pair → word indices containing it
  const pairCount = new Map<string, number>();
  const where = new Map<string, Set<number>>();
  const key = (a: string, b: string): string => `${a}\u0000${b}`;
  const addWord = (wi: number, sign: 1 | -1): void => {
    const { syms, count } = words[wi]!;
    for (let i = 0; i + 1 < syms.length; i++) {
      const k = key(syms[i]!, syms[i + 1]!);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * count);
      if (sign > 0) {
        let s = where.get(k);
        if (!s) where.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  words.forEach((_, i) => addWord(i, 1));
  const merges: [string, string][] = [];
  const minFreq = opts.minFrequency ?? 2;
  while (Object.keys(vocab).length < vocabSize - 1) {
    let best: string | null = null;
    let bestCount = 0;
    for (const [k, c] of pairCount) {
      if (c > bestCount || (c === bestCount && c > 0 && best !== null && k < best)) {
        best = k;
        bestCount = c;
      }
    }
    if (best === null || bestCount < minFreq) break;
    const [a, b] = best.split('\u0000') as [string, string];
    const merged = a + b;
    merges.push([a, b]);
    vocab[merged] = Object.keys(vocab).length;
    for (const wi of [...(where.get(best) ?? [])]) {
      addWord(wi, -1);
      const syms = words[wi]!.syms;
      const out: string[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          out.push(merged);
          i++;
        } else out.push(syms[i]!);
      }
      words[wi]!.syms = out;
      addWord(wi, 1);
    }
    pairCount.delete(best);
    where.delete(best);
    for (const [k, c] of pairCount) if (c <= 0) pairCount.delete(k);
  }
  vocab[END_OF_TEXT] = Object.keys(vocab).length;
  return { vocab, merges };
}

export function mergesText(merges: readonly [string, string][]): string {
  return '#version: 0.2\n' + merges.map(([a, b]) => `${a} ${b}`).join('\n') + '\n';
}
