/** The list of subcommands. Each module exports `register(program)`. */
import type { Command } from 'commander';
import { register as info } from './info.ts';
import { register as evalCmd } from './eval.ts';
import { register as train } from './train.ts';
import { register as scale } from './scale.ts';
import { register as pretrain } from './pretrain.ts';
import { register as mezo } from './mezo.ts';
import { register as demo } from './demo.ts';
import { register as report } from './report.ts';
import { register as tint } from './tint.ts';
import { register as serve } from './serve.ts';
import { register as zoBench } from './zo-bench.ts';
import { register as select } from './select.ts';
import { register as features } from './features.ts';
import { register as probe } from './probe.ts';
import { register as kernel } from './kernel.ts';
import { register as worker } from './worker.ts';
import { register as queue } from './queue.ts';

export function registerAll(program: Command): void {
  info(program);
  evalCmd(program);
  train(program);
  scale(program);
  pretrain(program);
  mezo(program);
  demo(program);
  report(program);
  tint(program);
  serve(program);
  zoBench(program);
  select(program);
  features(program);
  probe(program);
  kernel(program);
  worker(program);
  queue(program);
}
