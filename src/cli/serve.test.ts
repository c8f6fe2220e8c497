// `lmtune serve`: a missing --runs folder or flag is a clear error before anything listens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { register } from './serve.ts';

async function serve(args: string[]): Promise<void> {
  const program = new Command();
  program.exitOverride();
  register(program);
  await program.parseAsync(['node', 'lmtune', 'serve', ...args]);
}

test('serve refuses a missing --runs folder, naming it, and a bad --port', async () => {
  await assert.rejects(serve(['--runs', '/nonexistent/runs', '--port', '0']), (e: unknown) => e instanceof LmtuneError && e.code === 'IO' && e.message === '--runs /nonexistent/runs: no such folder');
  await assert.rejects(serve(['--runs', '.', '--port', '70000']), (e: unknown) => e instanceof LmtuneError && /--port/.test(e.message));
});
