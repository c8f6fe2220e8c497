/**
 * A run folder's config.json and checkpoint state.json are read back on `--resume`, possibly after a
 * person edited them. Every value is checked before it is used, and an error names the file and the key
 * (e.g. `runs/x/checkpoint/state.json: "step" is -3, expected an integer in [0, 100]`).
 */
import { LmtuneError } from '../util/errors.ts';
import type { RunState } from './checkpoint.ts';
import type { OptimizerSpec, TrainConfig } from './options.ts';
import type { PeftSpec } from '../peft/spec.ts';
import { ZO_METHODS } from '../optim/zo/registry.ts';

type Obj = Record<string, unknown>;

class Checker {
  constructor(readonly file: string) {}
  fail(key: string, v: unknown, want: string): never {
    throw new LmtuneError('CHECKPOINT', `${this.file}: "${key}" is ${v === undefined ? 'missing' : JSON.stringify(v)}, expected ${want}`, 'the run folder was edited or is damaged; restore it or start a new run with --out');
  }
  obj(o: Obj, key: string): Obj {
    const v = o[key.split('.').pop()!];
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(key, v, 'an object');
    return v as Obj;
  }
  int(o: Obj, key: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = o[key.split('.').pop()!];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) this.fail(key, v, `an integer in [${min}, ${max}]`);
    return v;
  }
  num(o: Obj, key: string, min: number, max = Infinity): number {
    const v = o[key.split('.').pop()!];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) this.fail(key, v, `a finite number in [${min}, ${max}]`);
    return v;
  }
  str(o: Obj, key: string): string {
    const v = o[key.split('.').pop()!];
    if (typeof v !== 'string' || v === '') this.fail(key, v, 'a non-empty string');
    return v;
  }
  bool(o: Obj, key: string): boolean {
    const v = o[key.split('.').pop()!];
    if (typeof v !== 'boolean') this.fail(key, v, 'true or false');
    return v;
  }
  oneOf<T extends string>(o: Obj, key: string, choices: readonly T[]): T {
    const v = o[key.split('.').pop()!];
    if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) this.fail(key, v, `one of ${choices.join(', ')}`);
    return v as T;
  }
  nullable<T>(o: Obj, key: string, read: () => T): T | null {
    return o[key.split('.').pop()!] === null ? null : read();
  }
}

function optimizer(c: Checker, o: Obj): OptimizerSpec {
  return {
    name: c.oneOf(o, 'optimizer.name', ['sgd', 'sgdm', 'rmsprop', 'adam', 'adamw', 'mezo'] as const),
    lr: c.num(o, 'optimizer.lr', 0),
    weightDecay: c.num(o, 'optimizer.weightDecay', 0),
    momentum: c.num(o, 'optimizer.momentum', 0, 1),
    momentumForm: c.oneOf(o, 'optimizer.momentumForm', ['pytorch', 'ema'] as const),
    nesterov: c.bool(o, 'optimizer.nesterov'),
    beta1: c.num(o, 'optimizer.beta1', 0, 1),
    beta2: c.num(o, 'optimizer.beta2', 0, 1),
    eps: c.num(o, 'optimizer.eps', 0),
    epsMode: c.oneOf(o, 'optimizer.epsMode', ['outside', 'inside'] as const),
    zoEps: c.num(o, 'optimizer.zoEps', 0),
    zoSamples: c.int(o, 'optimizer.zoSamples', 1, 1_000_000),
    zoDistribution: c.oneOf(o, 'optimizer.zoDistribution', ['gaussian', 'rademacher'] as const),
    zoRule: c.oneOf(o, 'optimizer.zoRule', ['sgd', 'momentum', 'adam'] as const),
    zoObjective: c.oneOf(o, 'optimizer.zoObjective', ['ce', 'accuracy', 'f1'] as const),
    ...(o['zoMethod'] !== undefined ? { zoMethod: c.oneOf(o, 'optimizer.zoMethod', ZO_METHODS) } : {}),
  };
}

