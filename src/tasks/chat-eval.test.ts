/**
 * `lmtune eval --task chat` on the embedded tiny GPT-2 (assets/tiny-english-lm): the accuracy of ranking
 * choices and the EM/F1 of greedy generations equal a brute-force computation written independently
 * (hand-written Tulu strings, one continuationLogprobs call per choice, greedy decoding by full forward
 * passes instead of the key/value cache), for mean and sum scoring; bad rows are errors naming file:line.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { register } from '../cli/eval.ts';
import type { CausalLM, ContinuationRequest } from '../models/api.ts';
import { encodeChat, type ChatRow } from './chat.ts';
import { asLanguageModel, loadTransformer } from '../heads/model.ts';
import { LmtuneError } from '../util/errors.ts';
import { runEvaluation } from './run-eval.ts';
import { exactMatch, squadF1 } from './metrics.ts';

const MODEL = new URL('../../assets/tiny-english-lm', import.meta.url).pathname;
const tm = await loadTransformer(MODEL, { threads: 1 });
const lm = asLanguageModel(tm);
const causal = lm as CausalLM;
const tok = tm.tokenizer!;
const EOS = '<|endoftext|>';
const BOS = tok.bosId!;

const dir = mkdtempSync(join(tmpdir(), 'lmtune-chat-eval-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const choiceRows = [
  { messages: [{ role: 'user', content: 'Is fire hot? Answer yes or no.' }], choices: ['yes', 'no'], label: 'yes' },
  { messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: 'Which is a color?' }], choices: ['red', 'dog', 'the table'], label: 'red' },
  { messages: [{ role: 'user', content: 'Name a day.' }, { role: 'assistant', content: 'Monday' }], choices: [' Monday ', 'Sunday', 'Monday and Sunday'], label: ' Monday ' },
  { messages: [{ role: 'user', content: 'The cat sat on the' }], choices: ['mat', 'moon'], label: 'moon' },
  // longer than the 64-token context: the oldest tokens go, BOS stays
  { messages: [{ role: 'user', content: 'Read this story. ' + 'The old man walked to the river and sat down. '.repeat(4) + 'Was he tired?' }], choices: ['yes', 'no'], label: 'no' },
];
const genRows = [
  { messages: [{ role: 'user', content: 'Say hello.' }], answers: ['hello', 'the old king'] },
  { messages: [{ role: 'user', content: 'Who wrote it?' }, { role: 'assistant', content: 'The man' }] },
];
const choiceFile = join(dir, 'choices.jsonl');
const genFile = join(dir, 'gen.jsonl');
writeFileSync(choiceFile, choiceRows.map((r) => JSON.stringify(r)).join('\n') + '\n');
writeFileSync(genFile, genRows.map((r) => JSON.stringify(r)).join('\n') + '\n');

/** the context a chat row is scored after, written out by hand */
function contextText(msgs: { role: string; content: string }[]): string {
  const ctx = msgs[msgs.length - 1]!.role === 'assistant' ? msgs.slice(0, -1) : msgs;
  return ctx.map((m) => `<|${m.role}|>\n${m.content.trim()}\n`).join('') + '<|assistant|>\n';
}

async function bruteAccuracy(scoring: 'mean' | 'sum'): Promise<{ accuracy: number; truncated: number }> {
  let right = 0;
  let truncated = 0;
  for (const r of choiceRows) {
    const ctx = [BOS, ...tok.encode(contextText(r.messages))];
    let cut = false;
    const scores: number[] = [];
    for (const c of r.choices) {
      const cont = tok.encode(c.trim() + EOS);
      let prompt = ctx;
      // the window is training's (--truncation left): the reply + EOS + "\n" (one token) gets a room
      // of a multiple of 8 tokens and the context its last 63 − room tokens
      const room = Math.ceil((cont.length + 1) / 8) * 8;
      if (prompt.length + room > 64) {
        prompt = [BOS, ...ctx.slice(ctx.length - (64 - room - 1))];
        cut = true;
      }
      const [lp] = await causal.continuationLogprobs([{ prompt, continuation: cont }]);
      const s = Array.from(lp!).reduce((a, b) => a + b, 0);
      scores.push(scoring === 'sum' ? s : s / lp!.length);
    }
    let best = 0;
    for (let c = 1; c < scores.length; c++) if (scores[c]! > scores[best]!) best = c;
    if (r.choices[best] === r.label) right++;
    if (cut) truncated++;
  }
  return { accuracy: right / choiceRows.length, truncated };
}

/** greedy decoding by full forward passes (no key/value cache), stopping at EOS or a role header */
async function bruteGenerate(prompt: number[], maxNew: number): Promise<string> {
  const ids = [...prompt];
  const out: number[] = [];
  const V = tok.vocabSize;
  for (let s = 0; s < maxNew; s++) {
    // a second row of full length keeps one compiled shape; causal attention ignores it for row 0
    const { logits, seq } = await tm.forwardAll([ids, new Array(64).fill(0)]);
    assert.equal(seq, 64);
    const base = (ids.length - 1) * V; // row 0, position ids.length − 1
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[base + v]! > logits[base + best]!) best = v;
    if (best === tok.eosId) break;
    out.push(best);
    ids.push(best);
    const text = tok.decode(out);
    const stops = ['<|user|>', '<|assistant|>', '<|system|>'].map((h) => text.indexOf(h)).filter((i) => i >= 0);
    if (stops.length) return text.slice(0, Math.min(...stops));
  }
  return tok.decode(out);
}

