/** Flag parsing helpers shared by subcommands: every bad value names its flag. */
import { LmtuneError } from '../util/errors.ts';

export function num(flag: string, v: string | number | undefined, opts: { min?: number; max?: number; int?: boolean } = {}): number {
  if (v === undefined) throw new LmtuneError('CONFIG', `${flag} is required`);
  const x = typeof v === 'number' ? v : Number(v.trim());
  if (typeof v === 'string' && v.trim() === '') throw new LmtuneError('CONFIG', `${flag}: empty value`);
  if (!Number.isFinite(x)) throw new LmtuneError('CONFIG', `${flag} expects a number, got ${JSON.stringify(v)}`);
  if (opts.int && !Number.isInteger(x)) throw new LmtuneError('CONFIG', `${flag} must be an integer, got ${v}`);
  if (opts.min !== undefined && x < opts.min) throw new LmtuneError('CONFIG', `${flag} must be >= ${opts.min}, got ${v}`);
  if (opts.max !== undefined && x > opts.max) throw new LmtuneError('CONFIG', `${flag} must be <= ${opts.max}, got ${v}`);
  return x;
}

export function oneOf<T extends string>(flag: string, v: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(v)) throw new LmtuneError('CONFIG', `${flag} must be one of ${choices.join(', ')}; got '${v}'`);
  return v as T;
}

/** a value given under one of several spellings (`--eps-placement outside` or `outsideSqrt`) */
export function pick<T extends string>(flag: string, v: string, table: Readonly<Record<string, T>>): T {
  const out = Object.hasOwn(table, v) ? table[v] : undefined;
  if (out === undefined) throw new LmtuneError('CONFIG', `${flag} must be one of ${Object.keys(table).join(', ')}; got '${v}'`);
  return out;
}

/** a comma-separated list of numbers */
export function numList(flag: string, v: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new LmtuneError('CONFIG', `${flag} expects a comma-separated list of numbers, got "${v}"`);
  return parts.map((p) => num(flag, p));
}

/** a flag without a default; `why` says what to pass */
export function required(flag: string, v: string | undefined, why: string): string {
  if (v === undefined) throw new LmtuneError('CONFIG', `missing ${flag}`, why);
  return v;
}

/** a progress line for long jobs: step/total, loss, steps/s, ETA; redrawn in place on a terminal */
export class ProgressLine {
  private lastPrint = 0;
  constructor(
    private readonly out: (s: string) => void = (s) => process.stderr.write(s),
    private readonly tty = process.stderr.isTTY ?? false,
  ) {}
  update(text: string, done: number, total: number): void {
    const now = performance.now();
    const last = done === total;
    if (this.tty) {
      this.out(`\r${text}\x1b[K${last ? '\n' : ''}`);
    } else if (last || now - this.lastPrint > 5000 || done === 1) {
      this.out(`${text}\n`);
      this.lastPrint = now;
    }
  }
}

export function fmtEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
