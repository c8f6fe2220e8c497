/** Small helpers for plotting logged series. */
import { existsSync, readFileSync } from 'node:fs';

/** trailing moving average over `window` points, so a noisy loss reads as a trend */
export function movingAverage(y: readonly number[], window: number): number[] {
  const out: number[] = [];
  let s = 0;
  for (let i = 0; i < y.length; i++) {
    s += y[i]!;
    if (i >= window) s -= y[i - window]!;
    out.push(s / Math.min(i + 1, window));
  }
  return out;
}

/** the records of a JSONL log (missing file: none) */
export function readJsonlRecords(path: string): Record<string, number>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, number>);
}
