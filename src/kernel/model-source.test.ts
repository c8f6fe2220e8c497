/**
 * The transformer Jacobian rows (model-source.ts) against central finite differences of f on tiny random
 * GPT-2 and RoBERTa models run by the float64 `ref` executor, every parameter included: the embedding
 * tables' rebuilt per-example gradients (lookups, RoBERTa's label-word decoder rows, GPT-2's tied head)
 * and the engine's per-example gradients of everything else. Then the kernel of those rows equals the
 * brute-force product of the finite-difference Jacobians.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { TransformerModel } from '../heads/model.ts';
import { randomWeights, tinyConfig } from '../models/testing.ts';
import { computeKernels } from './accumulate.ts';
import { attachPeft } from '../peft/index.ts';
import { ModelJacobianSource, groupBlocks, selectParams, type KernelEncoding } from './model-source.ts';

function tinyModel(family: 'gpt2' | 'roberta'): TransformerModel {
  const raw = tinyConfig(family, family === 'gpt2' ? { n_embd: 8, n_head: 2, vocab_size: 23 } : { hidden_size: 8, intermediate_size: 12, num_attention_heads: 2, vocab_size: 23 });
  return TransformerModel.fromWeights(raw, randomWeights(raw, 3), null, { backend: 'ref' });
}

function encoding(family: 'gpt2' | 'roberta'): KernelEncoding {
  const rng = new Rng(5);
  const mk = (len: number, label: number) => {
    const ids = Array.from({ length: len }, () => 3 + rng.int(18));
    // masked: a mask token id (22) at the scored position
    const pos = family === 'roberta' ? 1 + rng.int(len - 1) : len - 1;
    if (family === 'roberta') ids[pos] = 22;
    return { ids, pos, label };
  };
  return { labelIds: [5, 9], labelWords: [' a', ' b'], template: 'test', sets: { train: [mk(5, 0), mk(3, 1), mk(6, 1)], eval: [mk(4, 0), mk(6, 1)] } };
}

for (const [family, peft] of [['gpt2', 'none'], ['roberta', 'none'], ['gpt2', 'lora']] as const) {
  test(`${family}${peft === 'lora' ? ' with LoRA adapters' : ''}: Jacobian rows of every ${peft === 'lora' ? 'adapter' : 'parameter'} equal central finite differences of f`, async () => {
    const model = tinyModel(family);
    const enc = encoding(family);
    if (peft === 'lora') {
      await attachPeft(model, { kind: 'lora', rank: 2, alpha: 4, dropout: 0, targets: [] }, 1);
      // B = 0 at initialization would make A's gradient vanish: give both factors values
      const r = new Rng(4);
      for (const n of model.adapters!.names()) model.adapters!.get(n).data.forEach((_, k, a) => (a[k] = 0.3 * r.normal()));
    }
    const params = peft === 'lora' ? selectParams(model, 'lora') : model.allParamNames();
    const src = new ModelJacobianSource(model, enc, { params, blockElements: peft === 'lora' ? 50 : 400, batch: 2 });
    assert.ok(src.blocks.length > 2, 'several parameter blocks');
    const C = 2;
    const n = enc.sets.train!.length;
    // the rows of all blocks, concatenated: [n·C, P]
    const P = src.paramCount;
    const J = new Float64Array(n * C * P);
    const f0 = new Float64Array(n * C);
    let off = 0;
    for (let b = 0; b < src.blocks.length; b++) {
      const Pb = src.blocks[b]!;
      for (let e = 0; e < n; e += 2) {
        const cnt = Math.min(2, n - e);
        const got = await src.jacobian('train', e, cnt, b);
        for (let r = 0; r < cnt * C; r++) for (let k = 0; k < Pb; k++) J[(e * C + r) * P + off + k] = got.rows[r * Pb + k]!;
        f0.set(got.f, e * C);
      }
      off += Pb;
    }
    // finite differences on a sample of coordinates of every tensor (all of a small one)
    const rng = new Rng(1);
    let flat = 0;
    let checked = 0;
    for (const name of params) {
      const w = model.tensor(name);
      const picks = w.length <= 8 ? [...w.keys()] : Array.from({ length: 8 }, () => rng.int(w.length));
      for (const k of picks) {
        const orig = w[k]!;
        const h = 1e-3 * Math.max(1, Math.abs(orig));
        w[k] = orig + h;
        const up = await fAll(model, enc);
        w[k] = orig - h;
        const dn = await fAll(model, enc);
        const step = Math.fround(orig + h) - Math.fround(orig - h);
        w[k] = orig;
        for (let r = 0; r < n * C; r++) {
          const fd = (up[r]! - dn[r]!) / step;
          const got = J[r * P + flat + k]!;
          assert.ok(Math.abs(fd - got) < 2e-4 * (1 + Math.abs(fd)), `${name}[${k}] row ${r}: autodiff ${got} vs finite difference ${fd}`);
        }
        checked++;
      }
      flat += w.length;
    }
    assert.equal(flat, P);
    assert.ok(checked > 20, `${checked} coordinates checked`);
    // the blocked kernel equals J Jᵀ of the concatenated rows
    const k = await computeKernels(src, { formula: 'sgd', batch: 2 });
    const NC = n * C;
    for (let i = 0; i < NC; i++) {
      for (let j = 0; j < NC; j++) {
        let s = 0;
        for (let q = 0; q < P; q++) s += J[i * P + q]! * J[j * P + q]!;
        assert.ok(Math.abs(k.kernels.train_train![i * NC + j]! - s) < 1e-5 * (1 + Math.abs(s)));
      }
    }
    assert.deepEqual(k.f0.train, f0);
  });
}

/** f of every training example at the current weights, from the model's plain full-logits forward pass */
async function fAll(model: TransformerModel, enc: KernelEncoding): Promise<Float64Array> {
  const xs = enc.sets.train!;
  const { logits, seq } = await model.forwardAll(xs.map((x) => x.ids));
  const V = logits.length / (xs.length * seq);
  const out = new Float64Array(xs.length * 2);
  xs.forEach((x, e) => enc.labelIds.forEach((id, c) => (out[e * 2 + c] = logits[(e * seq + x.pos) * V + id]!)));
  return out;
}

test('--params: bitfit selects the biases, a regex its matches; errors name the flag', async () => {
  const model = tinyModel('gpt2');
  const all = model.allParamNames();
  const bitfit = selectParams(model, 'bitfit');
  assert.deepEqual(bitfit, all.filter((n) => n.endsWith('.bias')));
  assert.ok(bitfit.length > 0 && bitfit.length < all.length);
  assert.deepEqual(selectParams(model, 'ln_f'), all.filter((n) => n.includes('ln_f')));
  assert.throws(() => selectParams(model, 'nothing-like-this'), /--params nothing-like-this matches no parameter/);
  assert.throws(() => selectParams(model, '('), /not a regular expression/);
  assert.throws(() => selectParams(model, 'lora'), /no LoRA adapters are attached/);
});

test('parameter blocks: consecutive tensors up to the budget, a larger tensor on its own', () => {
  assert.deepEqual(groupBlocks([3, 4, 10, 2, 2, 5], 8), [[0, 1], [2], [3, 4], [5]]);
  assert.deepEqual(groupBlocks([1, 1, 1], 100), [[0, 1, 2]]);
});
