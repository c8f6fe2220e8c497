/**
 * Host-side batch packing: token sequences → padded ids, position ids and the additive attention bias
 * (causal + key padding + always-visible prefix slots), in fixed shape buckets so the compiled graphs
 * are reused across batches.
 */
import { LmtuneError } from '../util/errors.ts';

export const MASKED = -1e9; // finite, so fully masked rows (padding queries) stay NaN-free

export interface PackedBatch {
  readonly batch: number;
  readonly seq: number;
  /** [B·T] token ids (pad = padId) */
  readonly ids: BigInt64Array;
  /** [B·T] position of each token among its row's real tokens (0-based; pads 0) */
  readonly positions: Int32Array;
  /** [B·T] 1 for real tokens */
  readonly mask: Uint8Array;
  /** row b's tokens occupy [start[b], start[b] + len[b]) */
  readonly start: Int32Array;
  readonly len: Int32Array;
}

export function roundUp(n: number, m: number): number {
  return Math.max(m, Math.ceil(n / m) * m);
}

export interface PackOptions {
  /** padded length (bucket); defaults to the longest row rounded up to a multiple of 8 */
  seq?: number;
  /** padded number of rows; extra rows are all padding */
  batch?: number;
  side: 'left' | 'right';
  padId: number;
}

export function packBatch(seqs: readonly (readonly number[])[], opts: PackOptions): PackedBatch {
  const longest = Math.max(1, ...seqs.map((s) => s.length));
  const T = opts.seq ?? roundUp(longest, 8);
  const B = opts.batch ?? seqs.length;
  if (longest > T) throw new LmtuneError('SHAPE', `a sequence of ${longest} tokens does not fit the bucket of ${T}`);
  if (seqs.length > B) throw new LmtuneError('SHAPE', `${seqs.length} sequences do not fit a batch of ${B}`);
  const ids = new BigInt64Array(B * T).fill(BigInt(opts.padId));
  const positions = new Int32Array(B * T);
  const mask = new Uint8Array(B * T);
  const start = new Int32Array(B);
  const len = new Int32Array(B);
  seqs.forEach((s, b) => {
    const st = opts.side === 'left' ? T - s.length : 0;
    start[b] = st;
    len[b] = s.length;
    for (let i = 0; i < s.length; i++) {
      ids[b * T + st + i] = BigInt(s[i]!);
      positions[b * T + st + i] = i;
      mask[b * T + st + i] = 1;
    }
  });
  return { batch: B, seq: T, ids, positions, mask, start, len };
}

/**
 * Whether a causal query at position i sees the key at position j ≤ i under a sliding window: HF's
 * sliding_window_overlay keeps kv_idx > q_idx − sliding_window, so i − window < j ≤ i (the query and the
 * window − 1 keys before it), as `_make_causal_mask` does since its diagonal became past − window + 1 (older
 * releases used past − window − 1 and kept one key more). null: no window.
 */
export function inWindow(i: number, j: number, window: number | null): boolean {
  return window === null || j > i - window;
}

/**
 * Additive attention bias [B, 1, T, P + T]: P prefix slots visible to every query, then token keys
 * visible when real, (if causal) not in the future, and (with a sliding window) not too far in the past.
 * Real tokens sit contiguously in a row, so index distance is position distance, left padding or right.
 * Prefix slots stay visible to every query under a window too: they are adapter slots, not positions.
 */
export function attentionBias(b: PackedBatch, causal: boolean, prefixSlots = 0, window: number | null = null): Float32Array {
  const { batch: B, seq: T } = b;
  const S = prefixSlots + T;
  const out = new Float32Array(B * T * S);
  for (let r = 0; r < B; r++) {
    for (let i = 0; i < T; i++) {
      const row = (r * T + i) * S;
      for (let j = 0; j < T; j++) {
        const visible = b.mask[r * T + j] === 1 && (!causal || (j <= i && inWindow(i, j, window)));
        out[row + prefixSlots + j] = visible ? 0 : MASKED;
      }
    }
  }
  return out;
}

/**
 * The bias [1, 1, T, P + C + T] of one generation step: `real` new tokens (padded to T) at positions
 * filled … filled + real − 1, attending to the prefix slots, the `filled` cached keys (cache capacity C)
 * and the new tokens before them, within the sliding window when there is one.
 */
export function decodeBias(T: number, real: number, filled: number, capacity: number, prefixSlots: number, window: number | null): Float32Array {
  const S = prefixSlots + capacity + T;
  const out = new Float32Array(T * S).fill(MASKED);
  for (let i = 0; i < T; i++) {
    const q = filled + Math.min(i, real - 1); // padding rows repeat the last real query (their output is unused)
    for (let j = 0; j < prefixSlots; j++) out[i * S + j] = 0;
    for (let j = 0; j < filled; j++) if (inWindow(q, j, window)) out[i * S + prefixSlots + j] = 0;
    for (let j = 0; j <= Math.min(i, real - 1); j++) if (inWindow(q, filled + j, window)) out[i * S + prefixSlots + capacity + j] = 0;
  }
  return out;
}

/**
 * rotary cos/sin tables [B, 1, T, rotDim] for the batch's position ids (HF: cat(freqs, freqs)). HF's
 * inv_freq = 1.0 / (base ** (arange(0, dim, 2).float() / dim)) rounds to float32 at each step (exponent,
 * power, reciprocal); one rounding of the exact value differs from it by an ulp in ~15% of the frequencies
 * of a 128-wide head, so the steps are repeated here.
 */
export function rotaryTables(b: PackedBatch, rotDim: number, theta: number, scale = 1): { cos: Float32Array; sin: Float32Array } {
  const { batch: B, seq: T } = b;
  const half = rotDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / rotDim))));
  const cos = new Float32Array(B * T * rotDim);
  const sin = new Float32Array(B * T * rotDim);
  for (let r = 0; r < B * T; r++) {
    const p = b.positions[r]! / scale;
    for (let i = 0; i < half; i++) {
      const f = Math.fround(p * Math.fround(inv[i]!));
      const c = Math.cos(f);
      const s = Math.sin(f);
      cos[r * rotDim + i] = c;
      cos[r * rotDim + half + i] = c;
      sin[r * rotDim + i] = s;
      sin[r * rotDim + half + i] = s;
    }
  }
  return { cos, sin };
}
