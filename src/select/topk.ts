/**
 * Ranking order of LESS selection and a bounded top-k heap over it.
 *
 * The reference sorts with `torch.sort(descending=True)`, which is unstable: tied scores come out in an
 * order that depends on the device. Here the order is total and documented: score descending, then pool
 * index ascending. The heap keeps the k best of a stream in O(k) memory, so selection never needs every
 * row's feature (or even every score) at once.
 */

/** true when (sa, ia) ranks before (sb, ib): higher score first, then lower pool index */
export function ranksBefore(sa: number, ia: number, sb: number, ib: number): boolean {
  return sa > sb || (sa === sb && ia < ib);
}

/** The k best (score, index) pairs of a stream; the root is the worst kept entry. */
export class TopK {
  private readonly scores: Float64Array;
  private readonly index: Float64Array;
  private n = 0;

  constructor(readonly k: number) {
    this.scores = new Float64Array(Math.max(0, k));
    this.index = new Float64Array(Math.max(0, k));
  }

  get size(): number {
    return this.n;
  }

  /** worse(a, b): entry a ranks after entry b (min-heap on the ranking) */
  private worse(a: number, b: number): boolean {
    return ranksBefore(this.scores[b]!, this.index[b]!, this.scores[a]!, this.index[a]!);
  }

  private swap(a: number, b: number): void {
    const s = this.scores[a]!;
    const i = this.index[a]!;
    this.scores[a] = this.scores[b]!;
    this.index[a] = this.index[b]!;
    this.scores[b] = s;
    this.index[b] = i;
  }

  push(score: number, idx: number): void {
    if (this.k <= 0) return;
    if (this.n < this.k) {
      let c = this.n++;
      this.scores[c] = score;
      this.index[c] = idx;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!this.worse(c, p)) break;
        this.swap(c, p);
        c = p;
      }
      return;
    }
    // replace the root only when the new entry ranks before the worst kept one
    if (!ranksBefore(score, idx, this.scores[0]!, this.index[0]!)) return;
    this.scores[0] = score;
    this.index[0] = idx;
    let c = 0;
    for (;;) {
      const l = 2 * c + 1;
      const r = l + 1;
      let m = c;
      if (l < this.n && this.worse(l, m)) m = l;
      if (r < this.n && this.worse(r, m)) m = r;
      if (m === c) break;
      this.swap(c, m);
      c = m;
    }
  }

  /** the kept entries, best first */
  sorted(): { score: number; index: number }[] {
    const out: { score: number; index: number }[] = [];
    for (let i = 0; i < this.n; i++) out.push({ score: this.scores[i]!, index: this.index[i]! });
    return out.sort((a, b) => (ranksBefore(a.score, a.index, b.score, b.index) ? -1 : ranksBefore(b.score, b.index, a.score, a.index) ? 1 : 0));
  }
}

/** every index of `scores` in ranking order (a full sort, for scores.csv); NaN (unscored) rows are left out */
export function rankAll(scores: ArrayLike<number>): Int32Array {
  const idx: number[] = [];
  for (let i = 0; i < scores.length; i++) if (!Number.isNaN(scores[i]!)) idx.push(i);
  return Int32Array.from(idx).sort((a, b) => {
    const sa = scores[a]!;
    const sb = scores[b]!;
    return sa > sb ? -1 : sa < sb ? 1 : a - b;
  });
}
