/**
 * The CLI's `select` command alone, run in a child process with lmtune's error handling (src/cli/main.ts
 * registers every command; this registers only `select`, so a test's child starts faster). Shared by the
 * end-to-end select tests (resume.test.ts, multi-pool-run.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const MODEL = join(ROOT, 'assets/tiny-english-lm');
export const POOL = join(SHARED_DATA, 'instruct-pool/pool.jsonl');
export const TARGET = join(SHARED_DATA, 'instruct-pool/targets/trec_target.jsonl');

const HARNESS = `
const { Command } = await import(${JSON.stringify(join(ROOT, 'node_modules/commander/index.js'))});
await import(${JSON.stringify(join(ROOT, 'src/node/host.ts'))});
const { register } = await import(${JSON.stringify(join(ROOT, 'src/cli/select.ts'))});
const { LmtuneError } = await import(${JSON.stringify(join(ROOT, 'src/util/errors.ts'))});
const program = new Command();
program.exitOverride();
register(program);
try {
  await program.parseAsync(['node', 'lmtune', ...process.argv.slice(1)]);
} catch (e) {
  if (!(e instanceof LmtuneError)) throw e;
  process.stderr.write('lmtune: error [' + e.code + ']: ' + e.message + '\\n');
  process.exit(1);
}
`;

/** `lmtune select ARGS` on one thread; `fault` arms a kill point (LMTUNE_FAULT, src/util/fault.ts) */
export function runSelect(args: string[], fault?: string): { status: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', HARNESS, ...args], {
    encoding: 'utf8',
    cwd: ROOT,
    env: { ...process.env, LMTUNE_THREADS: '1', ...(fault ? { LMTUNE_FAULT: fault } : {}) },
  });
  return { status: r.status, signal: r.signal, stderr: r.stderr, stdout: r.stdout };
}
