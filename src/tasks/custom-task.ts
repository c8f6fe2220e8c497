/**
 * User-defined tasks from a small JSON or YAML file (JSON is read as YAML, so both give line numbers):
 *
 *   name: movie-sentiment
 *   kind: classification            # or: generation
 *   prompt: "{text} It was"         # causal LMs: what the model reads; {field} = a data field
 *   answer: " {label_word}"         # what follows the prompt (default " {label_word}"; generation " {answer}\n")
 *   masked_prompt: "{text} It was{mask}."   # masked LMs: wrapped in <s> ... </s>; exactly one {mask}
 *   label_field: label              # default "label"
 *   labels: { "0": terrible, "1": great }   # raw label value -> label word, in class order (or a list)
 *   metric: accuracy                # accuracy | macro-f1 | f1 | em
 *   answers_field: answers          # generation: gold answers (string or list)
 *   max_new_tokens: 50              # generation
 *   stop: ["\n"]                    # generation
 *   demo_separator: "\n\n"
 *   max_length: 128                 # masked LMs
 *
 * `{{` and `}}` are literal braces. Every problem is reported as file:line.
 */
import { isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { LmtuneError } from '../util/errors.ts';
import { readTextFile, requireHost } from '../util/host.ts';
import { getLabel, getString, getStringList } from './fields.ts';
import type { MaskedPart } from './masked-template.ts';
import type { RawRecord } from './readers.ts';
import type { CausalTemplate, Example, MaskedTemplate, MetricName, Task, TaskKind } from './task.ts';

const KEYS = [
  'name',
  'kind',
  'prompt',
  'answer',
  'masked_prompt',
  'label_field',
  'labels',
  'metric',
  'answers_field',
  'max_new_tokens',
  'stop',
  'demo_separator',
  'max_length',
  'description',
] as const;
type Key = (typeof KEYS)[number];

/** A template string cut into literal text and {placeholders}. */
export type TemplatePiece = { readonly literal: string } | { readonly field: string };

export function parsePlaceholders(template: string, where: () => string): TemplatePiece[] {
  const pieces: TemplatePiece[] = [];
  let lit = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c === '{' && template[i + 1] === '{') {
      lit += '{';
      i++;
    } else if (c === '}' && template[i + 1] === '}') {
      lit += '}';
      i++;
    } else if (c === '{') {
      const end = template.indexOf('}', i);
      if (end < 0) throw new LmtuneError('CONFIG', `${where()}: unclosed "{" in ${JSON.stringify(template)}`, 'write {{ for a literal brace');
      const name = template.slice(i + 1, end).trim();
      if (!/^[A-Za-z_][\w.]*$/.test(name)) throw new LmtuneError('CONFIG', `${where()}: bad placeholder {${name}} in ${JSON.stringify(template)}`, 'placeholders are field names such as {text}');
      if (lit) pieces.push({ literal: lit });
      lit = '';
      pieces.push({ field: name });
      i = end;
    } else if (c === '}') {
      throw new LmtuneError('CONFIG', `${where()}: stray "}" in ${JSON.stringify(template)}`, 'write }} for a literal brace');
    } else lit += c;
  }
  if (lit) pieces.push({ literal: lit });
  return pieces;
}

function render(pieces: readonly TemplatePiece[], values: Readonly<Record<string, string>>): string {
  return pieces.map((p) => ('literal' in p ? p.literal : values[p.field]!)).join('');
}

export function loadTaskFile(path: string): Task {
  if (!requireHost('reading a task file').exists(path)) throw new LmtuneError('IO', `task file not found: ${path}`);
  return parseTaskFile(readTextFile(path, 'reading a task file'), path);
}