function peft(c: Checker, p: Obj): PeftSpec {
  const kind = c.oneOf(p, 'peft.kind', ['full', 'lora', 'prefix'] as const);
  if (kind === 'lora') {
    const targets = p['targets'];
    if (!Array.isArray(targets) || !targets.every((t) => typeof t === 'string')) c.fail('peft.targets', targets, 'a list of strings');
    return { kind, rank: c.int(p, 'peft.rank', 1, 1 << 20), alpha: c.num(p, 'peft.alpha', 0), dropout: c.num(p, 'peft.dropout', 0, 1), targets: targets as string[] };
  }
  if (kind === 'prefix') return { kind, slots: c.int(p, 'peft.slots', 1, 1 << 20), initByRealActivations: c.bool(p, 'peft.initByRealActivations') };
  if (p['only'] === undefined) return { kind };
  const only = c.str(p, 'peft.only');
  try {
    new RegExp(only);
  } catch {
    c.fail('peft.only', only, 'a regular expression');
  }
  return { kind, only };
}

/** A run's config.json, checked key by key. */
export function validateRunConfig(raw: unknown, file: string): TrainConfig {
  const c = new Checker(file);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new LmtuneError('CHECKPOINT', `${file}: not a JSON object`);
  const o = raw as Obj;
  if (o['version'] !== 1) c.fail('version', o['version'], '1');
  const maxSteps = c.int(o, 'maxSteps', 1);
  // keys this validator does not know (options added by task modules) pass through unchanged
  return {
    ...(o as Partial<TrainConfig>),
    version: 1,
    model: c.str(o, 'model'),
    task: c.str(o, 'task'),
    data: c.str(o, 'data'),
    dev: c.nullable(o, 'dev', () => c.str(o, 'dev')),
    numTrain: c.nullable(o, 'numTrain', () => c.int(o, 'numTrain', 1)),
    numDev: c.int(o, 'numDev', 0),
    devLimit: c.int(o, 'devLimit', 1),
    optimizer: optimizer(c, c.obj(o, 'optimizer')),
    schedule: c.oneOf(o, 'schedule', ['constant', 'linear', 'cosine'] as const),
    warmupSteps: c.int(o, 'warmupSteps', 0, maxSteps),
    maxSteps,
    batchSize: c.int(o, 'batchSize', 1, 1 << 24),
    gradAccum: c.int(o, 'gradAccum', 1, 1 << 24),
    clipNorm: c.nullable(o, 'clipNorm', () => c.num(o, 'clipNorm', 0)),
    evalEvery: c.int(o, 'evalEvery', 0),
    saveEvery: c.int(o, 'saveEvery', 1),
    seed: c.int(o, 'seed', 0),
    peft: peft(c, c.obj(o, 'peft')),
    objective: c.oneOf(o, 'objective', ['auto', 'classification', 'lm', 'mask'] as const),
    svag: c.num(o, 'svag', 1, 1 << 20),
    maxLength: c.nullable(o, 'maxLength', () => c.int(o, 'maxLength', 8)),
    threads: c.nullable(o, 'threads', () => c.int(o, 'threads', 1, 4096)),
  };
}

/** A checkpoint's state.json, checked against the run it resumes (`maxSteps`). */
export function validateRunState(raw: unknown, file: string, maxSteps = Number.MAX_SAFE_INTEGER): RunState {
  const c = new Checker(file);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new LmtuneError('CHECKPOINT', `${file}: not a JSON object`);
  const o = raw as Obj;
  const step = c.int(o, 'step', 0, maxSteps);
  const data = c.obj(o, 'data');
  const best = o['best'] === null ? null : c.obj(o, 'best');
  const scalars = (key: string): Record<string, number> => {
    const s = c.obj(o, key);
    for (const [k, v] of Object.entries(s)) if (typeof v !== 'number' || !Number.isFinite(v)) c.fail(`${key}.${k}`, v, 'a finite number');
    return s as Record<string, number>;
  };
  return {
    step,
    data: { epoch: c.int(data, 'data.epoch', 0), cursor: c.int(data, 'data.cursor', 0) },
    best: best === null ? null : { value: c.num(best, 'best.value', -Infinity), step: c.int(best, 'best.step', 0, step) },
    optimizerScalars: scalars('optimizerScalars'),
    extra: scalars('extra'),
  };
}
