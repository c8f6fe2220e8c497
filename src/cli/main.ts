/**
 * The `lmtune` command. Each capability is one subcommand registered from its own module; this file only
 * wires them together and turns LmtuneError into a message and a non-zero exit.
 */
import { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { registerAll } from './commands.ts';
import { configureRuntimeFromEnv } from '../node/runtime.ts';

configureRuntimeFromEnv();

const program = new Command();
program
  .name('lmtune')
  .description('Fine-tune language models on a CPU: backprop, MeZO and other zeroth-order methods (full, LoRA, prefix), LESS data selection, eNTK kernels, conditional-mean features and probes, SDE scaling rules and SVAG, TinT; a browser page and a runs dashboard (serve); jobs on a Redis queue (worker, queue).')
  .option('--debug', 'print stack traces for errors')
  .showHelpAfterError();
registerAll(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const debug = process.argv.includes('--debug');
  if (e instanceof LmtuneError) {
    process.stderr.write(`lmtune: error [${e.code}]: ${e.message}\n`);
    if (e.hint) process.stderr.write(`  hint: ${e.hint}\n`);
    if (debug) process.stderr.write(`${e.stack}\n`);
  } else {
    process.stderr.write(`lmtune: internal error: ${(e as Error).message ?? String(e)}\n`);
    if (debug || !(e instanceof Error)) process.stderr.write(`${(e as Error).stack ?? ''}\n`);
  }
  process.exitCode = process.exitCode && process.exitCode !== 0 ? process.exitCode : 1;
}
