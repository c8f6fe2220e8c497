/**
 * The data model every optimizer in this folder works on: an ordered list of named float32 tensors
 * (flat; shapes do not matter to an element-wise update) and gradients keyed by the same names.
 *
 * Optimizer state is keyed by parameter name, not by position, because LESS reads Adam's moments per
 * name and a checkpoint must restore them into a model whose parameter list was rebuilt.
 */
import { LmtuneError } from '../util/errors.ts';

/** One trainable tensor. */
export interface NamedParam {
  readonly name: string;
  readonly data: Float32Array;
}

export type ParamList = readonly NamedParam[];

/** Gradients by parameter name; a parameter absent from the map is skipped (like torch's `p.grad is None`). */
export type GradMap = ReadonlyMap<string, Float32Array>;

/** Which parameters get weight decay: true means "decay this one". */
export type DecayFilter = (name: string) => boolean;

/**
 * A first-order optimizer. `step` updates the parameters in place. State is exported as named float32
 * tensors plus JSON scalars (per-parameter step counts), so a checkpoint restores it bit for bit.
 *
 * Tensor keys are `<slot>:<param name>` with torch's slot names (`exp_avg`, `exp_avg_sq`,
 * `momentum_buffer`, `square_avg`, `grad_avg`); scalar keys are `step:<param name>`.
 * `stateTensors()` returns the live buffers (serialize them before the next `step`).
 */
export interface Optimizer {
  readonly kind: string;
  step(params: ParamList, grads: GradMap, lr: number): void;
  stateTensors(): Map<string, Float32Array>;
  stateScalars(): Record<string, number>;
  /** Replaces the whole state with copies of the given tensors; checks every key and length. */
  loadState(tensors: ReadonlyMap<string, Float32Array>, scalars: Readonly<Record<string, number>>): void;
}

export function stateKey(slot: string, name: string): string {
  return `${slot}:${name}`;
}

/** Splits `<slot>:<param name>`; the slot never contains ':' while parameter names may. */
export function parseStateKey(key: string): { slot: string; name: string } {
  const i = key.indexOf(':');
  if (i <= 0) throw new LmtuneError('CHECKPOINT', `optimizer state key "${key}" is not of the form <slot>:<parameter name>`);
  return { slot: key.slice(0, i), name: key.slice(i + 1) };
}

export function checkGradShape(p: NamedParam, g: Float32Array): void {
  if (g.length !== p.data.length) {
    throw new LmtuneError('SHAPE', `gradient for "${p.name}" has ${g.length} elements, the parameter has ${p.data.length}`);
  }
}

export function checkFiniteLr(lr: number, who: string): void {
  if (!Number.isFinite(lr) || lr < 0) throw new LmtuneError('CONFIG', `${who}: learning rate must be a finite number >= 0, got ${lr}`);
}
