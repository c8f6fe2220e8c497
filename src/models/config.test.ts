import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LmtuneError } from '../util/errors.ts';
import { readJson } from '../node/fsx.ts';
import { checkTensors, expectedTensors, loadModelConfig, parameterCount, parseModelConfig, reconcileWithTensors } from './config.ts';
import { readSafetensorsHeader } from '../node/safetensors-file.ts';

const MODELS = '/work/shared/data/models';
const TINY = `${MODELS}/tiny-random-gpt2`;

function shapesOf(file: string): Map<string, { shape: number[] }> {
  return new Map([...readSafetensorsHeader(file).tensors].map(([k, v]) => [k, { shape: v.shape }]));
}

function throwsWith(fn: () => unknown, code: string, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LmtuneError, String(e));
    assert.equal(e.code, code);
    for (const p of parts) assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
    return true;
  });
}

test('parameter counts of published models, from their config.json fields, match the published totals', () => {
  // Totals as reported for the HF models (the *ForCausalLM / *ForMaskedLM class, tied head counted once).
  const cases: [string, Record<string, unknown>, number][] = [
    ['gpt2', { model_type: 'gpt2', n_embd: 768, n_layer: 12, n_head: 12, n_positions: 1024, vocab_size: 50257 }, 124_439_808],
    ['facebook/opt-125m', { model_type: 'opt', hidden_size: 768, ffn_dim: 3072, num_hidden_layers: 12, num_attention_heads: 12, max_position_embeddings: 2048, vocab_size: 50272, word_embed_proj_dim: 768 }, 125_239_296],
    // post-LN with project_in/out and no final layer norm
    ['facebook/opt-350m', { model_type: 'opt', hidden_size: 1024, ffn_dim: 4096, num_hidden_layers: 24, num_attention_heads: 16, max_position_embeddings: 2048, vocab_size: 50272, word_embed_proj_dim: 512, do_layer_norm_before: false }, 331_196_416],
    ['meta-llama/Llama-2-7b-hf', { model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 32000 }, 6_738_415_616],
    ['TinyLlama-1.1B (GQA 32/4)', { model_type: 'llama', hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000 }, 1_100_048_384],
    ['mistralai/Mistral-7B-v0.1', { model_type: 'mistral', hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 32000 }, 7_241_732_096],
    // qkv biases, no o_proj bias, tied head
    ['Qwen/Qwen2-0.5B', { model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936, tie_word_embeddings: true }, 494_032_768],
    ['EleutherAI/pythia-160m', { model_type: 'gpt_neox', hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, vocab_size: 50304 }, 162_322_944],
    ['EleutherAI/pythia-70m', { model_type: 'gpt_neox', hidden_size: 512, intermediate_size: 2048, num_hidden_layers: 6, num_attention_heads: 8, vocab_size: 50304 }, 70_426_624],
    ['roberta-base (MaskedLM)', { model_type: 'roberta', hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, vocab_size: 50265, max_position_embeddings: 514, type_vocab_size: 1 }, 124_697_433],
  ];
  for (const [name, raw, want] of cases) assert.equal(parameterCount(parseModelConfig(raw, name)), want, name);
});

test('tiny-random-gpt2: the MLP is 4·n_embd = 128 wide, not the stray intermediate_size 37; tensors check out', () => {
  const cfg = loadModelConfig(TINY);
  assert.equal(cfg.family, 'gpt2');
  assert.equal(cfg.raw.intermediate_size, 37);
  assert.equal(cfg.intermediateSize, 4 * 32);
  // MANIFEST: 111,968 parameters, 64 tensors, tied head absent
  assert.equal(parameterCount(cfg), 111_968);
  const shapes = shapesOf(`${TINY}/model.safetensors`);
  const check = checkTensors(cfg, shapes, 'model.safetensors');
  assert.equal(check.tiedHeadAbsent, true);
  assert.equal(check.resolved.size, 64);
  assert.deepEqual(check.unexpected, []);
  assert.equal(expectedTensors(cfg).length, 65);
});

