/**
 * Chat data (less.md §2, §5.7): parsing with file:line errors and raw lines kept, the Tulu rendering
 * and its loss mask against the embedded model's GPT-2-style BPE tokenizer, truncation counting.
 * Mask boundaries are checked independently of the prefix re-tokenization encodeChat uses: every maximal
 * run of supervised tokens must decode to exactly one assistant turn's stripped content + EOS + "\n".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTokenizer } from '../models/tokenizer.ts';
import { LmtuneError } from '../util/errors.ts';
import { encodeChat, encodeChatRows, parseChatJsonl, pyStrip, renderTulu, REPLY_ROOM, type ChatRow } from './chat.ts';

const tok = await loadTokenizer(new URL('../../assets/tiny-english-lm', import.meta.url).pathname);
const EOS = '<|endoftext|>';

function row(o: unknown, file = 'mem.jsonl'): ChatRow {
  return parseChatJsonl(JSON.stringify(o) + '\n', file).rows[0]!;
}

/** maximal runs of supervised positions, decoded */
function supervisedSpans(ids: readonly number[], sup: Uint8Array): string[] {
  const spans: string[] = [];
  let t = 0;
  while (t < ids.length) {
    if (!sup[t]) {
      t++;
      continue;
    }
    const s = t;
    while (t < ids.length && sup[t]) t++;
    spans.push(tok.decode(ids.slice(s, t)));
  }
  return spans;
}

const multi = {
  dataset: 'toy',
  id: 'toy_0',
  messages: [
    { role: 'system', content: ' Be brief. ' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Sum 2+2?' },
    { role: 'assistant', content: ' 4 ' },
  ],
};

test('multi-turn row: golden ids, rendering round trip, and piecewise tokenization agree', () => {
  const e = encodeChat(row(multi), tok, 1024);
  // recorded from the embedded tokenizer (assets/tiny-english-lm); pins the BOS + template bytes
  const golden = [
    4095, 60, 124, 1116, 3557, 124, 62, 10, 2165, 784, 1452, 46, 10, 60, 124, 407, 261, 124, 62, 10, 72, 105, 10, 60, 124, 573, 419, 404, 124, 62, 10, 72, 529, 111, 33, 4095, 10,
    60, 124, 407, 261, 124, 62, 10, 83, 386, 565, 43, 50, 63, 10, 60, 124, 573, 419, 404, 124, 62, 10, 52, 4095, 10,
  ];
  assert.deepEqual(e.ids, golden);
  // independent: the text the ids decode to is the hand-written Tulu rendering with BOS first
  const expectedText = `${EOS}<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello!${EOS}\n<|user|>\nSum 2+2?\n<|assistant|>\n4${EOS}\n`;
  assert.equal(tok.decode(e.ids), expectedText);
  // independent: GPT-2 pre-tokenization splits at "\n", so tokenizing line by line gives the same ids
  const pieces = expectedText.slice(EOS.length).split(/(?<=\n)/);
  assert.deepEqual(e.ids, [tok.eosId!, ...pieces.flatMap((p) => tok.encode(p))]);
  assert.equal(e.truncated, false);
});

test('mask: supervised runs decode to exactly each assistant turn + EOS + "\\n"', () => {
  const e = encodeChat(row(multi), tok, 1024);
  const want = multi.messages.filter((m) => m.role === 'assistant').map((m) => pyStrip(m.content) + EOS + '\n');
  assert.deepEqual(supervisedSpans(e.ids, e.supervised), want);
  let n = 0;
  for (const s of e.supervised) n += s;
  assert.equal(e.supervisedCount, n);
  assert.equal(e.supervised.length, e.ids.length);
  assert.equal(e.supervised[0], 0);
});

test('mask on a row that starts with an assistant turn and ends with a user turn', () => {
  const r = row({ messages: [{ role: 'assistant', content: 'Welcome.' }, { role: 'user', content: 'Thanks' }] });
  const e = encodeChat(r, tok, 1024);
  // nothing masks the first assistant turn's header in the reference (only non-assistant messages are
  // masked); position 0 (BOS) is never supervised
  assert.deepEqual(supervisedSpans(e.ids, e.supervised), [`<|assistant|>\nWelcome.${EOS}\n`]);
});

test('prompt/completion rows: the reference seam rule and the loss after the prompt', () => {
  const a = encodeChat(row({ prompt: 'Q: 2+2=', completion: '4' }), tok, 1024);
  assert.equal(tok.decode(a.ids), `${EOS}Q: 2+2= 4${EOS}`);
  assert.deepEqual(supervisedSpans(a.ids, a.supervised), [` 4${EOS}`]);
  const b = encodeChat(row({ prompt: 'Q: 2+2=\n', completion: '4' }), tok, 1024);
  assert.equal(tok.decode(b.ids), `${EOS}Q: 2+2=\n4${EOS}`);
  assert.deepEqual(supervisedSpans(b.ids, b.supervised), [`4${EOS}`]);
});

test('truncation: right cut, counted, supervised tokens recounted; all cut away is an error naming file:line', () => {
  const text = [
    JSON.stringify({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'short' }] }),
    JSON.stringify(multi),
    JSON.stringify({ messages: [{ role: 'user', content: 'word '.repeat(40) }, { role: 'assistant', content: 'late' }] }),
    '',
  ].join('\n');
  const { rows } = parseChatJsonl(text, 'cut.jsonl');
  const full = rows.map((r) => encodeChat(r, tok, 100000));
  const maxLength = 40;
  // the expected outcome from the untruncated encodings
  const expectTruncated = full.filter((f) => f.ids.length > maxLength).length;
  const expectSkipped = full.map((f, i) => (f.supervised.slice(0, maxLength).some((s) => s === 1) ? -1 : rows[i]!.line)).filter((l) => l > 0);
  assert.ok(expectTruncated >= 2 && expectSkipped.length === 1, 'fixture: two rows over the cap, one with every answer token past it');
  assert.throws(() => encodeChat(rows[2]!, tok, maxLength), (e: unknown) => e instanceof LmtuneError && e.code === 'DATA' && e.message.startsWith('cut.jsonl:3:'));
  const out = encodeChatRows(rows, tok, maxLength, { skipInvalid: true });
  assert.deepEqual(out.skipped.map((s) => s.line), expectSkipped);
  assert.equal(out.truncated + out.skipped.length, expectTruncated);
  for (let i = 0; i < out.rows.length; i++) {
    const f = full[rows.indexOf(out.rows[i]!)]!;
    const e = out.encoded[i]!;
    assert.deepEqual(e.ids, f.ids.slice(0, maxLength));
    assert.equal(e.truncated, f.ids.length > maxLength);
    assert.equal(e.supervisedCount, f.supervised.slice(0, maxLength).reduce((s, x) => s + x, 0));
  }
  assert.throws(() => encodeChatRows(rows, tok, maxLength), /cut\.jsonl:3: every assistant token is cut/);
});

