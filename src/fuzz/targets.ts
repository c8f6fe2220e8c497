/** Every fuzz target, by name (the order of the table `npm run fuzz` prints). */
import type { FuzzTarget } from './runner.ts';
import { safetensorsTarget } from './targets/safetensors.ts';
import { configTarget } from './targets/config.ts';
import { tokenizerTarget } from './targets/tokenizer.ts';
import { dataTarget } from './targets/data.ts';
import { taskFileTarget } from './targets/taskfile.ts';
import { trajectoryTarget } from './targets/trajectory.ts';
import { runFolderTarget } from './targets/run-folder.ts';
import { datastoreTarget } from './targets/datastore.ts';
import { chatTarget } from './targets/chat.ts';

export const TARGETS: readonly FuzzTarget<never>[] = [safetensorsTarget, configTarget, tokenizerTarget, dataTarget, taskFileTarget, trajectoryTarget, runFolderTarget, datastoreTarget, chatTarget] as unknown as FuzzTarget<never>[];
