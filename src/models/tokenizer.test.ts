import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { loadTokenizer } from './tokenizer.ts';

const M = '/work/shared/data/models';
const ROOT = mkdtempSync(join(tmpdir(), 'lmtune-tok-'));
after(() => rmSync(ROOT, { recursive: true, force: true }));
const tmp = (): string => mkdtempSync(join(ROOT, 'd-'));
const vocabOf = (dir: string): Record<string, number> => JSON.parse(readFileSync(join(M, dir, 'vocab.json'), 'utf8'));

const SAMPLES = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  "  two leading spaces, tabs\tand\nnewlines; isn't it?",
  'naïve café — 日本語テキスト, emoji 🤗🚀, Ünïcödé ß',
];

test('gpt2: "Hello" is 15496, " great" is one token, and vocab.json+merges.txt agrees with tokenizer.json', async () => {
  const fromMerges = await loadTokenizer(join(M, 'gpt2-tokenizer'));
  const fromJson = await loadTokenizer(join(M, 'gpt2-fullvocab-n_embd2'));
  assert.equal(fromMerges.source, 'vocab.json+merges.txt');
  assert.equal(fromJson.source, 'tokenizer.json'); // old-style "Ġ t" string merges
  const vocab = vocabOf('gpt2-tokenizer');
  for (const t of [fromMerges, fromJson]) {
    assert.deepEqual(t.encode('Hello'), [15496]);
    assert.deepEqual(t.encode('Hello world'), [15496, 995]);
    // leading-space label words are a single token: the id of 'Ġgreat' read straight from vocab.json
    assert.deepEqual(t.encode(' great'), [vocab['Ġgreat']]);
    assert.equal(t.tokenToId('Ġgreat'), vocab['Ġgreat']);
    assert.equal(t.vocabSize, 50257);
    assert.equal(t.eosId, 50256);
    assert.equal(t.bosId, 50256);
    // GPT-2 adds no special tokens
    assert.deepEqual(t.encode('Hello', { addSpecialTokens: true }), [15496]);
    // the special token in text is one token
    assert.deepEqual(t.encode('a<|endoftext|>'), [vocab['a'], 50256]);
    for (const s of SAMPLES) assert.equal(t.decode(t.encode(s)), s);
  }
  const text = SAMPLES.join(' ');
  assert.deepEqual(fromMerges.encode(text), fromJson.encode(text));
  assert.equal(fromJson.decode([]), '');
});

test('roberta-base: old tokenizer.json without model.type; "Hello" is 31414, template <s> … </s>', async () => {
  const t = await loadTokenizer(join(M, 'roberta-base-tokenizer'), 'roberta');
  const vocab = vocabOf('roberta-base-tokenizer');
  assert.deepEqual(t.encode('Hello'), [31414]);
  assert.deepEqual(t.encode('Hello', { addSpecialTokens: true }), [0, 31414, 2]);
  assert.deepEqual([t.bosId, t.padId, t.eosId, t.maskId, t.vocabSize], [0, 1, 2, 50264, 50265]);
  assert.deepEqual(t.encode(' great'), [vocab['Ġgreat']]);
  // <mask> swallows the space before it (lstrip), so the sentence reads as the model was trained
  const ids = t.encode('The capital of France is <mask>.');
  assert.deepEqual(ids, [vocab['The'], vocab['Ġcapital'], vocab['Ġof'], vocab['ĠFrance'], vocab['Ġis'], 50264, vocab['.']]);
  assert.equal(t.decode([0, 31414, 2], { skipSpecialTokens: true }), 'Hello');
  for (const s of SAMPLES) assert.equal(t.decode(t.encode(s)), s);
  // the same folder with only vocab.json + merges.txt tokenizes identically
  const bare = tmp();
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(M, 'roberta-base-tokenizer', f), join(bare, f));
  const t2 = await loadTokenizer(bare, 'roberta');
  assert.equal(t2.source, 'vocab.json+merges.txt');
  for (const s of [...SAMPLES, 'The capital of France is <mask>.']) assert.deepEqual(t2.encode(s, { addSpecialTokens: true }), t.encode(s, { addSpecialTokens: true }));
});

test('OPT (RoBERTa vocabulary) prepends </s> (id 2) as BOS and adds no EOS', async () => {
  const t = await loadTokenizer(join(M, 'roberta-base-tokenizer'), 'opt');
  assert.deepEqual(t.encode('Hello', { addSpecialTokens: true }), [2, 31414]);
  assert.equal(t.bosId, 2);
});