test('left truncation keeps BOS and the last tokens, mask included', () => {
  const r = row(multi, 'left.jsonl');
  const full = encodeChat(r, tok, 100000);
  const L = 20;
  const e = encodeChat(r, tok, L, { truncation: 'left' });
  assert.equal(e.truncated, true);
  // the final reply "4<EOS>\n" (3 tokens) gets a room of 8: the window is L − 5 tokens long and the
  // reply starts at position L − 8
  const reply = 3;
  const kept = L - 1 - (REPLY_ROOM - reply);
  assert.deepEqual(e.ids, [tok.eosId!, ...full.ids.slice(full.ids.length - kept)]);
  assert.deepEqual([...e.supervised], [0, ...full.supervised.slice(full.ids.length - kept)]);
  assert.equal(e.ids.length - reply, L - REPLY_ROOM);
  // the last answer survives whole: the final supervised run is "4<EOS>\n"
  assert.equal(supervisedSpans(e.ids, e.supervised).at(-1), `4${EOS}\n`);
  // on the right (the reference) the same cap leaves no assistant token
  assert.ok(full.supervised.slice(0, L).every((x) => x === 0));
  assert.throws(() => encodeChat(r, tok, L), /left\.jsonl:1: every assistant token is cut/);
});

test('left truncation: where a cut row\'s reply starts does not depend on the reply\'s length (within 8 tokens)', () => {
  const question = 'What type of answer does this question expect? ' + 'Choose one of the six kinds of answer. '.repeat(3) + 'Question: who wrote it ?';
  const L = 40;
  const starts = new Map<number, number>();
  for (const label of ['entity', 'abbreviation', 'human', 'a number, a count or a quantity of some things']) {
    const r = row({ messages: [{ role: 'user', content: question }, { role: 'assistant', content: label }] }, 'labels.jsonl');
    const full = encodeChat(r, tok, 100000);
    const e = encodeChat(r, tok, L, { truncation: 'left' });
    const replyLength = tok.encode(label + EOS + '\n').length;
    const first = e.supervised.indexOf(1);
    assert.equal(e.ids.length - first, replyLength, label);
    // the window is the untruncated encoding's tail after BOS, the prompt cut just enough to give the reply its room
    assert.deepEqual(e.ids.slice(1), full.ids.slice(full.ids.length - (e.ids.length - 1)), label);
    assert.equal(first, L - Math.ceil(replyLength / REPLY_ROOM) * REPLY_ROOM, label);
    const room = Math.ceil(replyLength / REPLY_ROOM);
    if (starts.has(room)) assert.equal(first, starts.get(room), label);
    starts.set(room, first);
  }
  assert.ok(starts.size === 2, 'fixture: three labels share one room, one needs the next');
});

