/**
 * Helpers of the distributed tests: `lmtune worker` as a child process (the real CLI, as on a cluster
 * node) whose stderr lines can be awaited, and byte-for-byte comparison of output folders.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname;

export interface ChildWorker {
  readonly child: ChildProcess;
  readonly lines: string[];
  /** resolves with the first match of `re` in the worker's stderr (lines so far included), rejects after `ms` */
  waitFor(re: RegExp, ms: number): Promise<RegExpExecArray>;
  /** resolves with the exit code (null when killed by a signal) */
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
}

export function spawnWorker(url: string, args: string[] = [], env: Record<string, string> = {}): ChildWorker {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'worker', '--queue', url, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LMTUNE_THREADS: '1', ...env },
  });
  const lines: string[] = [];
  let buf = '';
  child.stderr!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      if (process.env.LMTUNE_TEST_VERBOSE) process.stderr.write(`[worker ${child.pid}] ${line}\n`);
      for (const w of [...waiters]) {
        const m = w.re.exec(line);
        if (m) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    }
  });
  const waiters: { re: RegExp; resolve: (m: RegExpExecArray) => void; reject: (e: Error) => void }[] = [];
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code, signal) => {
      // a worker that dies (a broken import, a crash) fails its waiters now, not at their timeouts
      for (const w of waiters.splice(0)) w.reject(new Error(`worker ${child.pid} exited (${signal ?? code}) before a line matched ${w.re}:\n${lines.join('\n')}`));
      r(code);
    }),
  );
  return {
    child,
    lines,
    exited,
    kill: (s) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(s);
    },
    waitFor: (re, ms) =>
      new Promise((resolve, reject) => {
        for (const l of lines) {
          const m = re.exec(l);
          if (m) return resolve(m);
        }
        const timer = setTimeout(() => reject(new Error(`worker ${child.pid}: no line matching ${re} within ${ms} ms:\n${lines.join('\n')}`)), ms);
        waiters.push({
          re,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
      }),
  };
}

/** every file under `dir` (relative path → bytes), except names `skip` accepts */
export function filesUnder(dir: string, skip: (rel: string) => boolean = () => false): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (!skip(relative(dir, p))) out.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

/** the names of files that differ (or exist on one side only) */
export function differingFiles(a: Map<string, Buffer>, b: Map<string, Buffer>): string[] {
  const names = new Set([...a.keys(), ...b.keys()]);
  return [...names].filter((n) => !a.get(n) || !b.get(n) || !a.get(n)!.equals(b.get(n)!)).sort();
}