test('choice ranking: accuracy and truncation equal a brute-force loop over continuationLogprobs (mean and sum)', async () => {
  for (const scoring of ['mean', 'sum'] as const) {
    const want = await bruteAccuracy(scoring);
    const got = await runEvaluation(lm, { task: 'chat', data: choiceFile, scoring });
    assert.equal(got.metric, 'accuracy');
    assert.equal(got.n, choiceRows.length);
    assert.equal(got.value, want.accuracy, scoring);
    assert.equal(got.truncated, want.truncated);
    assert.equal(want.truncated, 1, 'fixture: one row is longer than the context');
  }
});

test('generation rows: EM/F1 of greedy replies equal a cache-free greedy decode', async () => {
  const got = await runEvaluation(lm, { task: 'chat', data: genFile });
  const f1s: number[] = [];
  const ems: number[] = [];
  for (let i = 0; i < genRows.length; i++) {
    const r = genRows[i]!;
    const answers = r.answers ?? [r.messages[r.messages.length - 1]!.content];
    const longest = Math.max(...answers.map((a) => tok.encode(a.trim()).length));
    const text = (await bruteGenerate([BOS, ...tok.encode(contextText(r.messages))], Math.min(64, longest + 9))).trim();
    assert.equal(got.predictions[i]!.prediction, text);
    f1s.push(squadF1(text, answers));
    ems.push(exactMatch(text, answers) ? 1 : 0);
  }
  assert.equal(got.metric, 'f1');
  assert.ok(f1s[0]! > 0, 'fixture: the first reply overlaps a gold answer');
  assert.equal(got.metrics['f1'], f1s.reduce((a, b) => a + b) / f1s.length);
  assert.equal(got.metrics['em'], ems.reduce((a, b) => a + b) / ems.length);
});

test('lmtune eval --task chat --json through the CLI', async () => {
  const out: string[] = [];
  const program = new Command().exitOverride();
  register(program, { loadModel: async () => lm, stdout: (s) => out.push(s), stderr: () => undefined, tty: false });
  await program.parseAsync(['node', 'lmtune', 'eval', '--model', MODEL, '--task', 'chat', '--data', choiceFile, '--json', '--scoring', 'sum', '--out', join(dir, 'r.json')]);
  const r = JSON.parse(out.join('')) as { metric: string; value: number; n: number; truncated: number };
  assert.equal(r.metric, 'accuracy');
  assert.equal(r.value, (await bruteAccuracy('sum')).accuracy);
  assert.equal(r.truncated, 1);
});

test('each choice is scored in the window training sees for the row with that choice as its reply (left truncation)', async () => {
  // a context longer than the model: training with --truncation left keeps BOS + the tail of
  // "<|user|>\n…\n<|assistant|>\n" + choice + EOS + "\n" (chat.test.ts pins that window); the scored
  // request must be exactly that window minus the tokens after EOS, whatever the choice's length
  const row = { messages: [{ role: 'user', content: 'Read this story. ' + 'The old man walked to the river and sat down. '.repeat(5) + 'Was he tired?' }], choices: ['yes', 'a little tired', 'abbreviation'], label: 'yes' };
  const f = join(dir, 'window.jsonl');
  writeFileSync(f, JSON.stringify(row) + '\n');
  const seen: ContinuationRequest[] = [];
  const spy: CausalLM = { ...causal, continuationLogprobs: (reqs) => { seen.push(...reqs); return causal.continuationLogprobs(reqs); } };
  const got = await runEvaluation(spy, { task: 'chat', data: f, scoring: 'sum' });
  assert.equal(got.truncated, 1);
  assert.equal(seen.length, row.choices.length);
  row.choices.forEach((c, i) => {
    const trained = encodeChat({ line: 1, raw: '', messages: [...row.messages, { role: 'assistant', content: c }] } as ChatRow, tok, 64, { truncation: 'left' });
    assert.ok(trained.truncated);
    const eos = trained.ids.lastIndexOf(tok.eosId!);
    const want = trained.ids.slice(0, eos + 1);
    assert.deepEqual([...seen[i]!.prompt, ...seen[i]!.continuation], want, c);
    assert.deepEqual(seen[i]!.continuation, tok.encode(c + EOS), c);
    // the scored tokens are the ones training supervises for this reply (all but the trailing "\n")
    assert.equal(trained.supervisedCount, seen[i]!.continuation.length + 1, c);
  });
});

test('rows that cannot be evaluated are errors naming file:line', async () => {
  const cases: [unknown, RegExp][] = [
    [{ messages: [{ role: 'user', content: 'q' }], choices: ['a', 'b'], label: 'c' }, /"label" "c" is not one of the choices/],
    [{ messages: [{ role: 'user', content: 'q' }], choices: ['a', 'b'] }, /"choices" without "label"/],
    [{ messages: [{ role: 'user', content: 'q' }] }, /nothing to score/],
    [{ messages: [{ role: 'system', content: 's' }, { role: 'assistant', content: 'a' }] }, /must end with a user turn/],
  ];
  for (const [bad, re] of cases) {
    const f = join(dir, 'bad.jsonl');
    writeFileSync(f, `${JSON.stringify(choiceRows[0])}\n${JSON.stringify(bad)}\n`);
    await assert.rejects(runEvaluation(lm, { task: 'chat', data: f }), (e: unknown) => e instanceof LmtuneError && e.message.startsWith(`${f}:2: `) && re.test(e.message));
  }
});
