/**
 * One code path for a ZO step and its replay. A method's step is written once against a Tape: in a
 * training step `loss()` runs a forward pass and `keep(x)` records every scalar the update depends on
 * (projected gradients, a curvature, a choice); in a replay `loss()` returns NaN without running
 * anything and `keep` returns the recorded scalars in order. The perturbation passes between them run
 * in both modes, so a replay performs exactly the float operations of the step, which is why it is
 * bit-exact.
 */
import { LmtuneError } from '../../util/errors.ts';

export class Tape {
  /** forward passes run (0 in a replay) */
  passes = 0;
  readonly values: number[] = [];
  private next = 0;

  constructor(
    private readonly lossAt: (() => Promise<number>) | null,
    private readonly recorded: readonly number[] | null = null,
    private readonly who = 'zo',
  ) {}

  get replaying(): boolean {
    return this.lossAt === null;
  }

  async loss(): Promise<number> {
    if (this.lossAt === null) return Number.NaN;
    const l = await this.lossAt();
    this.passes++;
    if (!Number.isFinite(l)) throw new LmtuneError('NUMERIC', `${this.who}: forward pass ${this.passes} of the step returned loss ${l}`, 'lower the learning rate or eps; the weights are left as perturbed');
    return l;
  }

  /** Records `x` (a step) or returns the next recorded scalar (a replay). */
  keep(x: number): number {
    if (this.recorded !== null) {
      if (this.next >= this.recorded.length) throw new LmtuneError('CHECKPOINT', `${this.who} replay: the record holds ${this.recorded.length} scalars, the method needs more`);
      return this.recorded[this.next++]!;
    }
    if (!Number.isFinite(x)) throw new LmtuneError('NUMERIC', `${this.who}: a step scalar is ${x}`, 'lower the learning rate or eps');
    this.values.push(x);
    return x;
  }

  /** After a replay: every recorded scalar must have been used. */
  finish(): void {
    if (this.recorded !== null && this.next !== this.recorded.length) {
      throw new LmtuneError('CHECKPOINT', `${this.who} replay: the record holds ${this.recorded.length} scalars, the method used ${this.next}`);
    }
  }
}
