/**
 * The TinT model: built from an inner model and settings, run on one sequence.
 *
 * One call of `runTint` is the reference's `TinT_opt.forward`:
 *   1. forward through all L inner layers (TinT forward blocks), then the final layer norm → logits before;
 *   2. k times: loss gradient at the final-LN output (computed with the tied LM head, outside TinT);
 *      final-LN backward+descent; backward+descent through the top n_sim layers (last first); forward again
 *      through those layers from the stored input of layer L − n_sim, with the updated prefixes; final LN;
 *   3. logits after.
 * Only prefix rows change between passes; TinT's own parameters are fixed at construction.
 */
import { LmtuneError } from '../util/errors.ts';
import { activationByName } from './activations.ts';
import { backwardBlock, buildBackwardBlock, buildForwardBlock, buildGradientModule, finalLayerNormBackward, finalLayerNormForward, forwardBlock, type BackwardBlock, type ForwardBlock, type GradientModule } from './blocks.ts';
import { tintLayout, type TintLayout, type TintSettings } from './config.ts';
import { checkSequence, embedTokens, type InnerConfig, type InnerModel, type InnerSequence } from './inner.ts';
import { matmulT, softmaxVector, zeros, type Mat } from './matrix.ts';
import { innerModelFromPrefixes, layerNormPrefix, layerPrefixes } from './prefixes.ts';
import { makeContext } from './pieces.ts';

export interface Tint {
  readonly inner: InnerConfig;
  readonly layout: TintLayout;
  readonly settings: TintSettings & { readonly simulatedLayers: number };
  /** the inner model's embeddings: TinT's input embedding and (tied) LM head, outside the TinT layers */
  readonly wte: Mat;
  readonly wpe: Mat;
  /** the inner weights, as prefix blocks: per layer, in SLOT order */
  readonly prefixes: readonly (readonly Mat[])[];
  readonly finalLnPrefix: Mat;
  /** first forward pass, one block per inner layer */
  readonly forwardBlocks: readonly ForwardBlock[];
  /** [step][i]: backward block for inner layer L − n_sim + i */
  readonly backwardBlocks: readonly (readonly BackwardBlock[])[];
  /** [step][i]: re-evaluation block for inner layer L − n_sim + i */
  readonly reforwardBlocks: readonly (readonly ForwardBlock[])[];
  readonly gradient: GradientModule;
  /** kept only to report the updated inner model (embeddings are never trained) */
  readonly base: InnerModel;
}

export function buildTint(inner: InnerModel, settings: TintSettings): Tint {
  const L = inner.config.nLayers;
  const nSim = settings.simulatedLayers ?? L;
  if (!Number.isInteger(nSim) || nSim < 0 || nSim > L) throw new LmtuneError('CONFIG', `TinT simulatedLayers must be in [0, ${L}], got ${nSim}`);
  const s = { ...settings, simulatedLayers: nSim };
  const layout = tintLayout(inner.config, settings);
  const act = activationByName(inner.config.activation);
  const forwardBlocks = Array.from({ length: L }, () => buildForwardBlock(layout, s, act));
  const backwardBlocks: BackwardBlock[][] = [];
  const reforwardBlocks: ForwardBlock[][] = [];
  for (let step = 0; step < s.steps; step++) {
    backwardBlocks.push(
      step > 0 && s.reuseBackwardBlocks ? backwardBlocks[0]! : Array.from({ length: nSim }, () => buildBackwardBlock(layout, s, act)),
    );
    reforwardBlocks.push(
      s.reuseForwardBlocks ? forwardBlocks.slice(L - nSim) : Array.from({ length: nSim }, () => buildForwardBlock(layout, s, act)),
    );
  }
  return {
    inner: inner.config,
    layout,
    settings: s,
    wte: inner.wte,
    wpe: inner.wpe,
    prefixes: inner.layers.map((layer) => layerPrefixes(layout, layer)),
    finalLnPrefix: layerNormPrefix(layout, inner.lnF),
    forwardBlocks,
    backwardBlocks,
    reforwardBlocks,
    gradient: buildGradientModule(layout, s),
    base: inner,
  };
}

/** Distinct block objects (what the reuse flags share), for reports and tests. */
export function countDistinctBlocks(tint: Tint): { forward: number; backward: number } {
  const fwd = new Set<ForwardBlock>([...tint.forwardBlocks, ...tint.reforwardBlocks.flat()]);
  const bwd = new Set<BackwardBlock>(tint.backwardBlocks.flat());
  return { forward: fwd.size, backward: bwd.size };
}

export interface TintRun {
  /** [T, V] logits of the first pass (must equal the inner model's) */
  readonly logitsBefore: Mat;
  /** [T, V] logits after the k simulated steps */
  readonly logitsAfter: Mat;
  /** the inner weights read back from the prefix rows after the steps */
  readonly updated: InnerModel;
}