test('the weights decide the MLP width when config.json disagrees (reconcileWithTensors)', () => {
  const raw = { ...readJson<Record<string, unknown>>(`${TINY}/config.json`), n_inner: 37 };
  const cfg = parseModelConfig(raw, 'cfg');
  const shapes = shapesOf(`${TINY}/model.safetensors`);
  throwsWith(() => checkTensors(cfg, shapes, 'model.safetensors'), 'CHECKPOINT', "'transformer.h.0.mlp.c_fc.weight'", 'expected shape [32, 37]', 'found [32, 128]');
  const { config, notes } = reconcileWithTensors(cfg, shapes);
  assert.equal(config.intermediateSize, 128);
  assert.equal(notes.length, 1);
  assert.doesNotThrow(() => checkTensors(config, shapes, 'model.safetensors'));
});

test('prefix variants: names without transformer., with an explicit lm_head, and buffers are accepted', () => {
  const cfg = loadModelConfig(TINY);
  const shapes = shapesOf(`${TINY}/model.safetensors`);
  const bare = new Map([...shapes].map(([k, v]) => [k.replace(/^transformer\./, ''), v]));
  bare.set('lm_head.weight', { shape: [1000, 32] });
  bare.set('h.0.attn.bias', { shape: [1, 1, 512, 512] }); // the causal-mask buffer old GPT-2 files carry
  const check = checkTensors(cfg, bare, 'bare');
  assert.equal(check.resolved.get('transformer.h.3.mlp.c_fc.weight'), 'h.3.mlp.c_fc.weight');
  assert.equal(check.resolved.get('lm_head.weight'), 'lm_head.weight');
  assert.equal(check.tiedHeadAbsent, false);
  assert.deepEqual(check.buffers, ['h.0.attn.bias']);
  // an untied config needs the head
  const untied = parseModelConfig({ ...cfg.raw, tie_word_embeddings: false }, 'untied');
  throwsWith(() => checkTensors(untied, shapes, 'f.safetensors'), 'CHECKPOINT', 'f.safetensors', "missing tensor 'lm_head.weight'", '[1000, 32]');
});

test('missing tensors and wrong shapes are each reported with name, expected and found shape', () => {
  const cfg = loadModelConfig(TINY);
  const shapes = shapesOf(`${TINY}/model.safetensors`);
  shapes.delete('transformer.h.4.ln_2.bias');
  shapes.set('transformer.wpe.weight', { shape: [511, 32] });
  throwsWith(
    () => checkTensors(cfg, shapes, 'x.safetensors'),
    'CHECKPOINT',
    '2 tensor problem(s)',
    "missing tensor 'transformer.h.4.ln_2.bias' (expected shape [32], found: absent)",
    "tensor 'transformer.wpe.weight': expected shape [512, 32], found [511, 32]",
  );
});

test('every family accepts its base-model names without the prefix (OPT keeps decoder.)', () => {
  const cfgs = [
    parseModelConfig({ model_type: 'opt', hidden_size: 8, ffn_dim: 16, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 10, vocab_size: 20, word_embed_proj_dim: 4 }, 'opt'),
    parseModelConfig({ model_type: 'llama', hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 20, tie_word_embeddings: true }, 'llama'),
    parseModelConfig({ model_type: 'gpt_neox', hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 20 }, 'neox'),
    parseModelConfig({ model_type: 'roberta', hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 20, max_position_embeddings: 12 }, 'roberta'),
  ];
  const prefixes = ['model.', 'model.', 'gpt_neox.', 'roberta.'];
  cfgs.forEach((cfg, i) => {
    const m = new Map<string, { shape: number[] }>();
    for (const e of expectedTensors(cfg)) if (!e.tiedTo) m.set(e.name.startsWith(prefixes[i]) ? e.name.slice(prefixes[i].length) : e.name, { shape: e.shape });
    const check = checkTensors(cfg, m, cfg.family);
    assert.equal(check.unexpected.length, 0, cfg.family);
  });
  // OPT's project_in/out exist because word_embed_proj_dim (4) ≠ hidden_size (8); the head is [vocab, 4]
  const names = new Map(expectedTensors(cfgs[0]).map((e) => [e.name, e.shape]));
  assert.deepEqual(names.get('model.decoder.project_in.weight'), [8, 4]);
  assert.deepEqual(names.get('model.decoder.embed_positions.weight'), [12, 8]);
  assert.deepEqual(names.get('lm_head.weight'), [20, 4]);
  // GQA: k/v projections have numKvHeads·headDim = 1·4 rows
  const ln = new Map(expectedTensors(cfgs[1]).map((e) => [e.name, e.shape]));
  assert.deepEqual(ln.get('model.layers.0.self_attn.k_proj.weight'), [4, 8]);
  // RoBERTa: a 12-row position table serves 12 − (pad 1 + 1) = 10 tokens
  assert.equal(cfgs[3].maxPositions, 10);
  assert.equal(cfgs[3].family === 'roberta' && cfgs[3].positionOffset, 2);
});

