/** The BPE trainer's vocab.json + merges.txt load as a GPT-2 tokenizer that encodes text the way the learned merges say. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mergesText, trainBpe, wordCounts, END_OF_TEXT } from './bpe.ts';
import { loadTokenizer } from '../models/tokenizer.ts';

test('trained merges follow pair frequencies and round-trip through the HF tokenizer', async () => {
  const corpus = ['low lower lowest low low', 'newer newest new new', 'the film was great', 'the film was terrible'];
  const counts = wordCounts(corpus);
  assert.equal(counts.get('Ġlow'), 2); // " low" twice; the first "low" has no leading space
  assert.equal(counts.get('low'), 1);
  const { vocab, merges } = trainBpe(counts, 300);
  // the most frequent pair in this corpus: "Ġ" + "l"... count pairs by hand for the first merge
  const pairs = new Map<string, number>();
  for (const [w, c] of counts) {
    const s = [...w];
    for (let i = 0; i + 1 < s.length; i++) pairs.set(`${s[i]} ${s[i + 1]}`, (pairs.get(`${s[i]} ${s[i + 1]}`) ?? 0) + c);
  }
  const top = Math.max(...pairs.values());
  const firstByHand = [...pairs.entries()].filter(([, c]) => c === top).map(([k]) => k).sort()[0];
  assert.equal(merges[0]!.join(' '), firstByHand);
  assert.equal(vocab[END_OF_TEXT], Object.keys(vocab).length - 1);
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-bpe-'));
  try {
    writeFileSync(join(dir, 'vocab.json'), JSON.stringify(vocab));
    writeFileSync(join(dir, 'merges.txt'), mergesText(merges));
    const tok = await loadTokenizer(dir, 'gpt2');
    for (const s of ['the film was great', 'lowest newer', 'unseen words ✓ work too']) assert.equal(tok.decode(tok.encode(s)), s);
    // a frequent word is one token
    assert.deepEqual(tok.encode(' film'), [vocab['Ġfilm']]);
    assert.equal(tok.eosId, vocab[END_OF_TEXT]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
