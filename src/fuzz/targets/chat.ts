/**
 * Chat JSONL (`--task chat`, select's pool/target files): rows in the Tulu `{"messages": [...]}` form,
 * the evaluation form (choices + label, or answers) and prompt/completion rows, with JSON edits (wrong
 * roles, empty or non-string content, missing messages, a label not among the choices, huge strings) and
 * text damage (BOM, CRLF, cuts, NUL, binary). Read with loadChatExamples (what train and eval call), then
 * each row encoded for training (encodeChat, a short max length) and split for evaluation (chatEvalItem)
 * when it carries what evaluation needs. Errors must name file:line.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { loadTokenizer, type HfTextTokenizer } from '../../models/tokenizer.ts';
import { chatEvalItem, loadChatExamples } from '../../tasks/index.ts';
import { encodeChat } from '../../tasks/chat.ts';
import { diskFolder } from '../../node/folder.ts';
import { applyJsonEdits, applyTextEdit, jsonEdit, rarely, textEdit, type Json, type JsonEdit, type TextEdit } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';

const ASSET = new URL('../../../assets/tiny-english-lm/', import.meta.url).pathname;

export interface ChatInput {
  rows: { form: 'tulu' | 'choice' | 'answers' | 'prompt'; system: boolean; edits: JsonEdit[] }[];
  maxLength: number;
  text: TextEdit;
  huge: boolean;
}

const input: fc.Arbitrary<ChatInput> = fc.record({
  rows: fc.array(
    fc.record({
      form: fc.constantFrom('tulu' as const, 'choice' as const, 'answers' as const, 'prompt' as const),
      system: fc.boolean(),
      edits: fc.oneof({ weight: 2, arbitrary: fc.constant<JsonEdit[]>([]) }, { weight: 3, arbitrary: fc.array(jsonEdit, { minLength: 1, maxLength: 2 }) }),
    }),
    { minLength: 1, maxLength: 4 },
  ),
  maxLength: fc.constantFrom(3, 8, 64, 512),
  text: textEdit,
  huge: rarely(fc.constant(true)).map((x) => x === true),
});

function rowDoc(form: ChatInput['rows'][number]['form'], system: boolean, huge: boolean): Json {
  const user = huge ? 'Is it so? '.repeat(20000) : 'Is the sky blue?';
  const msgs: Json[] = system ? [{ role: 'system', content: 'Be brief.' }] : [];
  if (form === 'prompt') return { prompt: user, completion: ' Yes.' };
  msgs.push({ role: 'user', content: user });
  if (form === 'tulu') return { dataset: 'flan', id: 'r1', messages: [...msgs, { role: 'assistant', content: 'Yes, it is.' }] };
  if (form === 'choice') return { messages: msgs, choices: ['yes', 'no'], label: 'yes', subtask: 'sky' };
  return { messages: [...msgs, { role: 'assistant', content: 'Yes.' }], answers: ['Yes.', 'yes'] };
}

export function serializeChat(i: ChatInput): string {
  return i.rows.map((r) => JSON.stringify(applyJsonEdits(rowDoc(r.form, r.system, i.huge), r.edits))).join('\n') + '\n';
}

let tok: Promise<HfTextTokenizer> | null = null;

export const chatTarget: FuzzTarget<ChatInput> = {
  name: 'chat',
  description: 'chat JSONL (Tulu messages, choices/label, answers, prompt/completion) through loadChatExamples + encodeChat + chatEvalItem',
  input,
  prepare(i, dir) {
    writeFileSync(join(dir, 'chat.jsonl'), applyTextEdit(Buffer.from(serializeChat(i), 'utf8'), i.text));
  },
  async run(i, dir) {
    const { examples } = loadChatExamples(join(dir, 'chat.jsonl'));
    tok ??= loadTokenizer(diskFolder(ASSET), 'gpt2');
    const t = await tok;
    for (const ex of examples) {
      const row = ex.chat;
      // training encodes every row; an assistant-less row is a DATA error there (file:line)
      if (row.messages.some((m) => m.role === 'assistant') || row.promptCompletion) encodeChat(row, t, i.maxLength);
      if (row.choices || row.answers) chatEvalItem(row);
    }
  },
};