test('Llama-2 vocabulary (phi3-mini tokenizer.json): known ids, byte fallback, BOS per add_bos_token', async () => {
  const phi = await loadTokenizer(join(M, 'phi3-mini-tokenizer'), 'llama');
  // MANIFEST: ids 259/260/261 are "▁▁", "▁t", "er" as in Llama 2
  assert.deepEqual([phi.tokenToId('▁▁'), phi.tokenToId('▁t'), phi.tokenToId('er')], [259, 260, 261]);
  assert.equal(phi.idToToken(260), '▁t');
  // Llama-2: "Hello world" → ▁Hello (15043) ▁world (3186)
  assert.deepEqual(phi.encode('Hello world'), [15043, 3186]);
  // phi-3's tokenizer_config says add_bos_token: false
  assert.deepEqual(phi.encode('Hello world', { addSpecialTokens: true }), [15043, 3186]);
  // an emoji is not in the vocabulary: byte fallback gives <0xF0><0x9F><0xA4><0x97>, ids 3 + byte
  const emoji = phi.encode('🤗');
  assert.deepEqual(emoji.slice(-4), [0xf0, 0x9f, 0xa4, 0x97].map((b) => 3 + b));
  for (const s of SAMPLES) assert.equal(phi.decode(phi.encode(s)), s);
  // the Llama-2 tokenizer_config (add_bos_token: true) prepends <s> = 1
  const llama = await loadTokenizer(join(M, 'llama2-tokenizer'), 'llama');
  assert.deepEqual(llama.encode('Hello world', { addSpecialTokens: true }), [1, 15043, 3186]);
  assert.deepEqual([llama.bosId, llama.eosId, llama.padId], [1, 2, null]);
  // without a family, the template is read from tokenizer.json's post-processor (TemplateProcessing "<s> $A")
  const generic = await loadTokenizer(join(M, 'llama2-tokenizer'));
  assert.deepEqual(generic.encode('Hello', { addSpecialTokens: true }).slice(0, 1), [1]);
});

test('the tiny checkpoints\' tokenizers load (family from config.json; <|endoftext|> is 0 in tiny-random-gpt2)', async () => {
  const tiny = await loadTokenizer(join(M, 'tiny-random-gpt2'));
  assert.equal(tiny.family, 'gpt2');
  assert.equal(tiny.vocabSize, 1000);
  assert.equal(tiny.eosId, 0);
  assert.equal(tiny.decode(tiny.encode('Hello world')), 'Hello world');
  const full = await loadTokenizer(join(M, 'gpt2-fullvocab-n_embd2'));
  assert.equal(full.family, 'gpt2');
});

test('unusable folders and ids fail with a clear error', async () => {
  const empty = tmp();
  await assert.rejects(loadTokenizer(empty), (e: unknown) => e instanceof LmtuneError && e.code === 'TOKENIZER' && e.message.includes(empty));
  writeFileSync(join(empty, 'tokenizer.model'), 'x');
  await assert.rejects(loadTokenizer(empty), (e: unknown) => e instanceof LmtuneError && e.code === 'UNSUPPORTED' && e.message.includes('tokenizer.model'));
  const bad = tmp();
  writeFileSync(join(bad, 'tokenizer.json'), '{"model": ');
  await assert.rejects(loadTokenizer(bad), (e: unknown) => e instanceof LmtuneError && e.code === 'TOKENIZER' && e.message.includes('tokenizer.json'));
  const badMerges = tmp();
  writeFileSync(join(badMerges, 'vocab.json'), '{"a": 0, "b": 1, "ab": 2}');
  writeFileSync(join(badMerges, 'merges.txt'), '#version: 0.2\na b\na b c\n');
  await assert.rejects(loadTokenizer(badMerges), (e: unknown) => e instanceof LmtuneError && e.message.includes('merges.txt:3'));
  const t = await loadTokenizer(join(M, 'tiny-random-gpt2'));
  assert.throws(() => t.decode([1000]), (e: unknown) => e instanceof LmtuneError && e.code === 'TOKENIZER' && e.message.includes('1000'));
});

test('gemma: <bos>/<eos>/<pad> from the family defaults; GemmaTokenizer prepends <bos> unless add_bos_token is false', async () => {
  // a minimal Gemma-shaped tokenizer.json: specials at Gemma's ids (<pad> 0, <eos> 1, <bos> 2, <unk> 3), no post-processor
  const specials = ['<pad>', '<eos>', '<bos>', '<unk>'];
  const tokenizerJson = {
    version: '1.0',
    added_tokens: specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', fuse_unk: true, byte_fallback: false, vocab: Object.fromEntries([...specials, 'h', 'i', 'hi', '▁', '▁hi'].map((t, id) => [t, id])), merges: ['h i', '▁ hi'] },
  };
  const dir = tmp();
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'GemmaTokenizer' }));
  const g = await loadTokenizer(dir, 'gemma');
  assert.deepEqual([g.bosId, g.eosId, g.padId], [2, 1, 0]);
  assert.deepEqual(g.encode('hi hi'), [6, 8]);
  assert.deepEqual(g.encode('hi hi', { addSpecialTokens: true }), [2, 6, 8]);
  assert.equal(g.decode(g.encode('hi hi')), 'hi hi');
  // the family is read from tokenizer_class when no config.json names it
  const byClass = await loadTokenizer(dir);
  assert.equal(byClass.family, 'gemma');
  assert.deepEqual(byClass.encode('hi', { addSpecialTokens: true }), [2, 6]);
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'GemmaTokenizer', add_bos_token: false }));
  assert.deepEqual((await loadTokenizer(dir, 'gemma')).encode('hi', { addSpecialTokens: true }), [6]);
});
