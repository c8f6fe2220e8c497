/**
 * The order training examples are drawn in: a fresh seeded permutation per epoch, drawn across epoch
 * boundaries, so that a batch is a pure function of (seed, epoch, cursor) — the two numbers a checkpoint
 * stores. Pure code: the CLI's loop, Quad training, zo-bench and the page's session share it, so a run
 * continued in the other runtime draws the same batches.
 */
import { Rng } from '../util/rng.ts';

export class DataOrder {
  constructor(
    readonly n: number,
    readonly seed: number,
    public epoch = 0,
    public cursor = 0,
  ) {}
  private perm: number[] | null = null;
  private permEpoch = -1;
  next(k: number): number[] {
    const out: number[] = [];
    while (out.length < k) {
      if (this.permEpoch !== this.epoch) {
        this.perm = new Rng(`data/${this.seed}/${this.epoch}`).permutation(this.n);
        this.permEpoch = this.epoch;
      }
      out.push(this.perm![this.cursor++]!);
      if (this.cursor >= this.n) {
        this.epoch++;
        this.cursor = 0;
      }
    }
    return out;
  }
}
