/**
 * Gradient accumulation over micro-batches: sums weight·g per parameter into float32 buffers (each
 * element added in float64, rounded once) and hands back the weighted mean. Weights let a loop average
 * by token count or example count; with all weights 1 the result is the plain mean of the micro-batches.
 */
import { LmtuneError } from '../util/errors.ts';
import type { GradMap, ParamList } from './types.ts';

export class GradAccumulator {
  private readonly sums = new Map<string, Float32Array>();
  private weight = 0;
  private count = 0;
  // `take` hands out the sum buffers themselves; they are zeroed lazily by the next `add`.
  private stale = false;
  /** what `writeTarget` last handed out: the sums themselves, the scratch set, or nothing */
  private pending: 'sums' | 'scratch' | null = null;
  private scratch: Map<string, Float32Array> | null = null;

  constructor(params: ParamList) {
    for (const p of params) this.sums.set(p.name, new Float32Array(p.data.length));
  }

  /** Number of micro-batches added since the last `take`. */
  get microBatches(): number {
    return this.count;
  }

  /**
   * Buffers the next micro-batch's gradients may be written into (onnxruntime writes them in place), to
   * be followed by `addWritten(weight)`. The first micro-batch after `take` or `reset` gets the sum
   * buffers themselves, so one micro-batch per step keeps a single copy of the gradients (0.5 GB for
   * GPT-2 small) instead of two; later micro-batches get a scratch set, allocated on first use.
   */
  writeTarget(): Map<string, Float32Array> {
    if (this.count === 0) {
      // whatever is written there is not a zero sum any more: a plain `add` must zero it first
      this.stale = true;
      this.pending = 'sums';
      return this.sums;
    }
    this.pending = 'scratch';
    this.scratch ??= new Map([...this.sums].map(([name, s]) => [name, new Float32Array(s.length)]));
    return this.scratch;
  }

  /**
   * Adds the gradients written into `writeTarget()`'s buffers (every one of them, whole) with `weight`,
   * bit for bit as `add` would.
   */
  addWritten(weight = 1): void {
    const which = this.pending;
    if (which === null) throw new LmtuneError('RUNTIME', 'gradient accumulation: addWritten() without writeTarget()');
    if (which === 'scratch') {
      this.add(this.scratch!, weight);
      return;
    }
    checkWeight(weight);
    this.pending = null;
    // `add` into zeroed sums computes 0 + w·g; the same here in place, the 0 + included: it turns −0 into
    // +0 as that addition did, so the sums are the same bytes either way
    for (const s of this.sums.values()) for (let i = 0; i < s.length; i++) s[i] = 0 + weight * s[i]!;
    this.weight += weight;
    this.count++;
    this.stale = false;
  }

  add(grads: GradMap, weight = 1): void {
    checkWeight(weight);
    this.pending = null;
    if (this.stale) this.reset();
    for (const [name, g] of grads) {
      const s = this.sums.get(name);
      if (s === undefined) throw new LmtuneError('SHAPE', `gradient accumulation: "${name}" is not a trainable parameter`);
      if (s.length !== g.length) throw new LmtuneError('SHAPE', `gradient accumulation: "${name}" has ${g.length} elements, expected ${s.length}`);
      for (let i = 0; i < s.length; i++) s[i] = s[i]! + weight * g[i]!;
    }
    this.weight += weight;
    this.count++;
  }

  /**
   * The weighted mean Σ wᵢgᵢ / Σ wᵢ (each element divided in float64, rounded once), computed in place in
   * the internal buffers. The returned arrays are reused: consume them before the next `add`.
   */
  take(): Map<string, Float32Array> {
    if (this.count === 0) throw new LmtuneError('RUNTIME', 'gradient accumulation: take() called before any add()');
    const w = this.weight;
    const out = new Map<string, Float32Array>();
    for (const [name, s] of this.sums) {
      if (w !== 1) for (let i = 0; i < s.length; i++) s[i] = s[i]! / w;
      out.set(name, s);
    }
    this.weight = 0;
    this.count = 0;
    this.stale = true;
    return out;
  }

  /** Drops everything added so far. */
  reset(): void {
    for (const s of this.sums.values()) s.fill(0);
    this.weight = 0;
    this.count = 0;
    this.stale = false;
    this.pending = null;
  }
}

function checkWeight(weight: number): void {
  if (!(weight > 0) || !Number.isFinite(weight)) throw new LmtuneError('CONFIG', `gradient accumulation: weight must be a finite number > 0, got ${weight}`);
}
