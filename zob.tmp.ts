import './src/node/host.ts';
import { Command } from 'commander';
import { register } from './src/cli/zo-bench.ts';
const program = new Command();
program.exitOverride();
register(program);
await program.parseAsync(['node', 'x', 'zo-bench', ...process.argv.slice(2)]);
