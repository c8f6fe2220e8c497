/**
 * A run folder's config.json and checkpoint state.json are read back on `--resume`, possibly after a
 * person edited them. Every value is checked before it is used, and an error names the file and the key
 * (e.g. `runs/x/checkpoint/state.json: "step" is -3, expected an integer in [0, 100]`).
 */
import { LmtuneError } from '../util/errors.ts';
import type { RunState } from './checkpoint.ts';
import { runConfigSchema, type TrainConfig } from './options.ts';
import { fieldIssues, fileIssueText } from '../util/fields.ts';

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

/**
 * A run's config.json, checked key by key against the run schema (src/train/options.ts): the first
 * failure names the file and the key (`"optimizer.lr" is -1, expected a finite number in [0, Infinity]`).
 * Keys the schema does not know pass through unchanged (a newer lmtune's options).
 */
export function validateRunConfig(raw: unknown, file: string): TrainConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new LmtuneError('CHECKPOINT', `${file}: not a JSON object`);
  const r = runConfigSchema.safeParse(raw, { reportInput: true });
  if (!r.success) {
    // the version, then the run length (which bounds the warmup), then the schema's order: as read before
    const issues = fieldIssues(r.error);
    const first = issues.find((i) => i.path === 'version') ?? issues.find((i) => i.path === 'maxSteps') ?? issues[0]!;
    throw new LmtuneError('CHECKPOINT', fileIssueText(file, first), 'the run folder was edited or is damaged; restore it or start a new run with --out');
  }
  return { ...(raw as Partial<TrainConfig>), ...r.data };
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
