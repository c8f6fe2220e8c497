/** KV-cached greedy generation equals greedy decoding by full forward passes (real tiny GPT-2 checkpoint). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransformerModel } from './model.ts';

const DIR = '../shared/data/models/tiny-random-gpt2';

test('real tiny-random-gpt2 loads (intermediate_size quirk) and KV-cached greedy decoding matches full recomputation', async () => {
  const m = await TransformerModel.load(DIR, { threads: 1 });
  assert.equal(m.cfg.intermediateSize, 128); // the weights decide, not the stray intermediate_size: 37
  const prompt = m.tokenizer!.encode('Hello world, this is');
  assert.ok(prompt.length > 2);
  const text = await m.generate(prompt, { maxNewTokens: 6 });
  // naive greedy: recompute everything for each new token
  const ids = [...prompt];
  const V = m.cfg.vocabSize;
  const eos = m.tokenizer!.eosId;
  const naive: number[] = [];
  for (let s = 0; s < 6; s++) {
    const { logits } = await m.forwardAll([ids]);
    const t = ids.length - 1;
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[t * V + v]! > logits[t * V + best]!) best = v;
    if (best === eos) break;
    naive.push(best);
    ids.push(best);
  }
  assert.equal(text, m.tokenizer!.decode(naive));
});
