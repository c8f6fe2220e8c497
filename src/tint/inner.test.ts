/**
 * The Hugging Face adapter: tensor names and layouts (GPT-2 Conv1D [in, out] with c_attn split into Q, K, V;
 * OPT nn.Linear [out, in]; OPT's position offset 2), checked against tensors written independently here and
 * against the real tiny-random-gpt2 file; and the errors for unsupported checkpoints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { innerModelFromHf, type HfTensor, type InnerModel } from './inner.ts';
import { at, maxAbsDiff, type Mat } from './matrix.ts';
import { innerLogits } from './oracle.ts';
import { readSafetensorsF32, smallInner, TINY_GPT2_DIR } from './test-helpers.ts';

const t = (shape: number[], data: ArrayLike<number>): HfTensor => ({ shape, data: Float64Array.from(data) });
/** [out, in] matrix as a Conv1D [in, out] tensor */
const conv1d = (w: Mat): HfTensor => {
  const d = new Float64Array(w.rows * w.cols);
  for (let i = 0; i < w.rows; i++) for (let j = 0; j < w.cols; j++) d[j * w.rows + i] = at(w, i, j);
  return t([w.cols, w.rows], d);
};

function gpt2Tensors(m: InnerModel): Map<string, HfTensor> {
  const { dModel: d } = m.config;
  const out = new Map<string, HfTensor>();
  out.set('transformer.wte.weight', t([m.wte.rows, d], m.wte.data));
  out.set('transformer.wpe.weight', t([m.wpe.rows, d], m.wpe.data));
  m.layers.forEach((L, l) => {
    const p = `transformer.h.${l}`;
    const qkv = new Float64Array(d * 3 * d);
    [L.q, L.k, L.v].forEach((x, part) => {
      for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) qkv[j * 3 * d + part * d + i] = at(x.w, i, j);
    });
    out.set(`${p}.attn.c_attn.weight`, t([d, 3 * d], qkv));
    out.set(`${p}.attn.c_attn.bias`, t([3 * d], [...L.q.b, ...L.k.b, ...L.v.b]));
    out.set(`${p}.attn.c_proj.weight`, conv1d(L.o.w));
    out.set(`${p}.attn.c_proj.bias`, t([d], L.o.b));
    out.set(`${p}.mlp.c_fc.weight`, conv1d(L.fc1.w));
    out.set(`${p}.mlp.c_fc.bias`, t([L.fc1.b.length], L.fc1.b));
    out.set(`${p}.mlp.c_proj.weight`, conv1d(L.fc2.w));
    out.set(`${p}.mlp.c_proj.bias`, t([d], L.fc2.b));
    for (const [name, ln] of [['ln_1', L.ln1], ['ln_2', L.ln2]] as const) {
      out.set(`${p}.${name}.weight`, t([d], ln.gamma));
      out.set(`${p}.${name}.bias`, t([d], ln.beta));
    }
  });
  out.set('transformer.ln_f.weight', t([d], m.lnF.gamma));
  out.set('transformer.ln_f.bias', t([d], m.lnF.beta));
  return out;
}

function optTensors(m: InnerModel): Map<string, HfTensor> {
  const { dModel: d } = m.config;
  const out = new Map<string, HfTensor>();
  const lin = (name: string, w: Mat, b: Float64Array): void => {
    out.set(`${name}.weight`, t([w.rows, w.cols], w.data));
    out.set(`${name}.bias`, t([b.length], b));
  };
  out.set('model.decoder.embed_tokens.weight', t([m.wte.rows, d], m.wte.data));
  out.set('model.decoder.embed_positions.weight', t([m.wpe.rows, d], m.wpe.data));
  m.layers.forEach((L, l) => {
    const p = `model.decoder.layers.${l}`;
    lin(`${p}.self_attn.q_proj`, L.q.w, L.q.b);
    lin(`${p}.self_attn.k_proj`, L.k.w, L.k.b);
    lin(`${p}.self_attn.v_proj`, L.v.w, L.v.b);
    lin(`${p}.self_attn.out_proj`, L.o.w, L.o.b);
    lin(`${p}.fc1`, L.fc1.w, L.fc1.b);
    lin(`${p}.fc2`, L.fc2.w, L.fc2.b);
    for (const [name, ln] of [['self_attn_layer_norm', L.ln1], ['final_layer_norm', L.ln2]] as const) {
      out.set(`${p}.${name}.weight`, t([d], ln.gamma));
      out.set(`${p}.${name}.bias`, t([d], ln.beta));
    }
  });
  out.set('model.decoder.final_layer_norm.weight', t([d], m.lnF.gamma));
  out.set('model.decoder.final_layer_norm.bias', t([d], m.lnF.beta));
  out.set('lm_head.weight', t([m.wte.rows, d], m.wte.data));
  return out;
}