export function parseTaskFile(text: string, file: string): Task {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    // with prettyErrors off, yaml leaves `linePos` unset: the line comes from the error's offset; an
    // error found at the end of the text (an unclosed bracket or quote) belongs to the last written line
    const lastChar = text.trimEnd().length - 1;
    const line = e.linePos?.[0].line ?? lc.linePos(Math.max(0, Math.min(e.pos[0], lastChar))).line;
    throw new LmtuneError('CONFIG', `${file}:${line}: ${e.message.split('\n')[0]}`);
  }
  if (!isMap(doc.contents)) throw new LmtuneError('CONFIG', `${file}:1: a task file must be a mapping of keys (name, prompt, labels, ...)`);
  const lineOf = new Map<string, number>();
  const nodes = new Map<string, Node>();
  for (const item of doc.contents.items) {
    const key = isScalar(item.key) ? String(item.key.value) : '?';
    const offset = (item.key as Node | null)?.range?.[0] ?? 0;
    const line = lc.linePos(offset).line;
    if (!(KEYS as readonly string[]).includes(key)) {
      throw new LmtuneError('CONFIG', `${file}:${line}: unknown key "${key}"`, `known keys: ${KEYS.join(', ')}`);
    }
    lineOf.set(key, line);
    if (item.value) nodes.set(key, item.value as Node);
  }
  const raw = doc.toJS() as Record<string, unknown>;
  const at = (k: Key) => `${file}:${lineOf.get(k) ?? 1}`;
  /** file:line of an entry of a list value (by index) or a mapping value (by key), else of the key `k` */
  const atEntry = (k: Key, entry: number | string): string => {
    const n = nodes.get(k);
    let start: number | undefined;
    if (n && isSeq(n) && typeof entry === 'number') {
      const item = n.items[entry];
      start = isNode(item) ? item.range?.[0] : undefined;
    } else if (n && isMap(n)) {
      const pair = n.items.find((p) => isScalar(p.key) && String(p.key.value) === String(entry));
      start = isNode(pair?.key) ? pair.key.range?.[0] : undefined;
    }
    return start === undefined ? at(k) : `${file}:${lc.linePos(start).line}`;
  };
  const str = (k: Key): string | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new LmtuneError('CONFIG', `${at(k)}: "${k}" must be a string, got ${JSON.stringify(v)}`);
    return v;
  };
  const int = (k: Key, min: number): number | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new LmtuneError('CONFIG', `${at(k)}: "${k}" must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  };

  const name = str('name');
  if (!name) throw new LmtuneError('CONFIG', `${file}:1: missing "name"`);
  const kindRaw = str('kind') ?? 'classification';
  if (kindRaw !== 'classification' && kindRaw !== 'generation') {
    throw new LmtuneError('CONFIG', `${at('kind')}: "kind" must be classification or generation, got ${JSON.stringify(kindRaw)}`);
  }
  const kind: TaskKind = kindRaw;

  // labels
  let labelNames: string[] = [];
  let labelWords: string[] = [];
  if (kind === 'classification') {
    const labels = raw['labels'];
    if (labels === undefined) throw new LmtuneError('CONFIG', `${file}:1: a classification task needs "labels" (raw label value -> label word)`);
    if (Array.isArray(labels)) {
      labelNames = labels.map((_, i) => String(i));
      labelWords = labels.map((w) => String(w));
      const bad = labels.findIndex((w) => typeof w !== 'string');
      if (bad >= 0) throw new LmtuneError('CONFIG', `${atEntry('labels', bad)}: label words must be strings, got ${JSON.stringify(labels[bad])}`);
    } else if (labels !== null && typeof labels === 'object') {
      for (const [k, w] of Object.entries(labels as Record<string, unknown>)) {
        if (typeof w !== 'string' || w === '') throw new LmtuneError('CONFIG', `${atEntry('labels', k)}: label ${JSON.stringify(k)} needs a non-empty word, got ${JSON.stringify(w)}`);
        labelNames.push(k);
        labelWords.push(w);
      }
    } else throw new LmtuneError('CONFIG', `${at('labels')}: "labels" must be a mapping or a list`);
    if (labelNames.length < 2) throw new LmtuneError('CONFIG', `${at('labels')}: need at least two labels`);
    // two classes with one word cannot be told apart: every prediction of one is scored as the other
    const seen = new Map<string, string>();
    labelWords.forEach((w, i) => {
      const other = seen.get(w);
      if (other !== undefined) throw new LmtuneError('CONFIG', `${atEntry('labels', Array.isArray(labels) ? i : labelNames[i]!)}: labels ${JSON.stringify(other)} and ${JSON.stringify(labelNames[i])} have the same word ${JSON.stringify(w)}`, 'give every label its own word');
      seen.set(w, labelNames[i]!);
    });
  } else if (raw['labels'] !== undefined) {
    throw new LmtuneError('CONFIG', `${at('labels')}: "labels" only applies to classification tasks`);
  }

  const metricRaw = str('metric') ?? (kind === 'classification' ? 'accuracy' : 'f1');
  const allowed: MetricName[] = kind === 'classification' ? ['accuracy', 'macro-f1'] : ['f1', 'em'];
  if (!(allowed as string[]).includes(metricRaw)) {
    throw new LmtuneError('CONFIG', `${at('metric')}: metric ${JSON.stringify(metricRaw)} does not fit a ${kind} task`, `use one of ${allowed.join(', ')}`);
  }
  const metric = metricRaw as MetricName;

  const promptText = str('prompt');
  const maskedText = str('masked_prompt');
  if (promptText === undefined && maskedText === undefined) throw new LmtuneError('CONFIG', `${file}:1: give "prompt" (causal LMs) and/or "masked_prompt" (masked LMs)`);
  if (kind === 'generation' && maskedText !== undefined) throw new LmtuneError('CONFIG', `${at('masked_prompt')}: generation tasks need a causal "prompt", not "masked_prompt"`);

  const answerVar = kind === 'classification' ? 'label_word' : 'answer';
  const answerText = str('answer') ?? (kind === 'classification' ? ' {label_word}' : ' {answer}\n');
  const answerPieces = parsePlaceholders(answerText, () => at('answer'));
  const answerFields = answerPieces.flatMap((p) => ('field' in p ? [p.field] : []));
  if (!answerFields.includes(answerVar) || answerFields.some((f) => f !== answerVar)) {
    throw new LmtuneError('CONFIG', `${at('answer')}: "answer" must use {${answerVar}} and nothing else, got ${JSON.stringify(answerText)}`);
  }

  const promptPieces = promptText === undefined ? undefined : parsePlaceholders(promptText, () => at('prompt'));
  const maskedPieces = maskedText === undefined ? undefined : parsePlaceholders(maskedText, () => at('masked_prompt'));
  for (const [k, pieces] of [
    ['prompt', promptPieces],
    ['masked_prompt', maskedPieces],
  ] as const) {
    for (const p of pieces ?? []) {
      if ('field' in p && (p.field === 'label_word' || p.field === 'answer')) throw new LmtuneError('CONFIG', `${at(k)}: {${p.field}} belongs in "answer", not "${k}"`);
      if ('field' in p && p.field === 'mask' && k === 'prompt') throw new LmtuneError('CONFIG', `${at(k)}: {mask} belongs in "masked_prompt"`);
    }
  }
  if (maskedPieces && maskedPieces.filter((p) => 'field' in p && p.field === 'mask').length !== 1) {
    throw new LmtuneError('CONFIG', `${at('masked_prompt')}: "masked_prompt" needs exactly one {mask}`);
  }
  const dataFields = [...new Set([...(promptPieces ?? []), ...(maskedPieces ?? [])].flatMap((p) => ('field' in p && p.field !== 'mask' ? [p.field] : [])))];
  if (dataFields.length === 0) throw new LmtuneError('CONFIG', `${at(promptText !== undefined ? 'prompt' : 'masked_prompt')}: the prompt uses no {field} of the data`);

  const labelField = str('label_field') ?? 'label';
  const answersField = str('answers_field') ?? 'answers';
  const stopRaw = raw['stop'];
  if (stopRaw !== undefined && (!Array.isArray(stopRaw) || stopRaw.some((s) => typeof s !== 'string' || s === ''))) {
    throw new LmtuneError('CONFIG', `${at('stop')}: "stop" must be a list of non-empty strings`);
  }
  const stop = (stopRaw as string[] | undefined) ?? ['\n'];
  const maxNewTokens = int('max_new_tokens', 1) ?? 50;
  const maxLength = int('max_length', 4) ?? 128;
  const demoSeparator = str('demo_separator') ?? '\n\n';

  const parse = (rec: RawRecord): Example[] => {
    const fields: Record<string, string> = {};
    for (const f of dataFields) fields[f] = getString(rec, f, [f]);
    const id = `${rec.file}:${rec.line}`;
    if (kind === 'classification') {
      const label = getLabel(rec, [labelField], labelNames);
      return [{ id, fields, label, candidates: [], correct: [label], answers: [] }];
    }
    return [{ id, fields, label: -1, candidates: [], correct: [], answers: getStringList(rec, 'answers', [answersField]) }];
  };

  let causal: CausalTemplate | undefined;
  if (promptPieces) {
    const pp = promptPieces;
    causal = {
      prompt: (ex) => render(pp, ex.fields),
      verbalize: (ex, c) =>
        render(pp, ex.fields) + render(answerPieces, kind === 'classification' ? { label_word: labelWords[c]! } : { answer: ex.answers[0]! }),
      sfcPrompt: () => '',
      sfcVerbalize: (_ex, c) => render(answerPieces, kind === 'classification' ? { label_word: labelWords[c]! } : { answer: '' }),
    };
  }

  let masked: MaskedTemplate | undefined;
  if (maskedPieces) {
    const order = dataFields;
    const parts: MaskedPart[] = [{ kind: 'special', token: 'cls' }];
    for (const p of maskedPieces) {
      if ('literal' in p) parts.push({ kind: 'text', text: p.literal });
      else if (p.field === 'mask') parts.push({ kind: 'special', token: 'mask' });
      else parts.push({ kind: 'sent', index: order.indexOf(p.field), leadingSpace: false, firstCase: 'keep', dropLastChar: false });
    }
    parts.push({ kind: 'special', token: 'sep' });
    masked = { source: maskedText!, parts, texts: (ex) => order.map((f) => ex.fields[f]!), labelWords, maxLength };
  }

  return {
    name,
    kind,
    metric,
    labelNames,
    labelWords,
    parse,
    ...(causal ? { causal } : {}),
    ...(masked ? { masked } : {}),
    demoSeparator,
    maxNewTokens,
    stop,
    provenance: `task file ${file}`,
  };
}
