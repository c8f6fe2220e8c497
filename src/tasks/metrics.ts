/**
 * Metrics, as MeZO computes them (large_models/metrics.py) plus macro-F1 for LM-BFF-style reporting.
 * Values are fractions in [0, 1] (papers print them ×100).
 */

const PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'); // Python's string.punctuation
const ARTICLES = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu; // Python re \b(a|an|the)\b on str

/** SQuAD answer normalization: lower-case, drop ASCII punctuation, drop a/an/the, collapse whitespace. */
export function normalizeAnswer(s: string): string {
  const lower = s.toLowerCase();
  let noPunc = '';
  for (const ch of lower) if (!PUNCTUATION.has(ch)) noPunc += ch;
  return noPunc
    .replace(ARTICLES, ' ')
    .split(/\s+/)
    .filter((w) => w !== '')
    .join(' ');
}

function tokens(s: string): string[] {
  const n = normalizeAnswer(s);
  return n === '' ? [] : n.split(' ');
}

/** Token-multiset F1 of one prediction against one gold answer. */
export function tokenF1(prediction: string, gold: string): number {
  const p = tokens(prediction);
  const g = tokens(gold);
  const counts = new Map<string, number>();
  for (const t of g) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of p) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      same++;
      counts.set(t, c - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length;
  const recall = same / g.length;
  return (2 * precision * recall) / (precision + recall);
}

/**
 * SQuAD F1: the best token F1 over the gold answers. As in MeZO's metric, a first gold answer of
 * "CANNOTANSWER" / "no answer" (SQuAD v2, QuAC) asks for an exact normalized match instead.
 */
export function squadF1(prediction: string, golds: readonly string[]): number {
  if (golds.length === 0) throw new Error('squadF1: no gold answers');
  if (golds[0] === 'CANNOTANSWER' || golds[0] === 'no answer') return normalizeAnswer(golds[0]) === normalizeAnswer(prediction) ? 1 : 0;
  return Math.max(...golds.map((g) => tokenF1(prediction, g)));
}

/** Exact match after normalization, against any gold answer. */
export function exactMatch(prediction: string, golds: readonly string[]): boolean {
  const p = normalizeAnswer(prediction);
  return golds.some((g) => normalizeAnswer(g) === p);
}

/** Accuracy where an example counts as right when its prediction is any of its correct indices (ReCoRD). */
export function accuracy(predictions: readonly number[], correct: readonly (readonly number[])[]): number {
  if (predictions.length !== correct.length) throw new Error('accuracy: length mismatch');
  if (predictions.length === 0) return 0;
  let right = 0;
  predictions.forEach((p, i) => {
    if (correct[i]!.includes(p)) right++;
  });
  return right / predictions.length;
}

/**
 * Macro-averaged F1 over the classes that occur in the gold labels or the predictions (scikit-learn's
 * `f1_score(average='macro')`), with F1 = 0 for a class whose precision or recall is undefined.
 */
export function macroF1(predictions: readonly number[], gold: readonly number[]): number {
  if (predictions.length !== gold.length) throw new Error('macroF1: length mismatch');
  const classes = [...new Set([...gold, ...predictions])].sort((a, b) => a - b);
  if (classes.length === 0) return 0;
  let sum = 0;
  for (const c of classes) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    predictions.forEach((p, i) => {
      const g = gold[i]!;
      if (p === c && g === c) tp++;
      else if (p === c) fp++;
      else if (g === c) fn++;
    });
    sum += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return sum / classes.length;
}

/** ReCoRD's official per-example scores for a predicted entity: best EM and best token F1 over the answers. */
export function recordScores(prediction: string, answers: readonly string[]): { em: number; f1: number } {
  return { em: exactMatch(prediction, answers) ? 1 : 0, f1: Math.max(...answers.map((a) => tokenF1(prediction, a))) };
}

export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Index of the largest score, the first on ties (numpy argmax). */
export function argmax(xs: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}
