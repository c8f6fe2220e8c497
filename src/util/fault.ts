/**
 * Deterministic crash points for the kill-and-resume tests: when LMTUNE_FAULT equals a point's label,
 * the process SIGKILLs itself there (no cleanup, no flush), exactly like a kill -9 at that moment;
 * when it equals the label + ":enospc", the write in progress fails there as on a full disk.
 */
export function faultPoint(label: string): void {
  const f = process.env.LMTUNE_FAULT;
  if (f === label) process.kill(process.pid, 'SIGKILL');
  // `<label>:enospc`: the write fails there as on a full disk (the disk-full tests)
  if (f === `${label}:enospc`) throw Object.assign(new Error(`ENOSPC: no space left on device, write (injected at ${label})`), { code: 'ENOSPC' });
}