test('normalized fields: defaults, rope scaling, rotary dims, Qwen2 biases', () => {
  const neox = parseModelConfig({ model_type: 'gpt_neox', hidden_size: 768, num_attention_heads: 12, intermediate_size: 3072, num_hidden_layers: 12, rotary_pct: 0.25, rotary_emb_base: 10000 }, 'p');
  assert.ok(neox.family === 'gpt_neox');
  assert.equal(neox.rotaryDim, 16); // int(64 · 0.25)
  assert.equal(neox.useParallelResidual, true);
  const q = parseModelConfig({ model_type: 'qwen2', hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 1e6 }, 'q');
  assert.ok(q.family === 'llama');
  assert.equal(q.qkvBias, true);
  assert.equal(q.outBias, false);
  assert.equal(q.ropeTheta, 1e6);
  assert.equal(q.numKvHeads, 2);
  assert.equal(q.headDim, 16);
  throwsWith(() => parseModelConfig({ model_type: 'llama', num_attention_heads: 6, num_key_value_heads: 4 }, 'g.json'), 'CONFIG', 'g.json', 'not a multiple');
  const lin = parseModelConfig({ model_type: 'llama', rope_scaling: { type: 'linear', factor: 2 } }, 'l');
  assert.ok(lin.family === 'llama');
  assert.deepEqual(lin.ropeScaling, { type: 'linear', factor: 2 });
  throwsWith(() => parseModelConfig({ model_type: 'llama', rope_scaling: { rope_type: 'llama3', factor: 8 } }, 'cfg.json'), 'UNSUPPORTED', 'cfg.json', '"llama3"');
  throwsWith(() => parseModelConfig({ model_type: 'llama', rope_scaling: { type: 'dynamic', factor: 2 } }, 'cfg.json'), 'UNSUPPORTED', '"dynamic"');
  const opt = parseModelConfig({ model_type: 'opt' }, 'o');
  assert.ok(opt.family === 'opt');
  assert.equal(opt.positionOffset, 2);
  assert.equal(opt.activation, 'relu');
});

test('family detection: model_type first, architectures as fallback, unknown named', () => {
  assert.equal(parseModelConfig({ architectures: ['OPTForCausalLM'], hidden_size: 16, num_attention_heads: 2 }, 'a').family, 'opt');
  assert.equal(parseModelConfig({ architectures: ['RobertaForMaskedLM'] }, 'a').family, 'roberta');
  assert.equal(parseModelConfig({ model_type: 'mistral' }, 'a').modelType, 'mistral');
  throwsWith(() => parseModelConfig({ model_type: 'phi3', architectures: ['Phi3ForCausalLM'] }, '/m/config.json'), 'UNSUPPORTED', '/m/config.json', "'phi3'");
  throwsWith(() => parseModelConfig({ architectures: ['BertForMaskedLM'] }, '/m/config.json'), 'UNSUPPORTED', '/m/config.json', 'BertForMaskedLM');
  throwsWith(() => parseModelConfig({ model_type: 'gpt2', n_embd: 10, n_head: 3 }, 'c.json'), 'CONFIG', 'c.json', 'not divisible');
  throwsWith(() => parseModelConfig({ model_type: 'gpt2', n_layer: 'twelve' }, 'c.json'), 'CONFIG', "'n_layer'");
  throwsWith(() => loadModelConfig('/nonexistent/folder'), 'CHECKPOINT', '/nonexistent/folder', 'no config.json');
});

