/** The ZO trajectory file (format in src/optim/zo/trajectory.ts): one fsynced write per line, resume. */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite } from '../node/fsx.ts';
import { formatZoHeader, formatZoRecord, parseZoTrajectory, type ZoTrajectoryHeader, type ZoTrajectoryRecord } from '../optim/zo/trajectory.ts';

export function readZoTrajectory(path: string): { header: ZoTrajectoryHeader; records: ZoTrajectoryRecord[] } {
  return parseZoTrajectory(readFileSync(path, 'utf8'), path);
}

export class ZoTrajectoryWriter {
  private fd: number;
  /** starts a new trajectory at `path` with its header; `header` null continues the file (resume) */
  constructor(
    readonly path: string,
    header: ZoTrajectoryHeader | null,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(path, header === null ? 'a' : 'w');
    if (header !== null) this.write(formatZoHeader(header));
  }

  /** Keeps the header and the first `keep` steps (a checkpoint's step), drops the rest, appends after them. */
  static resume(path: string, keep: number): ZoTrajectoryWriter {
    const t = readZoTrajectory(path);
    if (keep > t.records.length) throw new LmtuneError('CHECKPOINT', `${path}: the checkpoint is at step ${keep} but the trajectory holds only ${t.records.length} steps`);
    const lines = readFileSync(path, 'utf8').split('\n').slice(0, keep + 1);
    atomicWrite(path, lines.join('\n') + '\n');
    return new ZoTrajectoryWriter(path, null);
  }
  append(r: ZoTrajectoryRecord): void {
    this.write(formatZoRecord(r));
  }
  private write(line: string): void {
    const b = Buffer.from(line, 'utf8');
    let off = 0;
    while (off < b.length) off += writeSync(this.fd, b, off, b.length - off);
    fsyncSync(this.fd);
  }
  close(): void {
    closeSync(this.fd);
  }
}

