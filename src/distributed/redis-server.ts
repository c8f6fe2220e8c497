/**
 * A throwaway real Redis for tests and local runs: `redis-server` on a free 127.0.0.1 port, without
 * persistence unless asked (the restart test), in a temp dir, stopped by `stop()`. Tests use it instead of a mock so that BullMQ's Lua
 * scripts, locks and stalled-job checks run exactly as they do in a cluster.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';

export const REDIS_SERVER_BIN = '/usr/bin/redis-server';

export interface LocalRedis {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  /**
   * Kills the server (SIGKILL, as a crash) and, after `downMs`, starts it again on the same port and
   * folder. With `persist`, every write was fsynced to the append-only file, so the queue survives.
   */
  restart(downMs?: number): Promise<void>;
}

export interface LocalRedisOptions {
  /** append-only file with fsync on every write (`--appendonly yes --appendfsync always`) instead of no persistence */
  readonly persist?: boolean;
}

/** Why local Redis tests cannot run here, or undefined when they can (for `test(..., { skip })`). */
export function redisSkipReason(): string | undefined {
  return existsSync(REDIS_SERVER_BIN) ? undefined : `${REDIS_SERVER_BIN} is absent: install Debian's redis-server (apt-get install -y redis-server) to run the distributed tests`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** One raw PING over RESP; true on "+PONG". */
function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('error', () => done(false));
    s.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
    s.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** Starts redis-server on a free loopback port and waits (at most `waitMs`) until it answers PING. */
export async function startLocalRedis(waitMs = 10_000, opts: LocalRedisOptions = {}): Promise<LocalRedis> {
  const skip = redisSkipReason();
  if (skip) throw new LmtuneError('RUNTIME', skip);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-redis-'));
  const persistence = opts.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
  let child: ChildProcess;
  let exited = false;
  const launch = async (): Promise<void> => {
    exited = false;
    const c = spawn(REDIS_SERVER_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', dir, '--protected-mode', 'yes'], { stdio: 'ignore' });
    child = c;
    c.once('exit', () => {
      if (child === c) exited = true;
    });
    const deadline = performance.now() + waitMs;
    // bounded: one PING per 50 ms until the deadline
    while (!(await ping(port, 500))) {
      if (exited || performance.now() > deadline) {
        c.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
        throw new LmtuneError('RUNTIME', `redis-server on 127.0.0.1:${port} did not answer PING within ${waitMs} ms${exited ? ' (it exited)' : ''}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    if (exited) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(timer);
    exited = true;
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: async () => {
      await halt('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
    restart: async (downMs = 500) => {
      await halt('SIGKILL');
      await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
  };
}
