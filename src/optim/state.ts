/**
 * Per-parameter optimizer state: a few float32 slots per parameter name plus a step count per name
 * (torch keeps `step` per parameter too). Shared by every optimizer here, including MeZO's momentum and
 * Adam variants, so checkpoints have one layout.
 */
import { LmtuneError } from '../util/errors.ts';
import { parseStateKey, stateKey } from './types.ts';

export type Allocate = (length: number) => Float32Array;

const heapAllocate: Allocate = (n) => new Float32Array(n);

export class NamedState {
  private readonly buffers = new Map<string, Float32Array>();
  private readonly steps = new Map<string, number>();

  constructor(
    readonly owner: string,
    readonly slots: readonly string[],
    private readonly allocate: Allocate = heapAllocate,
  ) {}

  /** The slots of `name`, created zero-filled on first use; throws if a loaded state has another length. */
  ensure(name: string, length: number): Float32Array[] {
    const out: Float32Array[] = [];
    for (const slot of this.slots) {
      const key = stateKey(slot, name);
      let b = this.buffers.get(key);
      if (b === undefined) {
        b = this.allocate(length);
        this.buffers.set(key, b);
      } else if (b.length !== length) {
        throw new LmtuneError(
          'CHECKPOINT',
          `${this.owner}: state "${key}" has ${b.length} elements but parameter "${name}" has ${length}`,
          'the checkpoint was written for a different model or a different set of trainable parameters',
        );
      }
      out.push(b);
    }
    if (!this.steps.has(name)) this.steps.set(name, 0);
    return out;
  }

  /** A slot of one parameter, or undefined before its first step. */
  peek(slot: string, name: string): Float32Array | undefined {
    return this.buffers.get(stateKey(slot, name));
  }

  step(name: string): number {
    return this.steps.get(name) ?? 0;
  }

  setStep(name: string, t: number): void {
    this.steps.set(name, t);
  }

  /** Live buffers, keys sorted so that serializing twice gives the same bytes. */
  tensors(): Map<string, Float32Array> {
    return new Map([...this.buffers.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  scalars(): Record<string, number> {
    const o: Record<string, number> = {};
    for (const name of [...this.steps.keys()].sort()) o[stateKey('step', name)] = this.steps.get(name)!;
    return o;
  }

  load(tensors: ReadonlyMap<string, Float32Array>, scalars: Readonly<Record<string, number>>): void {
    const buffers = new Map<string, Float32Array>();
    const names = new Set<string>();
    for (const [key, t] of tensors) {
      const { slot, name } = parseStateKey(key);
      if (!this.slots.includes(slot)) {
        throw new LmtuneError('CHECKPOINT', `${this.owner}: unexpected state tensor "${key}" (expected slots: ${this.slots.join(', ')})`);
      }
      const copy = this.allocate(t.length);
      copy.set(t);
      buffers.set(key, copy);
      names.add(name);
    }
    const steps = new Map<string, number>();
    for (const [key, v] of Object.entries(scalars)) {
      const { slot, name } = parseStateKey(key);
      if (slot !== 'step') throw new LmtuneError('CHECKPOINT', `${this.owner}: unexpected state scalar "${key}"`);
      if (!Number.isInteger(v) || v < 0) throw new LmtuneError('CHECKPOINT', `${this.owner}: state scalar "${key}" must be a non-negative integer, got ${v}`);
      steps.set(name, v);
      names.add(name);
    }
    for (const name of names) {
      let len = -1;
      for (const slot of this.slots) {
        const b = buffers.get(stateKey(slot, name));
        if (b === undefined) throw new LmtuneError('CHECKPOINT', `${this.owner}: state for "${name}" lacks slot "${slot}"`);
        if (len >= 0 && b.length !== len) throw new LmtuneError('CHECKPOINT', `${this.owner}: state slots of "${name}" have different lengths`);
        len = b.length;
      }
      if (!steps.has(name)) throw new LmtuneError('CHECKPOINT', `${this.owner}: state for "${name}" lacks its step count "step:${name}"`);
    }
    this.buffers.clear();
    this.steps.clear();
    for (const [k, b] of buffers) this.buffers.set(k, b);
    for (const [k, v] of steps) this.steps.set(k, v);
  }
}
