/** The list of subcommands. Each module exports `register(program)`. */
import type { Command } from 'commander';
import { register as info } from './info.ts';
import { register as evalCmd } from './eval.ts';
import { register as train } from './train.ts';
import { register as scale } from './scale.ts';

export function registerAll(program: Command): void {
  info(program);
  evalCmd(program);
  train(program);
  scale(program);
}
