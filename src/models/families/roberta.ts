/**
 * RoBERTa with its masked-LM head (HF RobertaForMaskedLM): post-LN BERT blocks, bidirectional
 * attention, positions counted from pad_token_id + 1, head dense → gelu → LayerNorm → decoder (tied to
 * the word embeddings) + bias.
 */
import { LmtuneError } from '../../util/errors.ts';
import { nn, type Value } from '../../engine/index.ts';
import { common, headDimOf, type Activation, type BaseConfig, type ExpectedTensor, type Family } from '../family.ts';
import { activation, type ForwardContext } from '../forward.ts';

export interface RobertaConfig extends BaseConfig {
  family: 'roberta';
  /** positions start at pad_token_id + 1; the table has maxPositions + positionOffset rows */
  positionOffset: number;
  padTokenId: number;
  typeVocabSize: number; // type_vocab_size
  layerNormEps: number; // layer_norm_eps
  activation: Activation; // hidden_act
}

export const roberta: Family<RobertaConfig> = {
  name: 'roberta',
  modelTypes: ['roberta'],
  architectures: /^Roberta(For|Model)/,

  parse(k) {
    const hidden = k.int('hidden_size', 768);
    const heads = k.int('num_attention_heads', 12);
    const pad = k.int('pad_token_id', 1, 0);
    const table = k.int('max_position_embeddings', 512);
    const pet = k.raw.position_embedding_type;
    if (pet !== undefined && pet !== null && pet !== 'absolute') {
      throw new LmtuneError('UNSUPPORTED', `${k.source}: position_embedding_type ${JSON.stringify(pet)} is not supported (only 'absolute')`);
    }
    if (table <= pad + 1) throw new LmtuneError('CONFIG', `${k.source}: max_position_embeddings ${table} leaves no positions after pad_token_id ${pad} + 1`);
    return {
      family: 'roberta',
      ...common(k),
      vocabSize: k.int('vocab_size', 50265),
      hiddenSize: hidden,
      numLayers: k.int('num_hidden_layers', 12),
      numHeads: heads,
      headDim: headDimOf(k, hidden, heads, 'num_attention_heads'),
      intermediateSize: k.int('intermediate_size', 3072),
      // roberta-base's 514-row table serves 512 tokens: rows 0..pad are never used by real tokens
      maxPositions: table - (pad + 1),
      tieWordEmbeddings: k.bool('tie_word_embeddings', true),
      bosTokenId: k.optInt('bos_token_id', 0),
      eosTokenId: k.optInt('eos_token_id', 2),
      padTokenId: pad,
      positionOffset: pad + 1,
      typeVocabSize: k.int('type_vocab_size', 2),
      layerNormEps: k.num('layer_norm_eps', 1e-12),
      activation: k.activation('hidden_act', 'gelu'),
    };
  },

  basePrefix: 'roberta.',
  embeddingName: 'roberta.embeddings.word_embeddings.weight',
  headName: 'lm_head.decoder.weight',
  tensors(c) {
    const H = c.hiddenSize;
    const I = c.intermediateSize;
    const lin = (name: string, o: number, i: number): ExpectedTensor[] => [
      { name: `${name}.weight`, shape: [o, i] },
      { name: `${name}.bias`, shape: [o] },
    ];
    const ln = (name: string): ExpectedTensor[] => [
      { name: `${name}.weight`, shape: [H] },
      { name: `${name}.bias`, shape: [H] },
    ];
    const out: ExpectedTensor[] = [
      { name: 'roberta.embeddings.word_embeddings.weight', shape: [c.vocabSize, H] },
      { name: 'roberta.embeddings.position_embeddings.weight', shape: [c.maxPositions + c.positionOffset, H] },
      { name: 'roberta.embeddings.token_type_embeddings.weight', shape: [c.typeVocabSize, H] },
      ...ln('roberta.embeddings.LayerNorm'),
    ];
    for (let i = 0; i < c.numLayers; i++) {
      const p = `roberta.encoder.layer.${i}.`;
      out.push(
        ...lin(`${p}attention.self.query`, H, H),
        ...lin(`${p}attention.self.key`, H, H),
        ...lin(`${p}attention.self.value`, H, H),
        ...lin(`${p}attention.output.dense`, H, H),
        ...ln(`${p}attention.output.LayerNorm`),
        ...lin(`${p}intermediate.dense`, I, H),
        ...lin(`${p}output.dense`, H, I),
        ...ln(`${p}output.LayerNorm`),
      );
    }
    out.push(...lin('lm_head.dense', H, H), ...ln('lm_head.layer_norm'), { name: 'lm_head.bias', shape: [c.vocabSize] });
    return out;
  },
  // the head bias is saved as lm_head.bias and/or lm_head.decoder.bias (the same parameter)
  tensorAliases: (canonical) => (canonical === 'lm_head.bias' ? ['lm_head.decoder.bias'] : []),
  duplicateTensors: ['lm_head.decoder.bias'],
  mlpProbe: { name: 'roberta.encoder.layer.0.intermediate.dense.weight', axis: 0 },
  kvHeads: (c) => c.numHeads,
  attentionWindow: () => null,

  causal: false,
  positionIndex: (p, c) => p + c.positionOffset,
  attentionModule: (i) => `roberta.encoder.layer.${i}.attention`,
  rotary: () => null,

  body(ctx: ForwardContext): Value {
    const c = ctx.cfg as RobertaConfig;
    const { g } = ctx;
    const e = 'roberta.embeddings';
    const tokenType = ctx.w(`${e}.token_type_embeddings.weight`).slice(0, 0, 1).reshape([c.hiddenSize]);
    let h = g
      .apply1('gather', [ctx.w(`${e}.word_embeddings.weight`), ctx.inputs.ids])
      .add(g.apply1('gather', [ctx.w(`${e}.position_embeddings.weight`), ctx.inputs.positions]))
      .add(tokenType);
    h = nn.layerNorm(h, ctx.w(`${e}.LayerNorm.weight`), ctx.w(`${e}.LayerNorm.bias`), c.layerNormEps);
    for (let i = 0; i < c.numLayers; i++) {
      const p = `roberta.encoder.layer.${i}`;
      const q = nn.splitHeads(ctx.linear(h, `${p}.attention.self.query`), c.numHeads);
      const k = nn.splitHeads(ctx.linear(h, `${p}.attention.self.key`), c.numHeads);
      const v = nn.splitHeads(ctx.linear(h, `${p}.attention.self.value`), c.numHeads);
      const a = ctx.linear(nn.mergeHeads(ctx.attend(q, k, v, `${p}.attention`, 1 / Math.sqrt(c.headDim))), `${p}.attention.output.dense`);
      h = nn.layerNorm(a.add(h), ctx.w(`${p}.attention.output.LayerNorm.weight`), ctx.w(`${p}.attention.output.LayerNorm.bias`), c.layerNormEps);
      const f = ctx.linear(activation(ctx.linear(h, `${p}.intermediate.dense`), c.activation), `${p}.output.dense`);
      h = nn.layerNorm(f.add(h), ctx.w(`${p}.output.LayerNorm.weight`), ctx.w(`${p}.output.LayerNorm.bias`), c.layerNormEps);
    }
    return h;
  },

  head(ctx: ForwardContext, h: Value): Value {
    const c = ctx.cfg as RobertaConfig;
    let x = activation(ctx.linear(h, 'lm_head.dense'), 'gelu');
    x = nn.layerNorm(x, ctx.w('lm_head.layer_norm.weight'), ctx.w('lm_head.layer_norm.bias'), c.layerNormEps);
    return x.matmul(decoder(ctx), { transB: true }).add(ctx.w('lm_head.bias'));
  },

  /** the head on the candidate words only: their decoder rows and biases, not the 50k-wide vocabulary */
  restrictedHead(ctx: ForwardContext, rows: Value, candIds: Value): Value {
    const c = ctx.cfg as RobertaConfig;
    let x = ctx.linear(rows, 'lm_head.dense').gelu('none');
    x = ctx.g.apply('layer_norm', [x, ctx.w('lm_head.layer_norm.weight'), ctx.w('lm_head.layer_norm.bias')], { eps: c.layerNormEps })[0]!;
    const w = ctx.g.apply1('gather', [decoder(ctx), candIds]);
    const b = ctx.g.apply1('gather', [ctx.w('lm_head.bias'), candIds]);
    return x.matmul(w, { transB: true }).add(b);
  },

  loraTargets: ['attention\\.self\\.(query|value)$'],
  weightLayout: 'out_in',

  specials: { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>', mask_token: '<mask>', cls_token: '<s>', sep_token: '</s>' },
  tokenizerClass: /^Roberta/,
  maskLstrip: true,
  template: (t) => ({ prefix: [t.need(t.ids.cls ?? t.ids.bos, 'CLS/<s>')], suffix: [t.need(t.ids.sep ?? t.ids.eos, 'SEP/</s>')], rule: 'roberta: <s> text </s>' }),

  highlights: (c) => ({ activation: c.activation, positionOffset: c.positionOffset, typeVocabSize: c.typeVocabSize, layerNormEps: c.layerNormEps }),
};

/** the decoder weight: tied to the word embeddings unless the checkpoint has its own */
function decoder(ctx: ForwardContext): Value {
  return ctx.has('lm_head.decoder.weight') ? ctx.w('lm_head.decoder.weight') : ctx.w('roberta.embeddings.word_embeddings.weight');
}
