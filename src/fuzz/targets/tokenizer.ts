/**
 * Tokenizers: tokenizer.json, or vocab.json + merges.txt (+ tokenizer_config.json), built from a slice
 * of the embedded model's BPE vocabulary and edited as JSON / text; loaded with `loadTokenizer` and used
 * to encode and decode a sentence, as every task does.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { loadTokenizer } from '../../models/tokenizer.ts';
import { applyTextEdit, documentEdits, mutateJsonText, rarely, textEdit, type DocumentEdits, type Json, type TextEdit } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';
import { diskFolder } from '../../node/folder.ts';

const ASSET = new URL('../../../assets/tiny-english-lm/', import.meta.url).pathname;

export interface TokenizerInput {
  layout: 'tokenizer.json' | 'vocab+merges';
  family: 'gpt2' | 'roberta' | 'llama' | null;
  main: DocumentEdits;
  merges: TextEdit;
  tokenizerConfig: DocumentEdits | null;
}

let seed: { vocab: Record<string, number>; merges: string[] } | null = null;
/** ids below 300 and the merges that stay inside them: small enough to mutate quickly */
function seedFiles(): { vocab: Record<string, number>; merges: string[] } {
  if (seed) return seed;
  const full = JSON.parse(readFileSync(join(ASSET, 'vocab.json'), 'utf8')) as Record<string, number>;
  const vocab: Record<string, number> = {};
  for (const [k, v] of Object.entries(full)) if (v < 300) vocab[k] = v;
  const merges = readFileSync(join(ASSET, 'merges.txt'), 'utf8')
    .split('\n')
    .filter((l) => !l.startsWith('#') && l.includes(' '))
    .filter((l) => {
      const [a, b] = l.split(' ');
      return a! in vocab && b! in vocab && a! + b! in vocab;
    });
  seed = { vocab, merges };
  return seed;
}

function tokenizerJson(vocab: Record<string, number>, merges: string[]): Json {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: 0, content: '!', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '!', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [], special_tokens: { '!': { id: '!', ids: [0], tokens: ['!'] } } },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

const TC: Json = { bos_token: '!', eos_token: '"', pad_token: '#', add_prefix_space: false, model_max_length: 64, added_tokens_decoder: { '0': { content: '!', special: true } } };

export const tokenizerTarget: FuzzTarget<TokenizerInput> = {
  name: 'tokenizer',
  description: 'tokenizer.json / vocab.json + merges.txt / tokenizer_config.json through loadTokenizer, then encode + decode',
  input: fc.record({
    layout: fc.constantFrom('tokenizer.json' as const, 'vocab+merges' as const),
    family: fc.constantFrom('gpt2' as const, 'roberta' as const, 'llama' as const, null),
    main: documentEdits,
    merges: textEdit,
    tokenizerConfig: rarely(documentEdits),
  }),
  prepare(i, dir) {
    const { vocab, merges } = seedFiles();
    if (i.layout === 'tokenizer.json') {
      writeFileSync(join(dir, 'tokenizer.json'), mutateJsonText(tokenizerJson(vocab, merges), i.main));
    } else {
      writeFileSync(join(dir, 'vocab.json'), mutateJsonText(vocab, i.main));
      writeFileSync(join(dir, 'merges.txt'), applyTextEdit(Buffer.from(['#version: 0.2', ...merges].join('\n') + '\n'), i.merges));
    }
    if (i.tokenizerConfig) writeFileSync(join(dir, 'tokenizer_config.json'), mutateJsonText(TC, i.tokenizerConfig));
  },
  async run(i, dir) {
    const tok = await loadTokenizer(diskFolder(dir), i.family ?? undefined);
    const ids = tok.encode('Hello world, ünïcödé 😀 it was great');
    tok.decode(ids);
  },
};