test('a row without an assistant turn cannot be trained on', () => {
  assert.throws(() => encodeChat(row({ messages: [{ role: 'user', content: 'hi' }] }, 'u.jsonl'), tok, 64), /u\.jsonl:1: no assistant turn/);
});

test('parse: raw lines kept byte for byte, optional fields, CRLF and blank lines', () => {
  const l1 = '{"dataset": "trec",  "id": "t_0", "subtask": "trec", "messages": [{"role": "user", "content": "Qué?"}], "choices": ["a", "b"], "label": "b"}';
  const l3 = '{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],"answers":"y"}\r';
  const { rows, skipped } = parseChatJsonl(`${l1}\n\n${l3}\n`, 'p.jsonl');
  assert.equal(skipped.length, 0);
  assert.deepEqual(rows.map((r) => [r.line, r.raw]), [
    [1, l1],
    [3, l3],
  ]);
  assert.equal(rows.map((r) => r.raw + '\n').join(''), `${l1}\n${l3}\n`);
  const r = rows[0]!;
  assert.deepEqual([r.dataset, r.id, r.subtask, r.choices, r.label, r.file], ['trec', 't_0', 'trec', ['a', 'b'], 'b', 'p.jsonl']);
  assert.deepEqual(rows[1]!.answers, ['y']);
});

test('Tulu rendering strips as Python str.strip() does', () => {
  assert.equal(pyStrip('\u0085 a b\u001f\u3000'), 'a b');
  assert.equal(pyStrip('\ufeffa'), '\ufeffa');
  assert.equal(renderTulu([{ role: 'user', content: ' q ' }, { role: 'assistant', content: '\ta\n' }], '</s>'), '<|user|>\nq\n<|assistant|>\na</s>\n');
});

test('every bad row is an error naming file:line, or skipped with skipInvalid', () => {
  const good = JSON.stringify({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] });
  const bad: [string, RegExp][] = [
    ['{"messages": [', /not valid JSON/],
    ['[1, 2]', /expected a JSON object/],
    ['{"dataset": "x"}', /no "messages"/],
    ['{"messages": []}', /"messages" is empty/],
    ['{"messages": "hi"}', /"messages" must be a list/],
    ['{"messages": [{"role": "bot", "content": "a"}]}', /messages\[0\] has role "bot"/],
    ['{"messages": [{"role": "user", "content": 3}]}', /messages\[0\] \(user\) content must be a string/],
    ['{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}', /messages\[1\] is an empty assistant turn/],
    ['{"prompt": "q", "completion": ""}', /empty "completion"/],
    ['{"prompt": "q"}', /"completion" must be a string/],
    ['{"messages": [{"role": "user", "content": "q"}], "choices": ["a", "b"], "label": "c"}', /"label" "c" is not one of the choices/],
    ['{"messages": [{"role": "user", "content": "q"}], "choices": ["a", "a"]}', /lists "a" twice/],
    ['{"messages": [{"role": "user", "content": "q"}], "answers": [1]}', /"answers" must be a list of strings/],
  ];
  for (const [line, re] of bad) {
    const text = `${good}\n\n${line}\n${good}\n`;
    assert.throws(
      () => parseChatJsonl(text, 'data/bad.jsonl'),
      (e: unknown) => e instanceof LmtuneError && e.code === 'DATA' && e.message.startsWith('data/bad.jsonl:3: ') && re.test(e.message),
      line,
    );
    const { rows, skipped } = parseChatJsonl(text, 'data/bad.jsonl', { skipInvalid: true });
    assert.deepEqual(rows.map((r) => r.line), [1, 4]);
    assert.equal(skipped.length, 1);
    assert.equal(skipped[0]!.line, 3);
    assert.match(skipped[0]!.reason, re);
  }
});
