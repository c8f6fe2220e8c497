/**
 * Chat data as a task (`--task chat`): the row validation of chat.ts behind the `Task` interface, so the
 * training loop, splits and `lmtune eval` handle chat rows like any other task. A chat example carries
 * its row (and, once encoded for training, its encoding); evaluation goes through the task's own
 * `evaluate` (chat-eval.ts), not the template machinery.
 */
import { LmtuneError } from '../util/errors.ts';
import { requireHost } from '../util/host.ts';
import { chatRowFromValue, parseChatJsonl, type ChatRow, type EncodedChat } from './chat.ts';
import { evaluateChat } from './chat-eval.ts';
import { decodeText, type RawRecord } from './readers.ts';
import type { Example, Task } from './task.ts';

export interface ChatExample extends Example {
  readonly chat: ChatRow;
  /** the training encoding at `encodedMaxLength`, filled by whoever encodes the rows up front */
  encoded?: EncodedChat;
  encodedMaxLength?: number;
}

export function isChatExample(ex: Example): ex is ChatExample {
  return (ex as Partial<ChatExample>).chat !== undefined;
}

export function chatExample(row: ChatRow): ChatExample {
  return { id: `${row.file ?? '<chat>'}:${row.line}`, fields: {}, label: -1, candidates: row.choices ?? [], correct: [], answers: row.answers ?? [], chat: row };
}

export const CHAT_TASK_NAME = 'chat';

export const chatTask: Task = {
  name: CHAT_TASK_NAME,
  kind: 'multiple-choice',
  metric: 'accuracy',
  labelNames: [],
  labelWords: [],
  // the raw line is not in a RawRecord: this path re-serializes it (loadChatExamples keeps the bytes)
  parse: (rec: RawRecord) => [chatExample(chatRowFromValue(rec.value, rec.file, rec.line, JSON.stringify(rec.value)))],
  demoSeparator: '\n\n',
  maxNewTokens: 64,
  stop: [],
  provenance: 'chat rows in the Tulu template (LESS get_training_dataset.py / open-instruct), less.md §2',
  evaluate: evaluateChat,
};

export function isChatTask(task: Task): boolean {
  return task === chatTask;
}

/** Every chat example of a JSONL file; with skipInvalid, bad rows are left out and listed. */
export function loadChatExamples(file: string, opts: { skipInvalid?: boolean } = {}): { examples: ChatExample[]; skipped: { line: number; reason: string }[] } {
  const host = requireHost('reading a chat data file');
  if (!host.exists(file)) throw new LmtuneError('IO', `data file not found: ${file}`);
  const { rows, skipped } = parseChatJsonl(decodeText(host.readFile(file)), file, opts);
  if (rows.length === 0) throw new LmtuneError('DATA', `${file}: no chat rows`);
  return { examples: rows.map(chatExample), skipped };
}
