/** How selection stages report progress; the library never prints, the CLI renders these. */
export interface SelectProgress {
  stage: 'warmup' | 'grads' | 'match' | 'write';
  done: number;
  total: number;
  /** what `done` counts (steps, rows) */
  unit: string;
  etaSeconds: number;
  detail?: string;
}

export interface SelectHooks {
  onProgress?: (p: SelectProgress) => void;
  onMessage?: (m: string) => void;
}

/** ETA from the rate since `t0` (ms) of `done` out of `total` units */
export function eta(t0: number, done: number, total: number): number {
  const s = (performance.now() - t0) / 1000;
  return done > 0 ? ((total - done) * s) / done : Number.POSITIVE_INFINITY;
}