const gpt2Config = { model_type: 'gpt2', n_embd: 12, n_head: 3, n_layer: 2, n_inner: null, vocab_size: 16, n_positions: 16, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5 };
const optConfig = { model_type: 'opt', hidden_size: 12, num_attention_heads: 3, num_hidden_layers: 2, ffn_dim: 48, vocab_size: 16, max_position_embeddings: 16, activation_function: 'relu', do_layer_norm_before: true, word_embed_proj_dim: 12 };
const seq = { tokens: [1, 5, 2, 9, 3, 3, 0], trainMask: [1, 1, 1, 0, 0, 0, 0] };

test('GPT-2 names and Conv1D layout round-trip (c_attn split into Q, K, V)', () => {
  const m = smallInner(1);
  const back = innerModelFromHf(gpt2Config, gpt2Tensors(m), 'gpt2-test');
  assert.equal(maxAbsDiff(innerLogits(back, seq), innerLogits(m, seq)), 0);
  assert.equal(maxAbsDiff(back.layers[1]!.k.w, m.layers[1]!.k.w), 0);
});

test('OPT names and layout round-trip, positions offset by 2, tied lm_head accepted', () => {
  const m = smallInner(2, { family: 'opt' });
  assert.equal(m.wpe.rows, 16 + 2);
  const back = innerModelFromHf(optConfig, optTensors(m), 'opt-test');
  assert.equal(back.config.family, 'opt');
  assert.equal(maxAbsDiff(innerLogits(back, seq), innerLogits(m, seq)), 0);
});

test('the real tiny-random-gpt2 file: Q/K/V are column blocks of c_attn [in, out]', () => {
  const tensors = readSafetensorsF32(join(TINY_GPT2_DIR, 'model.safetensors'));
  const m = innerModelFromHf({ ...gpt2Config, n_embd: 32, n_head: 4, n_layer: 5, vocab_size: 1000, n_positions: 512 }, tensors, TINY_GPT2_DIR);
  const cAttn = tensors.get('transformer.h.2.attn.c_attn.weight')!;
  assert.deepEqual(cAttn.shape, [32, 96]);
  for (const [i, j] of [[0, 0], [3, 17], [31, 5]] as const) {
    assert.equal(at(m.layers[2]!.q.w, i, j), cAttn.data[j * 96 + i]);
    assert.equal(at(m.layers[2]!.k.w, i, j), cAttn.data[j * 96 + 32 + i]);
    assert.equal(at(m.layers[2]!.v.w, i, j), cAttn.data[j * 96 + 64 + i]);
  }
  assert.equal(m.layers[0]!.fc1.w.rows, 128);
});

test('unsupported checkpoints fail with an actionable error naming the problem', () => {
  const m = smallInner(3, { family: 'opt' });
  const code = (f: () => unknown): [string, string] => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof LmtuneError);
      return [e.code, e.message];
    }
    assert.fail('expected an LmtuneError');
  };
  const missing = optTensors(m);
  missing.delete('model.decoder.layers.1.fc2.bias');
  assert.deepEqual(code(() => innerModelFromHf(optConfig, missing, 'dir'))[0], 'CHECKPOINT');
  assert.match(code(() => innerModelFromHf(optConfig, missing, 'dir'))[1], /model\.decoder\.layers\.1\.fc2\.bias/);
  assert.match(code(() => innerModelFromHf({ ...optConfig, do_layer_norm_before: false }, optTensors(m), 'dir'))[1], /post-LN/);
  const untied = optTensors(m);
  untied.set('lm_head.weight', t([16, 12], new Float64Array(16 * 12)));
  assert.deepEqual(code(() => innerModelFromHf(optConfig, untied, 'dir'))[0], 'UNSUPPORTED');
  assert.match(code(() => innerModelFromHf({ model_type: 'llama' }, new Map(), 'dir'))[1], /model_type "llama"/);
  assert.match(code(() => innerModelFromHf({ ...optConfig, activation_function: 'silu' }, optTensors(m), 'dir'))[1], /silu/);
});