export function runTint(tint: Tint, seq: InnerSequence): TintRun {
  checkSequence(tint.inner, seq);
  const { layout, settings: s } = tint;
  const { P, H, d } = layout;
  const T = seq.tokens.length;
  if (T > layout.seqLength) throw new LmtuneError('DATA', `TinT handles at most ${layout.seqLength} tokens, got ${T}`);
  const ctx = makeContext(layout, seq, {
    gateMode: s.gates,
    gateScale: s.gateScale,
    lnEps: s.lnEps ?? tint.inner.lnEps,
    restrictPrefixes: s.restrictPrefixes,
  });

  // input: zero prefix rows, token rows [wte[x_t] + wpe[t] | 0]
  let X = zeros(P + T, H);
  const emb = embedTokens(tint.base, seq);
  for (let t = 0; t < T; t++) X.data.set(emb.data.subarray(t * d, (t + 1) * d), (P + t) * H);

  const L = tint.inner.nLayers;
  const first = L - s.simulatedLayers;
  const prefixes = tint.prefixes.map((p) => p.slice());
  const memories: Mat[][] = [];
  let restart = X;
  for (let l = 0; l < L; l++) {
    if (l === first) restart = X;
    const r = forwardBlock(tint.forwardBlocks[l]!, X, prefixes[l]!, ctx);
    X = r.out;
    memories[l] = r.memories;
  }
  if (first === L) restart = X;
  let lnf = tint.finalLnPrefix;
  let final = finalLayerNormForward(tint.gradient, X, lnf, ctx);
  const logitsBefore = lmHeadLogits(tint.wte, final.out, P, d);

  for (let step = 0; step < s.steps; step++) {
    const grad = withSignal(final.out, lossGradient(tint.wte, lmHeadLogits(tint.wte, final.out, P, d), seq), P);
    const back = finalLayerNormBackward(tint.gradient, grad, lnf, final.memory, ctx);
    lnf = back.prefix;
    let G = back.out;
    for (let l = L - 1; l >= first; l--) {
      const b = backwardBlock(tint.backwardBlocks[step]![l - first]!, G, prefixes[l]!, memories[l]!, ctx);
      G = b.out;
      prefixes[l] = b.prefixes;
    }
    X = restart;
    for (let l = first; l < L; l++) {
      const r = forwardBlock(tint.reforwardBlocks[step]![l - first]!, X, prefixes[l]!, ctx);
      X = r.out;
      memories[l] = r.memories;
    }
    final = finalLayerNormForward(tint.gradient, X, lnf, ctx);
  }
  return {
    logitsBefore,
    logitsAfter: lmHeadLogits(tint.wte, final.out, P, d),
    updated: innerModelFromPrefixes(layout, tint.base, prefixes, lnf),
  };
}

/** Tied LM head on token rows, coordinates [0, d): [T, V]. */
function lmHeadLogits(wte: Mat, X: Mat, P: number, d: number): Mat {
  const T = X.rows - P;
  const h = zeros(T, d);
  for (let t = 0; t < T; t++) h.data.set(X.data.subarray((P + t) * X.cols, (P + t) * X.cols + d), t * d);
  return matmulT(h, wte);
}

/**
 * ∂(summed CE)/∂h_t through the tied head: Eᵀ(softmax(E h_t) − e_{x_{t+1}}) · trainMask[t+1] · gradMask[t+1],
 * and — the reference's quirk — Eᵀ softmax(E h_{T−1}) unmasked on the last row.
 */
function lossGradient(wte: Mat, logits: Mat, seq: InnerSequence): Mat {
  const T = logits.rows;
  const V = wte.rows;
  const d = wte.cols;
  const g = zeros(T, d);
  for (let t = 0; t < T; t++) {
    const p = softmaxVector(logits.data.subarray(t * V, (t + 1) * V));
    let m = 1;
    if (t < T - 1) {
      p[seq.tokens[t + 1]!]! -= 1;
      m = seq.trainMask[t + 1]! * (seq.gradMask ? seq.gradMask[t + 1]! : 1);
    }
    if (m === 0) continue;
    for (let v = 0; v < V; v++) {
      const w = m * p[v]!;
      if (w === 0) continue;
      for (let c = 0; c < d; c++) g.data[t * d + c]! += w * wte.data[v * d + c]!;
    }
  }
  return g;
}

/** X with token rows' coordinates [0, d) replaced by `signal` [T, d]. */
function withSignal(X: Mat, signal: Mat, P: number): Mat {
  const out = { rows: X.rows, cols: X.cols, data: X.data.slice() };
  for (let t = 0; t < signal.rows; t++) out.data.set(signal.data.subarray(t * signal.cols, (t + 1) * signal.cols), (P + t) * X.cols);
  return out;
}
