/**
 * §6 items 15–19 and 21 of ../shared/specs/kernel-and-features.md: the conditional-mean features, the
 * subset logits and the probe algebra, on the float64 reference functions and on the features the
 * model's graph extracts (float32, onnxruntime), each against an independent computation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../util/rng.ts';
import { Graph, compile, grad, toFloat64 } from '../engine/index.ts';
import { TransformerModel } from '../heads/model.ts';
import { tinyConfig, randomWeights } from '../models/testing.ts';
import { conditionalMean, expectedEmbedding, logSoftmax, logitsOf, softmax, subsetLogits, wordWeights } from './conditional-mean.ts';
import { extractFeatures } from './extract.ts';
import { decisionScores, fitProbe } from './probe.ts';
import { minimizeLbfgs } from './lbfgs.ts';

function randn(n: number, rng: Rng, s = 1): Float64Array {
  return Float64Array.from({ length: n }, () => rng.normal() * s);
}

function tinyGpt2(over: Record<string, unknown>, edit?: (w: ReturnType<typeof randomWeights>) => void, seed = 3): TransformerModel {
  const raw = tinyConfig('gpt2', over);
  const w = randomWeights(raw, seed);
  edit?.(w);
  return TransformerModel.fromWeights(raw, w, null, { threads: 1 });
}

const SEQS = [[5, 9, 11, 3], [7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [4, 4, 4]];

test('15: Φᵀp lies in the convex hull of the embeddings (every supporting half-space), and Φ = I gives p', () => {
  const rng = new Rng(1);
  const [n, V, E] = [6, 40, 5];
  const phi = randn(V * E, rng);
  const logits = randn(n * V, rng, 3);
  const m = conditionalMean(logits, n, phi, V, E);
  for (let t = 0; t < 200; t++) {
    const u = randn(E, rng);
    const proj = Array.from({ length: V }, (_, w) => u.reduce((a, ue, e) => a + ue * phi[w * E + e]!, 0));
    for (let i = 0; i < n; i++) {
      const s = u.reduce((a, ue, e) => a + ue * m[i * E + e]!, 0);
      assert.ok(s >= Math.min(...proj) - 1e-12 && s <= Math.max(...proj) + 1e-12);
    }
  }
  const eye = new Float64Array(V * V);
  for (let w = 0; w < V; w++) eye[w * V + w] = 1;
  const p = softmax(logits, n, V);
  assert.deepEqual(conditionalMean(logits, n, eye, V, V), p);
});

test('15 through the model graph: with Φ = I (vocabulary = width) the phi-p features are the distribution p', async () => {
  const model = tinyGpt2({ vocab_size: 16 }, (w) => {
    const wte = w.get('transformer.wte.weight').data;
    wte.fill(0);
    for (let i = 0; i < 16; i++) wte[i * 16 + i] = 1;
  });
  const seqs = SEQS.map((q) => q.map((t) => t % 16));
  const r = await extractFeatures(model, { sequences: seqs, kinds: ['p', 'phi-p', 'f'], batchSize: 3 });
  const p = r.byKind.p!;
  const phiP = r.byKind['phi-p']!;
  for (let i = 0; i < p.length; i++) assert.ok(Math.abs(p[i]! - phiP[i]!) < 1e-6);
  // and p is softmax(f) in float64 from the extracted f (Φ = I: logits = f)
  const ref = softmax(Float64Array.from(r.byKind.f!), seqs.length, 16);
  for (let i = 0; i < p.length; i++) assert.ok(Math.abs(p[i]! - ref[i]!) < 1e-6);
});

test('16: adding a constant to every logit leaves Φᵀp unchanged (float64, and through the model graph)', async () => {
  const rng = new Rng(2);
  const [n, V, E] = [3, 50, 4];
  const phi = randn(V * E, rng);
  const logits = randn(n * V, rng, 2);
  const base = conditionalMean(logits, n, phi, V, E);
  for (const c of [-700, 5, 1e4]) {
    const shifted = conditionalMean(logits.map((z) => z + c), n, phi, V, E);
    for (let i = 0; i < base.length; i++) assert.ok(Math.abs(shifted[i]! - base[i]!) < 1e-9);
  }
  // graph: make every φ_w share coordinate 0 = 1; the final norm's bias on that coordinate then adds
  // the same constant to all logits
  const withShift = (shift: number) =>
    tinyGpt2({}, (w) => {
      const wte = w.get('transformer.wte.weight').data;
      for (let v = 0; v < 61; v++) wte[v * 16] = 1;
      w.get('transformer.ln_f.bias').data[0] = shift;
    });
  const a = await extractFeatures(withShift(0), { sequences: SEQS, kinds: ['phi-p', 'f'] });
  const b = await extractFeatures(withShift(40), { sequences: SEQS, kinds: ['phi-p', 'f'] });
  for (let i = 0; i < a.byKind['phi-p']!.length; i++) assert.ok(Math.abs(a.byKind['phi-p']![i]! - b.byKind['phi-p']![i]!) < 1e-5);
  assert.ok(Math.abs(b.byKind.f![0]! - a.byKind.f![0]! - 40) < 1e-4, 'f itself moved by the shift');
});

test('17: subset logits minus log p are one constant per example (the log-partition), through the model graph', async () => {
  const model = tinyGpt2({});
  const words = [3, 17, 42, 60, 0];
  const r = await extractFeatures(model, { sequences: SEQS, kinds: ['p', 'f'], wordLists: { some: words, one: [8] } });
  const s = r.byWords.some!;
  const p = r.byKind.p!;
  // the constant is log Σ exp(logits), computed in float64 from f and Φ
  const phi = Float64Array.from(model.weights.get('transformer.wte.weight').data);
  const logits = logitsOf(Float64Array.from(r.byKind.f!), SEQS.length, phi, 61, 16);
  const lp = logSoftmax(logits, SEQS.length, 61);
  for (let i = 0; i < SEQS.length; i++) {
    const consts = words.map((w, c) => s[i * words.length + c]! - Math.log(p[i * 61 + w]!));
    for (const k of consts) assert.ok(Math.abs(k - consts[0]!) < 1e-4, `example ${i}: ${consts.join(' ')}`);
    assert.ok(Math.abs(consts[0]! - (logits[i * 61]! - lp[i * 61]!)) < 1e-4);
    assert.ok(Math.abs(r.byWords.one![i]! - logits[i * 61 + 8]!) < 1e-4);
  }
  const ref = subsetLogits(logits, SEQS.length, 61, words);
  for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(ref[i]! - s[i]!) < 1e-4);
});

test('18: a probe λ on Φᵀp is the linear classifier v = Φλ on p itself', () => {
  const rng = new Rng(4);
  const [n, V, E] = [80, 30, 6];
  const phi = randn(V * E, rng);
  const logits = randn(n * V, rng, 2);
  const p = softmax(logits, n, V);
  const x = expectedEmbedding(p, n, phi, V, E);
  const y = Int32Array.from({ length: n }, (_, i) => (x[i * E]! + 0.3 * rng.normal() > 0 ? 1 : 0));
  const probe = fitProbe({ x, y, n, d: E }, { C: 10 });
  const v = wordWeights(probe.w, phi, V, E);
  const scores = decisionScores(probe, x, n);
  for (let i = 0; i < n; i++) {
    let s = probe.b[0]!;
    for (let w = 0; w < V; w++) s += v[w]! * p[i * V + w]!;
    assert.ok(Math.abs(s - scores[i]!) < 1e-10);
  }
});

test('19: where the cross-entropy gradient vanishes, the conditional means match: Φᵀsoftmax(Φh) = Φᵀp*', async () => {
  const rng = new Rng(5);
  const [V, E] = [25, 4];
  const phi = randn(V * E, rng);
  const pStar = softmax(randn(V, rng, 1.5), 1, V);
  const ce = (hv: Float64Array): number => {
    const lp = logSoftmax(logitsOf(hv, 1, phi, V, E), 1, V);
    return -lp.reduce((a, l, w) => a + pStar[w]! * l, 0);
  };
  // descend with central-difference gradients of the loss: nothing here assumes the identity under test
  const res = minimizeLbfgs(
    (hv, gr) => {
      for (let e = 0; e < E; e++) {
        const up = Float64Array.from(hv);
        const dn = Float64Array.from(hv);
        up[e] = up[e]! + 1e-6;
        dn[e] = dn[e]! - 1e-6;
        gr[e] = (ce(up) - ce(dn)) / 2e-6;
      }
      return ce(hv);
    },
    new Float64Array(E),
    { gtol: 1e-9 },
  );
  assert.ok(res.gradInf < 1e-7, `gradient ${res.gradInf}`);
  const lhs = conditionalMean(logitsOf(res.x, 1, phi, V, E), 1, phi, V, E);
  const rhs = expectedEmbedding(pStar, 1, phi, V, E);
  for (let e = 0; e < E; e++) assert.ok(Math.abs(lhs[e]! - rhs[e]!) < 1e-6, `${lhs[e]} vs ${rhs[e]}`);
  // the engine's autodiff gradient of the same loss vanishes there too
  const g = new Graph('ce');
  const h = g.input('h', [1, E]);
  const loss = h.matmul(g.input('phi', [V, E]), { transB: true }).logSoftmax(-1).mul(g.input('p', [1, V])).sum().neg();
  const exe = await compile({ dh: grad(loss, [h])[0]! }, 'ref');
  const out = await exe.run({ phi: Float32Array.from(phi), p: Float32Array.from(pStar), h: Float32Array.from(res.x) });
  for (const d of toFloat64(out.dh!)) assert.ok(Math.abs(d) < 1e-5);
});

test('21: a 50k-word softmax and Φᵀp in float32 (onnxruntime) match float64 where a naive exp overflows', async () => {
  const V = 50000;
  const E = 16;
  const rng = new Rng(6);
  // ln_f scaled ×60 makes the logits hundreds large: exp(max logit) is Infinity in float32
  const model = tinyGpt2({ vocab_size: V, n_positions: 32 }, (w) => w.get('transformer.ln_f.weight').data.forEach((_, i, a) => (a[i] = 60 * (1 + 0.1 * rng.normal()))));
  const seqs = [[10, 20000, 49999], [7, 7]];
  const r = await extractFeatures(model, { sequences: seqs, kinds: ['f', 'p', 'phi-p'] });
  const phi = Float64Array.from(model.weights.get('transformer.wte.weight').data);
  const logits = logitsOf(Float64Array.from(r.byKind.f!), 2, phi, V, E);
  const maxLogit = Math.max(...logits);
  assert.equal(Math.fround(Math.exp(maxLogit)), Infinity, `the test needs logits beyond float32's exp range (max ${maxLogit})`);
  const p64 = softmax(logits, 2, V);
  const m64 = expectedEmbedding(p64, 2, phi, V, E);
  const p32 = r.byKind.p!;
  let worst = 0;
  for (let i = 0; i < p64.length; i++) worst = Math.max(worst, Math.abs(p32[i]! - p64[i]!));
  assert.ok(worst < 1e-4, `largest |p32 − p64| ${worst}`);
  for (let i = 0; i < m64.length; i++) assert.ok(Math.abs(r.byKind['phi-p']![i]! - m64[i]!) < 1e-3 * Math.max(1, Math.abs(m64[i]!)));
  assert.ok(p32.every(Number.isFinite));
});

test('the graph extraction agrees between onnxruntime (float32) and the float64 reference backend', async () => {
  const raw = tinyConfig('gpt2', {});
  const w = randomWeights(raw, 9);
  const ort = TransformerModel.fromWeights(raw, w, null, { threads: 1 });
  const ref = TransformerModel.fromWeights(raw, w, null, { backend: 'ref' });
  const req = { sequences: SEQS, kinds: ['f', 'phi-p', 'p'] as const, wordLists: { w: [1, 2] } };
  const a = await extractFeatures(ort, req);
  const b = await extractFeatures(ref, req);
  for (const k of ['f', 'phi-p', 'p'] as const) {
    const x = a.byKind[k]!;
    const y = b.byKind[k]!;
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) < 1e-4 * Math.max(1, Math.abs(y[i]!)), `${k}[${i}]`);
  }
  // f is the final norm of the last real token: the full forward pass's logits there are f·Φᵀ
  const all = await ref.forwardAll(SEQS);
  const phi = Float64Array.from(w.get('transformer.wte.weight').data);
  const fromF = logitsOf(Float64Array.from(b.byKind.f!), SEQS.length, phi, 61, 16);
  SEQS.forEach((q, i) => {
    for (let v = 0; v < 61; v++) assert.ok(Math.abs(all.logits[(i * all.seq + q.length - 1) * 61 + v]! - fromF[i * 61 + v]!) < 1e-4);
  });
});

test('every causal family: f·Φᵀ from the split head equals the full forward pass\'s logits at the last token', async () => {
  const families = [
    ['gpt2', {}],
    ['opt', { word_embed_proj_dim: 8 }],
    ['llama', {}],
    ['gpt_neox', {}],
    ['gemma', {}],
  ] as const;
  for (const [family, over] of families) {
    const raw = tinyConfig(family, over);
    const model = TransformerModel.fromWeights(raw, randomWeights(raw, 11), null, { backend: 'ref' });
    const seqs = [[3, 4, 5, 6], [9, 10]];
    const r = await extractFeatures(model, { sequences: seqs, kinds: ['f'] });
    const phiName = model.weights.has('lm_head.weight') ? 'lm_head.weight' : model.weights.has('embed_out.weight') ? 'embed_out.weight' : ({ opt: 'model.decoder.embed_tokens.weight', gemma: 'model.embed_tokens.weight' } as Record<string, string>)[family] ?? 'transformer.wte.weight';
    const phiT = model.weights.get(phiName);
    const [V, E] = phiT.shape as [number, number];
    assert.equal(r.hiddenDim, E, `${family}: f is as wide as Φ's rows`);
    const logits = logitsOf(Float64Array.from(r.byKind.f!), 2, Float64Array.from(phiT.data), V, E);
    const all = await model.forwardAll(seqs);
    seqs.forEach((q, i) => {
      for (let v = 0; v < V; v++) assert.ok(Math.abs(all.logits[(i * all.seq + q.length - 1) * V + v]! - logits[i * V + v]!) < 1e-4, `${family} row ${i} word ${v}`);
    });
  }
});