test('gemma: GemmaConfig defaults are gemma-7b (8,537,680,896 parameters), gemma-2b is 2,506,172,416; activation rule', () => {
  // published totals; gemma-7b's q_proj is 16·256 = 4096 wide for a 3072-wide model (head_dim decoupled)
  const g7 = parseModelConfig({ model_type: 'gemma' }, 'g7');
  assert.ok(g7.family === 'gemma');
  assert.equal(parameterCount(g7), 8_537_680_896);
  assert.deepEqual(new Map(expectedTensors(g7).map((e) => [e.name, e.shape])).get('model.layers.0.self_attn.o_proj.weight'), [3072, 4096]);
  assert.equal(g7.tieWordEmbeddings, true);
  assert.deepEqual([g7.bosTokenId, g7.eosTokenId, g7.padTokenId], [2, 1, 0]);
  const g2 = parseModelConfig({ architectures: ['GemmaForCausalLM'], hidden_size: 2048, intermediate_size: 16384, num_hidden_layers: 18, num_attention_heads: 8, num_key_value_heads: 1, head_dim: 256 }, 'g2');
  assert.equal(g2.family, 'gemma');
  assert.equal(parameterCount(g2), 2_506_172_416);
  // the Gemma 1.0 configs say hidden_act 'gelu'; without hidden_activation the gate is still tanh-GELU
  const legacy = parseModelConfig({ model_type: 'gemma', hidden_act: 'gelu' }, 'l');
  assert.ok(legacy.family === 'gemma');
  assert.equal(legacy.activation, 'gelu_pytorch_tanh');
  const explicit = parseModelConfig({ model_type: 'gemma', hidden_act: 'gelu_pytorch_tanh', hidden_activation: 'gelu' }, 'e');
  assert.ok(explicit.family === 'gemma');
  assert.equal(explicit.activation, 'gelu');
  throwsWith(() => parseModelConfig({ model_type: 'gemma', num_attention_heads: 6, num_key_value_heads: 4 }, 'g.json'), 'CONFIG', 'g.json', 'not a multiple');
});

test('sliding windows: Mistral in every layer by default; Qwen2 only with use_sliding_window on the layers ≥ max_window_layers', () => {
  const window = (raw: Record<string, unknown>): number | null => {
    const c = parseModelConfig(raw, 'w');
    assert.ok(c.family === 'llama');
    return c.slidingWindow;
  };
  assert.equal(window({ model_type: 'mistral' }), 4096);
  assert.equal(window({ model_type: 'mistral', sliding_window: null }), null);
  assert.equal(window({ model_type: 'llama', sliding_window: 16 }), null); // LlamaConfig has no window
  assert.equal(window({ model_type: 'qwen2', sliding_window: 16 }), null);
  // 4 layers, max_window_layers 28 (default): HF marks no layer 'sliding_attention'
  assert.equal(window({ model_type: 'qwen2', num_hidden_layers: 4, use_sliding_window: true, sliding_window: 16 }), null);
  assert.equal(window({ model_type: 'qwen2', num_hidden_layers: 4, use_sliding_window: true, sliding_window: 16, max_window_layers: 0 }), 16);
  assert.equal(window({ model_type: 'qwen2', num_hidden_layers: 2, use_sliding_window: true, sliding_window: 16, layer_types: ['sliding_attention', 'sliding_attention'] }), 16);
  throwsWith(
    () => parseModelConfig({ model_type: 'qwen2', num_hidden_layers: 4, use_sliding_window: true, sliding_window: 16, max_window_layers: 2 }, 'q.json'),
    'UNSUPPORTED',
    'q.json',
    '2 of 4 layers',
  );
});
