/**
 * The model's tensors, by canonical Hugging Face name, each in its own Float32Array. The executors read
 * these arrays directly (zero-copy on ort), so optimizers and MeZO update them in place.
 */
import { LmtuneError } from '../util/errors.ts';

export interface WeightTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export class WeightStore {
  private readonly map = new Map<string, WeightTensor>();

  /** `shared` puts every tensor in a SharedArrayBuffer so worker threads can update it in place */
  constructor(entries: Iterable<readonly [string, WeightTensor]> = [], readonly shared = false) {
    for (const [k, v] of entries) this.set(k, v.shape, v.data);
  }

  set(name: string, shape: readonly number[], data: Float32Array): void {
    const n = shape.reduce((p, d) => p * d, 1);
    if (n !== data.length) throw new LmtuneError('SHAPE', `weight '${name}': shape [${shape.join(', ')}] needs ${n} values, got ${data.length}`);
    let arr = data;
    if (this.shared && !(data.buffer instanceof SharedArrayBuffer)) {
      arr = new Float32Array(new SharedArrayBuffer(data.byteLength));
      arr.set(data);
    }
    this.map.set(name, { shape: [...shape], data: arr });
  }

  get(name: string): WeightTensor {
    const t = this.map.get(name);
    if (!t) throw new LmtuneError('CHECKPOINT', `weight '${name}' is not loaded`);
    return t;
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  names(): string[] {
    return [...this.map.keys()];
  }

  entries(): IterableIterator<[string, WeightTensor]> {
    return this.map.entries();
  }

  delete(name: string): void {
    this.map.delete(name);
  }

  get size(): number {
    return this.map.size;
  }

  numParams(filter: (name: string) => boolean = () => true): number {
    let n = 0;
    for (const [k, v] of this.map) if (filter(k)) n += v.data.length;
    return n;
  }

  /** deep copy (for "before" snapshots in tests and for the initial checkpoint of a MeZO run) */
  clone(): WeightStore {
    return new WeightStore([...this.map].map(([k, v]) => [k, { shape: v.shape, data: Float32Array.from(v.data) }] as const), this.shared);
  }
}
