/**
 * Deterministic crash points for the kill-and-resume tests: when LMTUNE_FAULT equals a point's label,
 * the process SIGKILLs itself there (no cleanup, no flush), exactly like a kill -9 at that moment.
 */
export function faultPoint(label: string): void {
  if (process.env.LMTUNE_FAULT === label) process.kill(process.pid, 'SIGKILL');
}
