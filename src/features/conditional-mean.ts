/**
 * The host-side float64 math of Saunshi, Malladi & Arora (ICLR'21): the next-word distribution
 * p_f = softmax(Φ f) over the whole vocabulary, the conditional-mean features Φᵀp_f = E_{w∼p_f}[φ_w],
 * and word-subset logits. Φ is stored as the model stores it, [V, E] with row w = φ_w (the paper writes
 * its transpose). The extraction itself runs these in the model's graph; this file is the reference
 * the graph is tested against, and the probe-side algebra (v = Φλ).
 */

/** logits [n, V] = F [n, E] · Φᵀ */
export function logitsOf(f: Float64Array, n: number, phi: Float64Array, V: number, E: number): Float64Array {
  const out = new Float64Array(n * V);
  for (let i = 0; i < n; i++) {
    for (let w = 0; w < V; w++) {
      let s = 0;
      for (let e = 0; e < E; e++) s += f[i * E + e]! * phi[w * E + e]!;
      out[i * V + w] = s;
    }
  }
  return out;
}

/** row-wise log-softmax, max-subtracted so no exp overflows whatever the logits' scale */
export function logSoftmax(logits: Float64Array, n: number, V: number): Float64Array {
  const out = new Float64Array(n * V);
  for (let i = 0; i < n; i++) {
    let m = -Infinity;
    for (let w = 0; w < V; w++) m = Math.max(m, logits[i * V + w]!);
    let s = 0;
    for (let w = 0; w < V; w++) s += Math.exp(logits[i * V + w]! - m);
    const lse = m + Math.log(s);
    for (let w = 0; w < V; w++) out[i * V + w] = logits[i * V + w]! - lse;
  }
  return out;
}

export function softmax(logits: Float64Array, n: number, V: number): Float64Array {
  return logSoftmax(logits, n, V).map(Math.exp);
}

/** Φᵀp [n, E]: the expected output embedding under each row's distribution p [n, V] */
export function expectedEmbedding(p: Float64Array, n: number, phi: Float64Array, V: number, E: number): Float64Array {
  const out = new Float64Array(n * E);
  for (let i = 0; i < n; i++) {
    for (let w = 0; w < V; w++) {
      const pw = p[i * V + w]!;
      if (pw === 0) continue;
      for (let e = 0; e < E; e++) out[i * E + e] = out[i * E + e]! + pw * phi[w * E + e]!;
    }
  }
  return out;
}

/** the conditional-mean features of logits [n, V] */
export function conditionalMean(logits: Float64Array, n: number, phi: Float64Array, V: number, E: number): Float64Array {
  return expectedEmbedding(softmax(logits, n, V), n, phi, V, E);
}

/** logits of chosen word ids [n, C] */
export function subsetLogits(logits: Float64Array, n: number, V: number, ids: readonly number[]): Float64Array {
  const out = new Float64Array(n * ids.length);
  for (let i = 0; i < n; i++) ids.forEach((w, c) => (out[i * ids.length + c] = logits[i * V + w]!));
  return out;
}

/**
 * A linear classifier λ [E] on conditional-mean features is the classifier v = Φλ [V] on the
 * distribution itself: λᵀ(Φᵀp) = (Φλ)ᵀp. Returns v.
 */
export function wordWeights(lambda: Float64Array, phi: Float64Array, V: number, E: number): Float64Array {
  const v = new Float64Array(V);
  for (let w = 0; w < V; w++) {
    let s = 0;
    for (let e = 0; e < E; e++) s += phi[w * E + e]! * lambda[e]!;
    v[w] = s;
  }
  return v;
}
