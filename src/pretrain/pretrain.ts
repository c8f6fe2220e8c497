/**
 * `lmtune pretrain`: a small GPT-2-architecture causal LM trained from scratch on plain English, with a
 * byte-level BPE vocabulary learned from the same text. This is the embedded default model the demo
 * fine-tunes (no pretrained LM can be downloaded here). GPT-2's initialization: N(0, 0.02) weights,
 * residual projections scaled by 1/√(2L), zero biases, unit norms; AdamW with warmup + cosine decay.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import { claimFolder } from '../node/outputs.ts';
import { TransformerModel } from '../heads/model.ts';
import { WeightStore } from '../models/weights.ts';
import { expectedTensors, parseModelConfig } from '../models/config.ts';
import { loadTokenizer } from '../models/tokenizer.ts';
import { packBatch } from '../models/batch.ts';
import { padTargets } from '../heads/objective.ts';
import { Adam } from '../optim/adam.ts';
import { lrAt } from '../optim/schedule.ts';
import { clipGradNorm } from '../optim/clip.ts';
import { decayAllButBiasAndNorm } from '../optim/decay.ts';
import { mergesText, trainBpe, wordCounts, END_OF_TEXT } from './bpe.ts';
import { defaultSources, readCorpus, type CorpusSource } from './corpus.ts';
import { addQuadWeights, quadLossAndGrads, saveQuadModel, QUAD_PHI } from './quad.ts';

export interface PretrainOptions {
  out: string;
  shared: string;
  vocabSize: number;
  layers: number;
  dim: number;
  heads: number;
  seq: number;
  batch: number;
  steps: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  seed: number;
  threads?: number;
  /** the text sources (default: `defaultSources(shared)`) */
  sources?: CorpusSource[];
  /** 'xent' (default): next-token cross-entropy; 'quad': the Quad objective (src/pretrain/quad.ts) */
  objective?: 'xent' | 'quad';
  /** quad: Φ fixed to this output embedding [V, E] (another model's); learned when absent */
  quadFixedPhi?: { from: string; shape: readonly number[]; data: Float32Array; vocab: Record<string, number> };
}

export interface PretrainHooks {
  onStep?: (step: number, steps: number, loss: number, stepsPerSecond: number) => void;
  onMessage?: (m: string) => void;
}

export function gpt2Config(vocabSize: number, o: Pick<PretrainOptions, 'layers' | 'dim' | 'heads' | 'seq'>, eot: number): Record<string, unknown> {
  return {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    vocab_size: vocabSize,
    n_embd: o.dim,
    n_layer: o.layers,
    n_head: o.heads,
    n_positions: o.seq,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    bos_token_id: eot,
    eos_token_id: eot,
    tie_word_embeddings: true,
    scale_attn_weights: true,
  };
}

export function gpt2Init(raw: Record<string, unknown>, seed: number): WeightStore {
  const cfg = parseModelConfig(raw, '(pretrain)');
  const rng = new Rng(seed).fork('gpt2-init');
  const store = new WeightStore();
  const resid = 0.02 / Math.sqrt(2 * cfg.numLayers);
  for (const t of expectedTensors(cfg)) {
    if (t.tiedTo) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (/ln_\d\.weight$|ln_f\.weight$/.test(t.name)) data = new Float32Array(n).fill(1);
    else if (t.name.endsWith('.bias')) data = new Float32Array(n);
    else {
      const std = /c_proj\.weight$/.test(t.name) ? resid : 0.02;
      data = Float32Array.from({ length: n }, () => rng.normal() * std);
    }
    store.set(t.name, t.shape, data);
  }
  return store;
}

