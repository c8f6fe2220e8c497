/**
 * Evaluation from files: resolve the task (built-in name or task file), read and validate the data, draw
 * demonstrations from the training file, evaluate, and produce the record `lmtune eval` writes. The CLI
 * only parses flags and renders; everything here is usable from scripts.
 */
import { LmtuneError } from '../util/errors.ts';
import { extensionOf, requireHost } from '../util/host.ts';
import type { LanguageModel } from '../models/api.ts';
import { getBuiltinTask } from './builtin.ts';
import { CHAT_TASK_NAME, chatTask } from './chat-task.ts';
import { loadTaskFile } from './custom-task.ts';
import { evaluate, type EvalProgress, type EvalResult, type Scoring } from './evaluate.ts';
import { readRecords } from './readers.ts';
import type { Example, Task } from './task.ts';

/** A built-in task name ("sst2", "RTE", ...), "chat" (chat-format JSONL), or the path of a task file (.json / .yaml / .yml). */
export function resolveTask(spec: string): Task {
  if (spec === CHAT_TASK_NAME) return chatTask;
  const ext = extensionOf(spec).toLowerCase();
  if (ext === '.json' || ext === '.yaml' || ext === '.yml' || (spec.includes('/') && requireHost('reading a task file').exists(spec))) return loadTaskFile(spec);
  return getBuiltinTask(spec);
}

/** Every example of a data file, validated against the task (an invalid row is an error naming file:line). */
export function loadExamples(task: Task, file: string): Example[] {
  const examples = readRecords(file).flatMap((r) => task.parse(r));
  if (examples.length === 0) throw new LmtuneError('DATA', `${file}: no examples`);
  return examples;
}

export interface EvalRunOptions {
  readonly task: string;
  readonly data: string;
  /** demonstrations file (default: the data file, never using an example as its own demonstration) */
  readonly train?: string;
  readonly shots?: number;
  readonly seed?: number;
  /** evaluate only the first n examples of the data file */
  readonly limit?: number;
  readonly scoring?: Scoring;
  readonly calibrate?: boolean;
  readonly batchSize?: number;
  readonly maxLength?: number;
  readonly onProgress?: (p: EvalProgress) => void;
}

export interface EvalRecord extends EvalResult {
  readonly kind: Task['kind'];
  readonly model: LanguageModel['kind'];
  readonly data: string;
  readonly train: string | null;
  readonly shots: number;
  readonly seed: number;
  readonly scoring: Scoring | 'calibrated';
  readonly provenance: string;
  readonly labelWords: readonly string[];
}

export async function runEvaluation(model: LanguageModel, opts: EvalRunOptions): Promise<EvalRecord> {
  const task = resolveTask(opts.task);
  const all = loadExamples(task, opts.data);
  if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 1)) {
    throw new LmtuneError('CONFIG', `--limit must be a positive integer, got ${opts.limit}`);
  }
  const examples = opts.limit !== undefined ? all.slice(0, opts.limit) : all;
  const shots = opts.shots ?? 0;
  const seed = opts.seed ?? 0;
  // the pool is every example of the file (not just the first `limit`), each excluded from its own prompt
  const demoPool = shots > 0 ? (opts.train !== undefined ? loadExamples(task, opts.train) : all) : undefined;
  const result = await evaluate(model, task, examples, {
    shots,
    seed,
    ...(demoPool ? { demoPool } : {}),
    ...(opts.scoring ? { scoring: opts.scoring } : {}),
    ...(opts.calibrate ? { calibrate: true } : {}),
    ...(opts.batchSize !== undefined ? { batchSize: opts.batchSize } : {}),
    ...(opts.maxLength !== undefined ? { maxLength: opts.maxLength } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  return {
    ...result,
    kind: task.kind,
    model: model.kind,
    data: opts.data,
    train: shots > 0 ? (opts.train ?? opts.data) : null,
    shots,
    seed,
    scoring: opts.calibrate ? 'calibrated' : (opts.scoring ?? 'mean'),
    provenance: task.provenance,
    labelWords: model.kind === 'masked' ? (task.masked?.labelWords ?? []) : task.labelWords,
  };
}
