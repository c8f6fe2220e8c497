/**
 * The bag-of-words baseline the probes are compared with: lower-cased word presence over the words that
 * occur at least `minCount` times in the training texts (the `maxWords` most frequent), the same
 * cross-validated logistic regression on top.
 */
export interface BowVocabulary {
  words: string[];
  index: Map<string, number>;
}

export function bowTokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+(?:'[\p{L}]+)?|[^\s\p{L}\p{N}]/gu) ?? [];
}

export function bowVocabulary(texts: readonly string[], opts: { minCount?: number; maxWords?: number } = {}): BowVocabulary {
  const counts = new Map<string, number>();
  for (const t of texts) for (const w of new Set(bowTokens(t))) counts.set(w, (counts.get(w) ?? 0) + 1);
  const minCount = opts.minCount ?? 2;
  // frequency, then the word itself: a deterministic order
  const words = [...counts.entries()]
    .filter(([, c]) => c >= minCount)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, opts.maxWords ?? 5000)
    .map(([w]) => w);
  return { words, index: new Map(words.map((w, i) => [w, i] as const)) };
}

/** presence features [n, |vocabulary|] */
export function bowFeatures(texts: readonly string[], vocab: BowVocabulary): Float64Array {
  const d = vocab.words.length;
  const x = new Float64Array(texts.length * d);
  texts.forEach((t, i) => {
    for (const w of bowTokens(t)) {
      const j = vocab.index.get(w);
      if (j !== undefined) x[i * d + j] = 1;
    }
  });
  return x;
}