export async function pretrain(o: PretrainOptions, hooks: PretrainHooks = {}): Promise<{ trainLoss: number; heldOutLoss: number; params: number; tokens: number }> {
  // --out becomes a model folder: refused if it is a folder lmtune did not make (a user's model, say)
  claimFolder(o.out, { kind: 'model', role: 'pretrain' }, '--out');
  const corpus = readCorpus(o.sources ?? defaultSources(o.shared));
  const docs = corpus.flatMap((c) => c.documents);
  hooks.onMessage?.(`corpus: ${corpus.map((c) => `${c.name} ${c.documents.length} docs`).join(', ')}`);
  const { vocab, merges } = trainBpe(wordCounts(docs), o.vocabSize);
  if (o.quadFixedPhi && stableStringify(o.quadFixedPhi.vocab) !== stableStringify(vocab)) {
    throw new LmtuneError('CONFIG', `--quad-phi-from ${o.quadFixedPhi.from}: its vocabulary differs from the one learned here, so its Φ rows name other words`, 'use the same corpus and --vocab-size as that model');
  }
  writeFileSync(join(o.out, 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(o.out, 'merges.txt'), mergesText(merges));
  const tok = await loadTokenizer(o.out, 'gpt2');
  const eot = vocab[END_OF_TEXT]!;
  // one token stream, documents separated by <|endoftext|>; the last 2% of documents are held out
  const order = new Rng(o.seed).fork('docs').permutation(docs.length);
  const cut = Math.floor(docs.length * 0.98);
  const stream = (idx: number[]): Int32Array => {
    const ids: number[] = [];
    for (const i of idx) ids.push(...tok.encode(docs[i]!), eot);
    return Int32Array.from(ids);
  };
  const trainIds = stream(order.slice(0, cut));
  const heldIds = stream(order.slice(cut));
  hooks.onMessage?.(`vocabulary ${Object.keys(vocab).length}; ${trainIds.length} training tokens, ${heldIds.length} held out`);

  const V = Object.keys(vocab).length;
  const raw = gpt2Config(V, o, eot);
  const model = TransformerModel.fromWeights(raw, gpt2Init(raw, o.seed), tok, o.threads ? { threads: o.threads } : {});
  const quad = o.objective === 'quad';
  if (quad) {
    const init = new Rng(o.seed).fork('quad-init');
    addQuadWeights(model, { fixedPhi: o.quadFixedPhi }, () => init.normal());
  }
  // a fixed Φ is not trained
  const names = model.trainableNames().filter((n) => !(quad && o.quadFixedPhi && n === QUAD_PHI));
  const params = names.map((name) => ({ name, data: model.tensor(name) }));
  type Req = ReturnType<typeof request>;
  const evaluate = (req: Req, wrt: string[] = []) => (quad ? quadLossAndGrads(model, req.batch, req.targets, wrt) : model.loss(req, wrt));
  const opt = new Adam({ beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: o.weightDecay, weightDecayMode: 'decoupled', decayFilter: decayAllButBiasAndNorm });
  const rng = new Rng(o.seed).fork('windows');
  const T = o.seq;
  const request = (ids: Int32Array, starts: number[]) => {
    const seqs = starts.map((s) => Array.from(ids.subarray(s, s + T)));
    const batch = packBatch(seqs, { side: 'right', padId: eot, seq: T, batch: starts.length });
    const index: number[] = [];
    const label: number[] = [];
    seqs.forEach((q, b) => {
      for (let t = 0; t + 1 < q.length; t++) {
        index.push(b * T + t);
        label.push(q[t + 1]!);
      }
    });
    const targets = padTargets(index, label, index.length);
    return { batch, targets, objective: { kind: 'token' as const, weight: new Float32Array(index.length).fill(1 / index.length) } };
  };
  const sched = { kind: 'cosine' as const, lr: o.lr, warmupSteps: o.warmup, totalSteps: o.steps, minLr: o.lr / 10 };
  const log: string[] = [];
  const t0 = performance.now();
  let ema = Number.NaN;
  for (let step = 0; step < o.steps; step++) {
    const starts = Array.from({ length: o.batch }, () => rng.int(trainIds.length - T));
    const r = await evaluate(request(trainIds, starts), names);
    clipGradNorm(r.grads!, 1.0);
    opt.step(params, r.grads!, lrAt(sched, step));
    ema = Number.isNaN(ema) ? r.loss : 0.98 * ema + 0.02 * r.loss;
    log.push(JSON.stringify({ step: step + 1, loss: r.loss }));
    hooks.onStep?.(step + 1, o.steps, ema, (step + 1) / ((performance.now() - t0) / 1000));
  }
  // held-out loss: the mean over consecutive windows, each counted once (the last batch may be partial;
  // filling it with copies of the final window weighted that window by the batch size)
  let held = 0;
  let n = 0;
  for (let s = 0, batches = 0; s + T < heldIds.length && batches < 64; s += T * o.batch, batches++) {
    const starts = Array.from({ length: o.batch }, (_, i) => s + i * T).filter((st) => st + T < heldIds.length);
    held += (await evaluate(request(heldIds, starts))).loss * starts.length;
    n += starts.length;
  }
  // a Quad model saves folded (a plain untied GPT-2) plus A and Φ apart, for `lmtune train --objective quad`
  if (quad) saveQuadModel(model, o.out, o.quadFixedPhi?.from ?? null);
  else model.save(o.out);
  atomicWrite(join(o.out, 'pretrain_log.jsonl'), log.join('\n') + '\n');
  const summary = { trainLoss: ema, heldOutLoss: held / Math.max(1, n), params: model.weights.numParams(), tokens: trainIds.length };
  atomicWrite(join(o.out, 'pretrain_summary.json'), stableStringify({ ...summary, options: { ...o, out: undefined, shared: undefined, threads: undefined, sources: o.sources?.map((c) => c.name), quadFixedPhi: o.quadFixedPhi?.from } }));
  return summary;
}
