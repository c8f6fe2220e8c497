/**
 * MeZO trajectory files on disk (the format and its hash chain are src/optim/trajectory.ts): reading,
 * and appending one fsynced line per step, so a crash can only leave a torn last line, which readers
 * ignore and `TrajectoryWriter.resume` truncates away.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { scanTrajectory, sealHeader, sealRecord, type Trajectory, type TrajectoryHeader, type TrajectoryRecord, type TrajectoryScan } from '../optim/trajectory.ts';

function scanFile(path: string): TrajectoryScan {
  if (!existsSync(path)) throw new LmtuneError('IO', `trajectory not found: ${path}`);
  return scanTrajectory(readFileSync(path), path);
}

/** Reads a trajectory, ignoring a torn last line (reported as tornBytes). */
export function readTrajectory(path: string): Trajectory & { tornBytes: number } {
  const s = scanFile(path);
  if (s.trajectory === null) throw new LmtuneError('CHECKPOINT', `${path}: trajectory has no complete header line`);
  return { ...s.trajectory, tornBytes: s.tornBytes };
}

export interface AppendOptions {
  /** fsync after every line (default true: a step's record survives a power loss once `append` returns) */
  fsync?: boolean;
}

export class TrajectoryWriter {
  private fd: number | null;
  private nextStep: number;

  private constructor(
    readonly path: string,
    fd: number,
    nextStep: number,
    private readonly sync: boolean,
    /** the chain's last chk; undefined when continuing an unsealed version-1 file */
    private prev: string | undefined,
  ) {
    this.fd = fd;
    this.nextStep = nextStep;
  }

  /** Starts a new trajectory (replacing any file at `path`) with its header line. */
  static create(path: string, header: TrajectoryHeader, opts: AppendOptions = {}): TrajectoryWriter {
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(path, 'w');
    const { line, chk } = sealHeader(header);
    const w = new TrajectoryWriter(path, fd, 0, opts.fsync ?? true, chk);
    w.writeLine(line + '\n');
    fsyncDir(dirname(path));
    return w;
  }

  /**
   * Reopens a trajectory to continue a run: drops a torn last line, keeps the first `keepSteps` records
   * (the checkpoint's step; default all) and truncates the rest, which the resumed run will redo.
   */
  static resume(path: string, opts: AppendOptions & { keepSteps?: number } = {}): { writer: TrajectoryWriter; trajectory: Trajectory } {
    const s = scanFile(path);
    if (s.trajectory === null) throw new LmtuneError('CHECKPOINT', `${path}: trajectory has no complete header line`, 'start the run again from its initial checkpoint');
    const have = s.trajectory.records.length;
    const keep = opts.keepSteps ?? have;
    if (!Number.isInteger(keep) || keep < 0 || keep > have) {
      throw new LmtuneError('CHECKPOINT', `${path}: the checkpoint is at step ${keep} but the trajectory holds only ${have} steps`, 'the trajectory and the checkpoint come from different runs');
    }
    const bytes = s.ends[keep]!; // ends[0] = end of the header
    const fd = openSync(path, 'r+');
    ftruncateSync(fd, bytes);
    fsyncSync(fd);
    closeSync(fd);
    const afd = openSync(path, 'a');
    const trajectory = { ...s.trajectory, records: s.trajectory.records.slice(0, keep) };
    const prev = s.trajectory.header.version >= 2 ? s.chks[keep]! : undefined;
    return { writer: new TrajectoryWriter(path, afd, keep, opts.fsync ?? true, prev), trajectory };
  }

  append(r: TrajectoryRecord): void {
    if (r.step !== this.nextStep) throw new LmtuneError('RUNTIME', `trajectory ${this.path}: appending step ${r.step}, expected ${this.nextStep}`);
    const { line, chk } = sealRecord(r, this.prev);
    this.writeLine(`${line}\n`);
    this.prev = chk;
    this.nextStep++;
  }

  private writeLine(line: string): void {
    if (this.fd === null) throw new LmtuneError('RUNTIME', `trajectory ${this.path} is closed`);
    const b = Buffer.from(line, 'utf8');
    try {
      let off = 0;
      while (off < b.length) off += writeSync(this.fd, b, off, b.length - off);
      if (this.sync) fsyncSync(this.fd);
    } catch (e) {
      // a full disk can leave part of the line: a torn last line, which readers and resume drop
      throw new LmtuneError('IO', `${this.path}: cannot append step ${this.nextStep} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'free disk space, then continue with --resume');
    }
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** Makes a new file's directory entry durable (some filesystems refuse; the file itself is fsynced). */
function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    fsyncSync(fd);
    closeSync(fd);
  } catch {
    /* directory fsync unsupported here */
  }
}
