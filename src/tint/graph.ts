/**
 * TinT on the engine: the whole `runTint` computation — first forward pass, k × (loss gradient, backward +
 * descent, re-evaluation), logits — as one engine graph, run on either executor (`ref`: float64
 * interpreter, `ort`: onnxruntime in float32).
 *
 * What is what in the graph:
 *   - constants: TinT's own parameters, i.e. the fixed matrices of the modules `buildTint` made (head maps,
 *     position projections, gate lines, coordinate weights, the learning rate and N inside the maps);
 *   - params: the inner model — embeddings (outside the TinT layers, as in the reference) and the prefix
 *     blocks that hold every simulated weight;
 *   - inputs: the sequence — token ids, position rows, next-token labels, the loss mask, the one-hot
 *     position stream and the attention masks (built on the host by `makeContext`, as in the float64 path).
 * The graph depends on the TinT and the sequence length only; `feeds(seq)` fills in one sequence.
 */
import { Graph, compileOrt, evaluateRef, toFloat64, type Feeds, type Value } from '../engine/index.ts';
import { LmtuneError } from '../util/errors.ts';
import { MASK_NAMES, MASKED_SCORE, makeEngineContext, withTokenSignal, type EngineContext } from './graph-pieces.ts';
import { backwardBlock, finalLayerNormBackward, finalLayerNormForward, forwardBlock } from './graph-modules.ts';
import { checkSequence, positionRow, type InnerSequence } from './inner.ts';
import type { Mat } from './matrix.ts';
import { innerModelFromPrefixes } from './prefixes.ts';
import { makeContext } from './pieces.ts';
import type { Tint, TintRun } from './tint.ts';

/** Where `lmtune tint run` runs the simulated step: the float64 TypeScript modules or an engine executor. */
export type TintBackend = 'float64' | 'ref' | 'ort';
export const TINT_BACKENDS: readonly TintBackend[] = ['float64', 'ref', 'ort'];

export interface TintGraph {
  readonly tint: Tint;
  /** tokens per sequence */
  readonly T: number;
  /**
   * `logitsBefore`, `logitsAfter` [T, V]; `prefix.l<l>.s<slot>` [P, H] for the simulated layers and
   * `prefix.final_ln`: the prefix blocks after the steps
   */
  readonly outputs: Record<string, Value>;
  /** every input and param value for one sequence of T tokens (float64; the ort executor casts) */
  feeds(seq: InnerSequence): Feeds;
}

const prefixName = (l: number, slot: number): string => `prefix.l${l}.s${slot}`;
const FINAL_LN = 'prefix.final_ln';

