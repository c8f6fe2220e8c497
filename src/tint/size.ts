/**
 * Parameter count of a TinT, as the reference implementation instantiates it (spec §2): every tensor its
 * modules register, including the identity-initialised ones that are never used (q/k/v maps whose update
 * flag stays off, position projections multiplied by a zero p_expand) and the zero biases. Shared modules and
 * the tied LM head are counted once, as torch's `parameters()` does.
 *
 * This counts the reference's parameterisation, not our construction's arrays: our head-mixing maps are one
 * n×n matrix per map where the reference stores a copy per coordinate, and we do not allocate dead tensors.
 */
import type { InnerConfig } from './inner.ts';
import { defaultHeads, defaultPrefixes, tintLayout } from './config.ts';

export interface TintSizeOptions {
  readonly prefixes?: number;
  readonly heads?: number;
  /** n_sim (default all layers) */
  readonly simulatedLayers?: number;
  /** k (default 1) */
  readonly steps?: number;
  /** default true, as in the reference README */
  readonly reuseForwardBlocks?: boolean;
  readonly reuseBackwardBlocks?: boolean;
}

export interface TintSize {
  /** total distinct parameters */
  readonly params: number;
  readonly layout: { readonly d: number; readonly P: number; readonly S: number; readonly H: number; readonly heads: number; readonly seqLength: number };
  readonly settings: { readonly simulatedLayers: number; readonly steps: number; readonly reuseForwardBlocks: boolean; readonly reuseBackwardBlocks: boolean };
  /** one instance of each module */
  readonly modules: {
    readonly linearForward: number;
    readonly positionProjection: number;
    readonly permutation: number;
    readonly layerNormForward: number;
    readonly attentionForward: number;
    readonly activationForward: number;
    readonly linearDescentBackward: number;
    readonly layerNormDescentBackward: number;
    readonly attentionBackwardDescent: number;
    readonly activationBackward: number;
  };
  readonly blocks: {
    /** F: one forward block's modules */
    readonly forward: number;
    /** inner weights stored as prefix blocks, per layer: (6 + 3·ffn/d)·P·H */
    readonly storedPerLayer: number;
    /** B: one backward block */
    readonly backward: number;
    /** G: the final-LN module */
    readonly gradient: number;
    readonly storedFinalLn: number;
  };
  readonly counts: { readonly forwardBlocks: number; readonly backwardBlocks: number; readonly reforwardBlocks: number };
  readonly totals: {
    readonly forward: number;
    readonly backward: number;
    readonly reforward: number;
    readonly gradient: number;
    /** all prefix blocks (layers and final LN) */
    readonly stored: number;
    /** token + position embeddings of the inner model (the LM head is tied) */
    readonly embeddings: number;
  };
}

// Reference module shapes. Conv2D(nf, nx): weight [nf, nx, nx] + bias [nf, nx]; with transpose: weight
// [nx, nf, nf] + bias [nx, nf]. Conv1D(nf, nx): weight [nx, nf] + bias [nf].
const conv2d = (nf: number, nx: number): number => nf * nx * nx + nf * nx;
const conv2dT = (nf: number, nx: number): number => nx * nf * nf + nx * nf;
const conv1d = (nf: number, nx: number): number => nx * nf + nf;

export function tintSize(inner: InnerConfig, opts: TintSizeOptions = {}): TintSize {
  const layout = tintLayout(inner, { prefixes: opts.prefixes ?? defaultPrefixes(inner.dModel), ...(opts.heads !== undefined ? { heads: opts.heads } : {}) });
  const { d, P, S, H, heads: nT, posDim, chunks } = layout;
  const hd = H / nT;
  const L = inner.nLayers;
  const nSim = opts.simulatedLayers ?? L;
  const k = opts.steps ?? 1;
  const reuseF = opts.reuseForwardBlocks ?? true;
  const reuseB = opts.reuseBackwardBlocks ?? true;

  const gates = 2 * conv1d(1, posDim);
  const positionProjection = conv1d(3 * hd, posDim);
  /** Attention(num_heads, head_dim = H/num_heads): q/k/v maps (optionally on convDim-sized channels), p_attn, p_expand, c_proj */
  const attention = (numHeads: number, conv: { q?: number; k?: number; v?: number }, projDim: number): number => {
    const headDim = H / numHeads;
    let qkv = 0;
    for (const cd of [conv.q, conv.k, conv.v]) {
      const c = cd ?? headDim;
      qkv += conv2d(H / c, c) + conv2dT(H / c, c);
    }
    return qkv + conv1d(3 * headDim, posDim) + 4 * numHeads + conv2dT(H / projDim, projDim);
  };
  const linearHeads = H / P;
  const permutation = conv2d(H / d, d);
  const linearForward = attention(linearHeads, {}, P) + gates + permutation + conv2dT(H / d, d);
  const layerNormForward = linearForward + gates;
  const attentionForward = linearForward + gates + attention(nT, {}, hd);
  const activationForward = conv2dT(nT, hd) + conv2d(nT, hd) + gates;
  const linearBackward = attention(linearHeads, { q: d }, P) + gates;
  const linearDescent = attention(linearHeads, { k: d }, P) + gates;
  const linearDescentBackward = linearBackward + linearDescent;
  const layerNormDescentBackward = linearBackward + 2 * conv2dT(nT, hd) + gates + linearDescent;
  const activationBackward = 2 * conv2dT(nT, hd);
  const attentionBackwardDescent = attention(nT, {}, hd) + gates + linearDescentBackward;

  const forward = 2 * layerNormForward + attentionForward + 3 * linearForward + activationForward;
  const backward = 3 * linearDescentBackward + activationBackward + 2 * layerNormDescentBackward + attentionBackwardDescent;
  const gradient = layerNormForward + layerNormDescentBackward;
  const storedPerLayer = (6 + 3 * chunks) * P * H;
  const storedFinalLn = P * H;

  const backwardBlocks = k === 0 ? 0 : reuseB ? nSim : k * nSim;
  const reforwardBlocks = reuseF ? 0 : k * nSim;
  const positions = inner.family === 'opt' ? inner.maxPositions + 2 : inner.maxPositions;
  const totals = {
    forward: L * forward,
    backward: backwardBlocks * backward,
    reforward: reforwardBlocks * forward,
    gradient,
    stored: L * storedPerLayer + storedFinalLn,
    embeddings: (inner.vocabSize + positions) * d,
  };
  return {
    params: totals.forward + totals.backward + totals.reforward + totals.gradient + totals.stored + totals.embeddings,
    layout: { d, P, S, H, heads: nT, seqLength: layout.seqLength },
    settings: { simulatedLayers: nSim, steps: k, reuseForwardBlocks: reuseF, reuseBackwardBlocks: reuseB },
    modules: {
      linearForward,
      positionProjection,
      permutation,
      layerNormForward,
      attentionForward,
      activationForward,
      linearDescentBackward,
      layerNormDescentBackward,
      attentionBackwardDescent,
      activationBackward,
    },
    blocks: { forward, storedPerLayer, backward, gradient, storedFinalLn },
    counts: { forwardBlocks: L, backwardBlocks, reforwardBlocks },
    totals,
  };
}

/** Default head count for a config, exposed for the CLI's report. */
export function defaultTintHeads(inner: InnerConfig, prefixes?: number): number {
  const P = prefixes ?? defaultPrefixes(inner.dModel);
  const H = inner.dModel * (inner.dModel / P + 1);
  return defaultHeads(inner.dModel, H, P, inner.nHeads);
}
