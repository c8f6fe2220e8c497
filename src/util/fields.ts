/**
 * Field schemas (zod) whose failures say what was wanted, in words, so that one schema yields the messages
 * of each place a value comes from: a flag typed on the command line (`--lr must be >= 0, got -1`), a key
 * of a `--config` file (`c.yaml: "lr" must be >= 0, got -1`), a key of a run's config.json
 * (`runs/x/config.json: "optimizer.lr" is -1, expected a finite number in [0, Infinity]`).
 *
 * Why custom checks rather than zod's built-in `min`/`int`: a built-in issue reports one bound, and the
 * messages above name the whole range; each field here reports its full `Want` with the issue.
 */
import { z } from 'zod';

/** what a field accepts */
export type Want =
  | { kind: 'number'; min: number; max: number; int: boolean }
  | { kind: 'choice'; choices: readonly string[] }
  | { kind: 'string' }
  | { kind: 'boolean' }
  | { kind: 'strings' }
  | { kind: 'regex' }
  | { kind: 'literal'; value: string | number }
  | { kind: 'object' }
  /** a field that exists only for another variant (e.g. `zoMethod` outside MeZO); `why` says which */
  | { kind: 'absent'; why: string };

/** which check failed */
export type Problem = 'missing' | 'type' | 'int' | 'min' | 'max' | 'choice' | 'empty' | 'regex' | 'absent';

export interface FieldIssue {
  /** the key path inside the checked object, e.g. `optimizer.lr` */
  path: string;
  /** the value that failed (undefined when missing) */
  input: unknown;
  want: Want;
  problem: Problem;
}

interface IssueParams {
  want: Want;
  problem: Problem;
}

function field<T>(want: Want, check: (v: unknown) => Problem | null): z.ZodType<T, unknown> {
  return z.any().transform((v, ctx): T => {
    const problem = check(v);
    if (problem === null) return v as T;
    ctx.addIssue({ code: 'custom', message: describeWant(want), input: v, params: { want, problem } satisfies IssueParams });
    return z.NEVER;
  }) as unknown as z.ZodType<T, unknown>;
}

/** a finite number in [min, max] (an integer when `int`); integers default to the safe-integer range */
export function numberField(o: { min: number; max?: number; int?: boolean }): z.ZodType<number, unknown> {
  const want: Want = { kind: 'number', min: o.min, max: o.max ?? (o.int ? Number.MAX_SAFE_INTEGER : Infinity), int: o.int ?? false };
  return field<number>(want, (v) => {
    if (v === undefined) return 'missing';
    if (typeof v !== 'number' || !Number.isFinite(v)) return 'type';
    if (want.int && !Number.isSafeInteger(v)) return 'int';
    if (v < want.min) return 'min';
    if (v > want.max) return 'max';
    return null;
  });
}

export function choiceField<const T extends string>(choices: readonly T[]): z.ZodType<T, unknown> {
  return field<T>({ kind: 'choice', choices }, (v) => (v === undefined ? 'missing' : typeof v === 'string' && (choices as readonly string[]).includes(v) ? null : 'choice'));
}

/** a non-empty string */
export function stringField(): z.ZodType<string, unknown> {
  return field<string>({ kind: 'string' }, (v) => (v === undefined ? 'missing' : typeof v !== 'string' ? 'type' : v === '' ? 'empty' : null));
}

export function booleanField(): z.ZodType<boolean, unknown> {
  return field<boolean>({ kind: 'boolean' }, (v) => (v === undefined ? 'missing' : typeof v === 'boolean' ? null : 'type'));
}

export function stringsField(): z.ZodType<string[], unknown> {
  return field<string[]>({ kind: 'strings' }, (v) => (v === undefined ? 'missing' : Array.isArray(v) && v.every((t) => typeof t === 'string') ? null : 'type'));
}

/** a string that compiles as a JavaScript regular expression */
export function regexField(): z.ZodType<string, unknown> {
  return field<string>({ kind: 'regex' }, (v) => {
    if (v === undefined) return 'missing';
    if (typeof v !== 'string' || v === '') return 'type';
    try {
      new RegExp(v);
    } catch {
      return 'regex';
    }
    return null;
  });
}

