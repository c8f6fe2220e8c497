/**
 * Greedy generation with a key/value cache: the `decode` head is the LM head on the last real row of a
 * body that also reads the cached keys/values of the positions before it and returns the new ones. The
 * prompt is prefilled in one pass (a bucket of 16 positions); each new token then costs one single-row
 * pass against a cache of fixed capacity P, so two graphs serve a whole generation.
 */
import { LmtuneError } from '../util/errors.ts';
import { toFloat64, type Value } from '../engine/index.ts';
import { attentionWindow, kvHeads } from '../models/config.ts';
import { decodeBias, packBatch, roundUp } from '../models/batch.ts';
import type { GenerateOptions } from '../models/api.ts';
import type { HeadContext, ModelGraphs } from '../models/graphs.ts';
import { capturedKv } from './inspect.ts';

/** the next-token logits at the `last` row, and every layer's new keys/values */
function decodeHead(h: HeadContext): Record<string, Value> {
  const outputs: Record<string, Value> = { logits: h.logits(h.rows(h.g.input('last', [1], 'i64'))) };
  return Object.assign(outputs, capturedKv(h));
}

/** greedy decoding; each new token costs one single-row forward pass over the cached keys/values */
export async function generate(graphs: ModelGraphs, prompt: readonly number[], opts: GenerateOptions): Promise<string> {
  const m = graphs.model;
  const cfg = m.cfg;
  if (!m.arch.causal) throw new LmtuneError('UNSUPPORTED', 'generation needs a causal LM');
  if (!m.tokenizer) throw new LmtuneError('TOKENIZER', 'generation needs a tokenizer');
  const maxNew = opts.maxNewTokens;
  const budget = cfg.maxPositions;
  let ids = [...prompt];
  if (ids.length + maxNew > budget) ids = ids.slice(ids.length + maxNew - budget);
  const P = roundUp(ids.length + maxNew, 32); // cache capacity
  const Hkv = kvHeads(cfg);
  const D = cfg.headDim;
  const L = cfg.numLayers;
  const cacheK = Array.from({ length: L }, () => new Float32Array(Hkv * P * D));
  const cacheV = Array.from({ length: L }, () => new Float32Array(Hkv * P * D));
  let filled = 0;
  const generated: number[] = [];
  const eos = m.tokenizer.eosId;
  // prefill: the whole prompt at once (T = prompt bucket) against an empty cache of capacity P
  let pending = ids;
  while (generated.length < maxNew) {
    const T = pending.length === 1 ? 1 : roundUp(pending.length, 16);
    const built = await graphs.graph(`decode|${T}|${P}`, 1, T, decodeHead, { name: 'decode', past: P, captureKv: true });
    const batch = packBatch([pending], { side: 'right', padId: m.padId(), batch: 1, seq: T });
    // positions continue after the cache
    for (let i = 0; i < pending.length; i++) batch.positions[i] = filled + i;
    const feeds = graphs.feeds(built, batch, false);
    feeds.bias = decodeBias(T, pending.length, filled, P, built.slots, attentionWindow(cfg));
    feeds.last = [pending.length - 1];
    for (let l = 0; l < L; l++) {
      feeds[`past_k${l}`] = cacheK[l]!;
      feeds[`past_v${l}`] = cacheV[l]!;
    }
    const out = await built.exe.run(feeds);
    // append this chunk's keys/values to the cache
    for (let l = 0; l < L; l++) {
      for (const [src, dst] of [[out[`k${l}`]!, cacheK[l]!], [out[`v${l}`]!, cacheV[l]!]] as const) {
        const d = toFloat64(src);
        for (let hh = 0; hh < Hkv; hh++) {
          for (let i = 0; i < pending.length; i++) {
            for (let e = 0; e < D; e++) dst[(hh * P + filled + i) * D + e] = d[(hh * T + i) * D + e]!;
          }
        }
      }
    }
    filled += pending.length;
    const logits = toFloat64(out.logits!);
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
    if (best === eos) break;
    generated.push(best);
    const text = m.tokenizer.decode(generated);
    const stop = (opts.stop ?? []).map((s) => text.indexOf(s)).filter((i) => i >= 0);
    if (stop.length) return text.slice(0, Math.min(...stop));
    pending = [best];
  }
  return m.tokenizer.decode(generated);
}