export function buildTintGraph(tint: Tint, T: number): TintGraph {
  const { layout, settings: s, inner } = tint;
  const { P, H, d } = layout;
  if (T > layout.seqLength) throw new LmtuneError('DATA', `TinT handles at most ${layout.seqLength} tokens, got ${T}`);
  const g = new Graph('tint');
  const ctx = makeEngineContext(g, layout, T, {
    gateMode: s.gates,
    gateScale: s.gateScale,
    lnEps: s.lnEps ?? inner.lnEps,
    restrictPrefixes: s.restrictPrefixes,
  });
  const V = inner.vocabSize;
  const wte = g.param('wte', [V, d]);
  const wpe = g.param('wpe', [tint.wpe.rows, d]);
  const tokens = g.input('tokens', [T], 'i64');
  const positions = g.input('position_rows', [T], 'i64');
  const labels = g.input('labels', [T], 'i64');
  const lossMask = g.input('loss_mask', [T, 1]);
  const L = inner.nLayers;
  const slots = tint.prefixes[0]?.length ?? 0;
  const prefixes = Array.from({ length: L }, (_, l) => Array.from({ length: slots }, (__, slot) => g.param(prefixName(l, slot), [P, H])));
  let lnf = g.param(FINAL_LN, [P, H]);

  // input: zero prefix rows, token rows [wte[x_t] + wpe[t] | 0]
  const emb = g.apply1('gather', [wte, tokens]).add(g.apply1('gather', [wpe, positions]));
  let X = g.apply1('pad', [g.apply1('pad', [emb], { axis: 1, before: 0, after: H - d })], { axis: 0, before: P, after: 0 });

  const first = L - s.simulatedLayers;
  const memories: Value[][] = [];
  let restart = X;
  for (let l = 0; l < L; l++) {
    if (l === first) restart = X;
    const r = forwardBlock(ctx, tint.forwardBlocks[l]!, X, prefixes[l]!);
    X = r.out;
    memories[l] = r.memories;
  }
  if (first === L) restart = X;
  let final = finalLayerNormForward(ctx, tint.gradient, X, lnf);
  const logitsBefore = lmHeadLogits(ctx, wte, final.out);

  const onehot = g.apply1('one_hot', [labels], { depth: V });
  for (let step = 0; step < s.steps; step++) {
    // ∂(summed CE)/∂h through the tied head, outside TinT (see lossGradient in tint.ts)
    const probs = lmHeadLogits(ctx, wte, final.out).softmax(-1);
    const grad = withTokenSignal(ctx, final.out, probs.sub(onehot).mul(lossMask).matmul(wte));
    const back = finalLayerNormBackward(ctx, tint.gradient, grad, lnf, final.memory);
    lnf = back.prefix;
    let G = back.out;
    for (let l = L - 1; l >= first; l--) {
      const b = backwardBlock(ctx, tint.backwardBlocks[step]![l - first]!, G, prefixes[l]!, memories[l]!);
      G = b.out;
      prefixes[l] = b.prefixes;
    }
    X = restart;
    for (let l = first; l < L; l++) {
      const r = forwardBlock(ctx, tint.reforwardBlocks[step]![l - first]!, X, prefixes[l]!);
      X = r.out;
      memories[l] = r.memories;
    }
    final = finalLayerNormForward(ctx, tint.gradient, X, lnf);
  }

  const outputs: Record<string, Value> = { logitsBefore, logitsAfter: lmHeadLogits(ctx, wte, final.out), [FINAL_LN]: lnf };
  for (let l = first; l < L; l++) prefixes[l]!.forEach((p, slot) => (outputs[prefixName(l, slot)] = p));

  const feeds = (seq: InnerSequence): Feeds => {
    checkSequence(inner, seq);
    if (seq.tokens.length !== T) throw new LmtuneError('DATA', `this TinT graph was built for ${T} tokens, got ${seq.tokens.length}`);
    const host = makeContext(layout, seq, { gateMode: s.gates, gateScale: s.gateScale, lnEps: ctx.lnEps, restrictPrefixes: s.restrictPrefixes });
    const f: Feeds = {
      pos: host.pos.data,
      tokens: [...seq.tokens],
      position_rows: seq.tokens.map((_, t) => positionRow(inner, seq.positionIds ? seq.positionIds[t]! : t)),
      // the last row has no target; its gradient Eᵀp is never masked (the reference's quirk)
      labels: seq.tokens.map((_, t) => (t < T - 1 ? seq.tokens[t + 1]! : -1)),
      loss_mask: seq.tokens.map((_, t) => (t < T - 1 ? seq.trainMask[t + 1]! * (seq.gradMask ? seq.gradMask[t + 1]! : 1) : 1)),
      wte: tint.wte.data,
      wpe: tint.wpe.data,
      [FINAL_LN]: tint.finalLnPrefix.data,
    };
    for (const name of MASK_NAMES) f[`mask_${name}`] = host.masks[name].data.map((x) => (x === -Infinity ? MASKED_SCORE : x));
    tint.prefixes.forEach((layer, l) => layer.forEach((p, slot) => (f[prefixName(l, slot)] = p.data)));
    return f;
  };
  return { tint, T, outputs, feeds };
}

/** Tied LM head on token rows, coordinates [0, d): [T, V]. */
function lmHeadLogits(ctx: EngineContext, wte: Value, X: Value): Value {
  return X.slice(0, ctx.layout.P, ctx.n).slice(1, 0, ctx.layout.d).matmul(wte, { transB: true });
}

export interface TintEngineOptions {
  readonly backend: 'ref' | 'ort';
  /** ort intra-op threads (default: the engine's) */
  readonly threads?: number;
}

/** `runTint` on an engine executor: same result type, logits and prefixes read back as float64. */
export async function runTintOnEngine(tint: Tint, seq: InnerSequence, opts: TintEngineOptions): Promise<TintRun> {
  const graph = buildTintGraph(tint, seq.tokens.length);
  const feeds = graph.feeds(seq);
  let out: Record<string, Float64Array>;
  if (opts.backend === 'ref') {
    out = Object.fromEntries(Object.entries(evaluateRef(graph.outputs, feeds)).map(([k, v]) => [k, v.data]));
  } else {
    const exe = await compileOrt(graph.outputs, opts.threads !== undefined ? { threads: opts.threads } : {});
    out = Object.fromEntries(Object.entries(await exe.run(feeds)).map(([k, v]) => [k, toFloat64(v)]));
  }
  const { layout, inner } = tint;
  const mat = (name: string, rows: number, cols: number): Mat => ({ rows, cols, data: Float64Array.from(out[name]!) });
  const T = seq.tokens.length;
  const first = inner.nLayers - tint.settings.simulatedLayers;
  const prefixes = tint.prefixes.map((layer, l) => (l < first ? layer.slice() : layer.map((_, slot) => mat(prefixName(l, slot), layout.P, layout.H))));
  return {
    logitsBefore: mat('logitsBefore', T, inner.vocabSize),
    logitsAfter: mat('logitsAfter', T, inner.vocabSize),
    updated: innerModelFromPrefixes(layout, tint.base, prefixes, mat(FINAL_LN, layout.P, layout.H)),
  };
}
