/**
 * What every zeroth-order method in this folder is: a step that runs forward passes at perturbed
 * weights and updates them in place, and a record of a few scalars from which `replay` redoes the step
 * bit for bit (no forward pass) starting from the weights before it.
 */
import type { ParamList } from '../types.ts';
import type { ZDistribution } from '../zstream.ts';
import { Tape } from './tape.ts';

/** One logged step: the step seed (every direction derives from it), the lr, and the method's scalars. */
export interface ZoRecord {
  seed: number;
  lr: number;
  values: number[];
}

export interface ZoStepResult {
  /** the loss the method logs as the training loss (documented per method) */
  loss: number;
  forwardPasses: number;
  record: ZoRecord;
}

/** Settings shared by the methods; each reads the ones it needs. */
export interface ZoSettings {
  eps: number;
  distribution: ZDistribution;
  /** n-SPSA samples (sgd, momentum, adam), FZOO's N */
  samples: number;
  /** weight decay: the MeZO rules only (the others refuse wd > 0) */
  weightDecay: number;
  decayFilter?: (name: string) => boolean;
  /** ZO momentum β */
  momentum: number;
  beta1: number;
  beta2: number;
  adamEps: number;
  /** sparse masks: fraction of the entries (or tensors) perturbed */
  density: number;
  /** HiZOO's smoothing α of the diagonal Hessian */
  hessianSmooth: number;
}

export const DEFAULT_ZO_SETTINGS: ZoSettings = {
  eps: 1e-3,
  distribution: 'gaussian',
  samples: 1,
  weightDecay: 0,
  momentum: 0.9,
  beta1: 0.9,
  beta2: 0.999,
  adamEps: 1e-8,
  density: 0.25,
  hessianSmooth: 1e-8,
};

export interface ZoMethod {
  readonly name: string;
  readonly params: ParamList;
  /** the method's settings and anything derived from the initial weights, as JSON (trajectory header) */
  config(): Record<string, unknown>;
  /** bytes kept beyond the weights, the forward pass and O(tile) scratch */
  stateBytes(): number;
  /** forward passes one step runs */
  passesPerStep(): number;
  step(seed: number, lossAt: () => Promise<number>, lr: number): Promise<ZoStepResult>;
  replay(r: ZoRecord): Promise<void>;
  stateTensors(): Map<string, Float32Array>;
  stateScalars(): Record<string, number>;
  loadState(tensors: ReadonlyMap<string, Float32Array>, scalars: Readonly<Record<string, number>>): void;
}

/** A method written once against a Tape (tape.ts), so step and replay cannot drift apart. */
export abstract class TapedMethod implements ZoMethod {
  abstract readonly name: string;
  protected readonly xs: Float32Array[];

  constructor(
    readonly params: ParamList,
    protected readonly s: ZoSettings,
  ) {
    this.xs = params.map((p) => p.data);
  }

  /** the step; returns the loss it logs */
  protected abstract run(tape: Tape, seed: number, lr: number): Promise<number>;
  abstract config(): Record<string, unknown>;
  abstract passesPerStep(): number;

  stateBytes(): number {
    return 0;
  }

  async step(seed: number, lossAt: () => Promise<number>, lr: number): Promise<ZoStepResult> {
    const tape = new Tape(lossAt, null, this.name);
    const loss = await this.run(tape, seed, lr);
    return { loss, forwardPasses: tape.passes, record: { seed, lr, values: [...tape.values] } };
  }

  async replay(r: ZoRecord): Promise<void> {
    const tape = new Tape(null, r.values, this.name);
    await this.run(tape, r.seed, r.lr);
    tape.finish();
  }

  stateTensors(): Map<string, Float32Array> {
    return new Map();
  }
  stateScalars(): Record<string, number> {
    return {};
  }
  loadState(_tensors: ReadonlyMap<string, Float32Array>, _scalars: Readonly<Record<string, number>>): void {}
}

export function totalElements(params: ParamList): number {
  return params.reduce((s, p) => s + p.data.length, 0);
}