export function literalField<const T extends string | number>(value: T): z.ZodType<T, unknown> {
  return field<T>({ kind: 'literal', value }, (v) => (v === value ? null : v === undefined ? 'missing' : 'type'));
}

/** a key that must not be there (it belongs to another variant of a union); `why` is the reason, in words */
export function absentField(why: string): z.ZodType<undefined, unknown> {
  return field<undefined>({ kind: 'absent', why }, (v) => (v === undefined ? null : 'absent'));
}

/** "expected …" text of a want */
export function describeWant(w: Want): string {
  switch (w.kind) {
    case 'number':
      return `${w.int ? 'an integer' : 'a finite number'} in [${w.min}, ${w.max}]`;
    case 'choice':
      return `one of ${w.choices.join(', ')}`;
    case 'string':
      return 'a non-empty string';
    case 'boolean':
      return 'true or false';
    case 'strings':
      return 'a list of strings';
    case 'regex':
      return 'a regular expression';
    case 'literal':
      return String(w.value);
    case 'object':
      return 'an object';
    case 'absent':
      return `no value (${w.why})`;
  }
}

/** zod's issues as field issues: ours carry their want; zod's own (an object or a union's tag) are translated */
export function fieldIssues(err: z.ZodError): FieldIssue[] {
  return err.issues.map((i): FieldIssue => {
    const path = i.path.map(String).join('.');
    if (i.code === 'custom' && i.params && 'want' in i.params) {
      const p = i.params as unknown as IssueParams;
      return { path, input: i.input, want: p.want, problem: p.problem };
    }
    if (i.code === 'invalid_union' && 'discriminator' in i && typeof i.discriminator === 'string') {
      // a discriminated union's tag: the issue's input is the whole object
      const tag = i.input !== null && typeof i.input === 'object' ? (i.input as Record<string, unknown>)[i.discriminator] : undefined;
      const options = 'options' in i && Array.isArray(i.options) ? (i.options as unknown[]).map(String) : [];
      const at = i.path.length && i.path[i.path.length - 1] === i.discriminator ? path : path ? `${path}.${i.discriminator}` : i.discriminator;
      return { path: at, input: tag, want: { kind: 'choice', choices: options }, problem: tag === undefined ? 'missing' : 'choice' };
    }
    if (i.code === 'invalid_type' && i.expected === 'object') return { path, input: i.input, want: { kind: 'object' }, problem: i.input === undefined ? 'missing' : 'type' };
    return { path, input: i.input, want: { kind: 'string' }, problem: 'type' };
  });
}

/** `file: "key" is VALUE, expected WANT` (a stored JSON file: the run's config.json) */
export function fileIssueText(file: string, i: FieldIssue): string {
  return `${file}: "${i.path}" is ${i.input === undefined ? 'missing' : JSON.stringify(i.input)}, expected ${describeWant(i.want)}`;
}

/**
 * The message for a value someone typed: `name` is the flag (`--lr`) or a config file's key
 * (`c.yaml: "lr"`); `shown` is the value as they typed it.
 */
export function typedIssueText(name: string, i: FieldIssue, shown: string): string {
  const w = i.want;
  switch (i.problem) {
    case 'missing':
      return `${name} is required`;
    case 'empty':
      return `${name}: empty value`;
    case 'int':
      return `${name} must be an integer, got ${shown}`;
    case 'min':
      return `${name} must be >= ${w.kind === 'number' ? w.min : '?'}, got ${shown}`;
    case 'max':
      return `${name} must be <= ${w.kind === 'number' ? w.max : '?'}, got ${shown}`;
    case 'choice':
      return `${name} must be one of ${w.kind === 'choice' ? w.choices.join(', ') : '?'}; got '${shown}'`;
    case 'regex':
      return `${name}: '${shown}' is not a valid regular expression`;
    case 'absent':
      return `${name} ${w.kind === 'absent' ? w.why : 'does not apply here'}`;
    case 'type':
      return w.kind === 'number' ? `${name} expects a number, got "${shown}"` : `${name} must be ${describeWant(w)}, got ${shown}`;
  }
}
