/** The list of subcommands. Each module exports `register(program)`. */
import type { Command } from 'commander';

export function registerAll(_program: Command): void {
  // subcommands are added here as their modules land
}
