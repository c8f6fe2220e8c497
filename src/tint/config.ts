/**
 * TinT settings (what a user chooses) and layout (what follows from the inner model and the settings):
 * prefix count P, stacking factor S = d/P, TinT width H = d(S+1), head counts and the memory offsets in a
 * token row. The constraints are those of the reference construction (spec §2).
 */
import { LmtuneError } from '../util/errors.ts';
import type { InnerConfig } from './inner.ts';

/** 'tanh': the reference gates tanh(±gate_scale·onehot) (leak 1 − tanh(10) ≈ 4e-9); 'hard': exact 0/1 gates */
export type GateMode = 'tanh' | 'hard';

export interface TintSettings {
  /** inner learning rate η for the *summed* (not mean) loss; baked into the descent modules' value maps */
  readonly lr: number;
  /** number of prefix rows P (default d/S for the smallest S ≥ 3 dividing d) */
  readonly prefixes?: number;
  /** TinT softmax heads n_T (default S(S+1), i.e. head size P) */
  readonly heads?: number;
  /** finite-difference scale N of the layer-norm and activation backward modules (`scale_embeddings`) */
  readonly fdScale: number;
  readonly gates: GateMode;
  /** gate pre-activation magnitude (`gate_scale`) */
  readonly gateScale: number;
  /** n_sim: how many top layers are back-propagated, updated and re-evaluated (default: all) */
  readonly simulatedLayers?: number;
  /** k: number of simulated SGD steps (`n_forward_backward`) */
  readonly steps: number;
  /** share one set of forward-block parameters between the first and the re-evaluation passes */
  readonly reuseForwardBlocks: boolean;
  /** share the backward blocks between steps */
  readonly reuseBackwardBlocks: boolean;
  /** linear-attention modules compute only token-query × prefix-key products (numerically identical) */
  readonly restrictPrefixes: boolean;
  /** false: ∂v = ∂o (the reference's backprop_through_attention=False) */
  readonly backpropThroughAttention: boolean;
  /** ε of TinT's layer norms; default the inner model's (the reference hard-codes 1e-5) */
  readonly lnEps?: number;
}

export const DEFAULT_TINT_SETTINGS: Omit<TintSettings, 'lr'> = {
  fdScale: 1000,
  gates: 'tanh',
  gateScale: 10,
  steps: 1,
  reuseForwardBlocks: true,
  reuseBackwardBlocks: true,
  restrictPrefixes: true,
  backpropThroughAttention: true,
};

export function tintSettings(overrides: Partial<TintSettings> & { lr: number }): TintSettings {
  const s: TintSettings = { ...DEFAULT_TINT_SETTINGS, ...overrides };
  if (!Number.isFinite(s.lr)) throw new LmtuneError('CONFIG', `TinT lr must be a finite number, got ${s.lr}`);
  if (!(s.fdScale > 0)) throw new LmtuneError('CONFIG', `TinT fdScale (N) must be positive, got ${s.fdScale}`);
  if (!(s.gateScale > 0)) throw new LmtuneError('CONFIG', `TinT gateScale must be positive, got ${s.gateScale}`);
  if (!Number.isInteger(s.steps) || s.steps < 0) throw new LmtuneError('CONFIG', `TinT steps must be a non-negative integer, got ${s.steps}`);
  return s;
}

export interface TintLayout {
  /** inner width */
  readonly d: number;
  /** stacking factor: rows of W per prefix */
  readonly S: number;
  /** prefix rows */
  readonly P: number;
  /** TinT width d(S+1) */
  readonly H: number;
  /** linear-attention heads H/P (each of size P) */
  readonly linearHeads: number;
  /** softmax heads n_T and their size H/n_T */
  readonly heads: number;
  readonly headDim: number;
  readonly innerHeads: number;
  readonly innerHeadDim: number;
  /** FFN chunks ffn/d (each a square d×d linear op) */
  readonly chunks: number;
  /** memory offsets in a token row: [Qx | Kx | x], [x̂ | x], [x] */
  readonly attnMem: number;
  readonly lnMem: number;
  readonly linMem: number;
  readonly actMem: number;
  /** width of the position one-hots: seqLength (token positions) + P (prefixes) */
  readonly seqLength: number;
  readonly posDim: number;
}

/** Smallest stacking factor S ≥ 3 dividing d (d = 768 → 3, 1024 → 4). */
export function defaultPrefixes(d: number): number {
  for (let S = 3; S <= d; S++) if (d % S === 0) return d / S;
  throw new LmtuneError('CONFIG', `TinT needs an inner width d ≥ 3, got ${d}`);
}

function headsValid(d: number, H: number, nh: number, nT: number): string | null {
  if (H % nT !== 0) return `H = ${H} is not divisible by ${nT} heads`;
  const hd = H / nT;
  if (d % hd !== 0) return `head size H/n_T = ${hd} does not divide d = ${d}`;
  if (nT < nh) return `n_T = ${nT} < the inner model's ${nh} heads (one TinT head per inner head)`;
  if (nh % (d / hd) !== 0) return `the inner model's ${nh} heads are not divisible by d/(H/n_T) = ${d / hd}`;
  return null;
}

/** Default n_T: head size P (the published configs), else the largest valid head size. */
export function defaultHeads(d: number, H: number, P: number, nh: number): number {
  if (headsValid(d, H, nh, H / P) === null) return H / P;
  for (let hd = d; hd >= 1; hd--) if (d % hd === 0 && headsValid(d, H, nh, H / hd) === null) return H / hd;
  throw new LmtuneError('CONFIG', `no valid TinT head count for d = ${d}, H = ${H}, ${nh} inner heads`);
}

export function tintLayout(inner: InnerConfig, s: { prefixes?: number; heads?: number }): TintLayout {
  const d = inner.dModel;
  const nh = inner.nHeads;
  if (d % nh !== 0) throw new LmtuneError('CONFIG', `inner width ${d} is not divisible by its ${nh} heads`);
  if (inner.ffnDim % d !== 0) {
    throw new LmtuneError('UNSUPPORTED', `inner FFN width ${inner.ffnDim} is not a multiple of d = ${d}`, 'TinT runs the FFN as ffn/d square chunks');
  }
  const P = s.prefixes ?? defaultPrefixes(d);
  if (!Number.isInteger(P) || P < 1 || d % P !== 0) throw new LmtuneError('CONFIG', `TinT prefixes P = ${P} must divide d = ${d}`);
  const S = d / P;
  if (S < 3) throw new LmtuneError('CONFIG', `TinT needs S = d/P ≥ 3 (memory [Qx|Kx|x] plus the signal), got S = ${S} for P = ${P}`, `use P ≤ ${Math.floor(d / 3)}`);
  const H = d * (S + 1);
  const nT = s.heads ?? defaultHeads(d, H, P, nh);
  const bad = headsValid(d, H, nh, nT);
  if (bad) throw new LmtuneError('CONFIG', `TinT heads: ${bad}`, `e.g. --heads ${defaultHeads(d, H, P, nh)}`);
  return {
    d,
    S,
    P,
    H,
    linearHeads: H / P,
    heads: nT,
    headDim: H / nT,
    innerHeads: nh,
    innerHeadDim: d / nh,
    chunks: inner.ffnDim / d,
    attnMem: H - 3 * d,
    lnMem: H - 2 * d,
    linMem: H - d,
    actMem: H - d,
    seqLength: inner.maxPositions,
    posDim: inner.maxPositions + P,
  };
}
