/**
 * §6 item 20 of ../shared/specs/kernel-and-features.md: the Quad loss graph's gradients against central
 * finite differences of a float64 host implementation, the per-token gradient −φ_w + ΦᵀΦh, the
 * minimiser of the expected loss against a closed-form (Cholesky) solve, and a Quad-pretrained model
 * that saves as a plain checkpoint whose logits are Φ·A·f.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { Graph, compile, grad, toFloat64 } from '../engine/index.ts';
import { TransformerModel } from '../heads/model.ts';
import { packBatch } from '../models/batch.ts';
import { tinyConfig, randomWeights } from '../models/testing.ts';
import { readJson } from '../node/fsx.ts';
import { minimizeLbfgs } from '../features/lbfgs.ts';
import { addQuadWeights, foldedCheckpoint, loadQuadPhi, quadLoss, quadLossAndGrads, quadLossRef, quadMinimiser, QUAD_DENSE, QUAD_PHI } from './quad.ts';
import { LmtuneError } from '../util/errors.ts';
import { pretrain } from './pretrain.ts';

/** float32-representable Gaussians, so the graph and the float64 host see the same numbers */
function randn(n: number, rng: Rng, s = 1): Float64Array {
  return Float64Array.from({ length: n }, () => Math.fround(rng.normal() * s));
}

async function lossGraph(K: number, E: number, V: number) {
  const g = new Graph('quad');
  const f = g.input('f', [K, E]);
  const dense = g.input('dense', [E, E]);
  const phi = g.input('phi', [V, E]);
  const loss = quadLoss(g, f, dense, phi, g.input('labels', [K], 'i64'), g.input('weight', [K]));
  const [df, dA, dPhi] = grad(loss, [f, dense, phi]);
  return compile({ loss, df: df!, dA: dA!, dPhi: dPhi! }, 'ref');
}

test('20: the Quad graph loss and its gradients match a float64 host loss and its central differences', async () => {
  const rng = new Rng(1);
  const [K, E, V] = [5, 3, 7];
  const f = randn(K * E, rng);
  const A = randn(E * E, rng, 0.7);
  const phi = randn(V * E, rng, 0.5);
  const labels = [0, 3, 6, 3, 1];
  const weight = [0.2, 0.2, 0.2, 0.4, 0];
  const exe = await lossGraph(K, E, V);
  const out = await exe.run({ f: Float32Array.from(f), dense: Float32Array.from(A), phi: Float32Array.from(phi), labels: BigInt64Array.from(labels.map(BigInt)), weight: Float32Array.from(weight) });
  const ref = (ff: Float64Array, AA: Float64Array, pp: Float64Array) => quadLossRef(ff, K, E, AA, pp, labels, weight);
  assert.ok(Math.abs(toFloat64(out.loss!)[0]! - ref(f, A, phi)) < 1e-5);
  const check = (name: string, x: Float64Array, at: (y: Float64Array) => number, analytic: Float64Array) => {
    for (let i = 0; i < x.length; i++) {
      const up = Float64Array.from(x);
      const dn = Float64Array.from(x);
      up[i] = up[i]! + 1e-6;
      dn[i] = dn[i]! - 1e-6;
      const fd = (at(up) - at(dn)) / 2e-6;
      assert.ok(Math.abs(fd - analytic[i]!) < 1e-4 * Math.max(1, Math.abs(fd)), `${name}[${i}]: autodiff ${analytic[i]} vs finite difference ${fd}`);
    }
  };
  check('f', f, (y) => ref(y, A, phi), toFloat64(out.df!));
  check('A', A, (y) => ref(f, y, phi), toFloat64(out.dA!));
  check('Φ', phi, (y) => ref(f, A, y), toFloat64(out.dPhi!));
});

test('20: with A = I the gradient for one token is −φ_w + ΦᵀΦh', async () => {
  const rng = new Rng(2);
  const [E, V] = [4, 9];
  const h = randn(E, rng);
  const phi = randn(V * E, rng);
  const eye = new Float32Array(E * E).map((_, i) => (i % (E + 1) === 0 ? 1 : 0));
  const exe = await lossGraph(1, E, V);
  const w = 5;
  const out = await exe.run({ f: Float32Array.from(h), dense: eye, phi: Float32Array.from(phi), labels: BigInt64Array.from([BigInt(w)]), weight: Float32Array.from([1]) });
  const d = toFloat64(out.df!);
  for (let i = 0; i < E; i++) {
    let expect = -phi[w * E + i]!;
    for (let v = 0; v < V; v++) {
      let z = 0;
      for (let j = 0; j < E; j++) z += phi[v * E + j]! * h[j]!;
      expect += phi[v * E + i]! * z;
    }
    assert.ok(Math.abs(d[i]! - expect) < 1e-6);
  }
});

test('20: the expected-loss minimiser solves ΦᵀΦh* = Φᵀp* (L-BFGS on the host loss vs Cholesky), and the graph gradient vanishes there', async () => {
  const rng = new Rng(3);
  const [E, V] = [4, 12];
  const phi = randn(V * E, rng);
  const logits = randn(V, rng);
  const mx = Math.max(...logits);
  const z = logits.reduce((a, l) => a + Math.exp(l - mx), 0);
  const pStar = logits.map((l) => Math.exp(l - mx) / z);
  const eye = Float64Array.from({ length: E * E }, (_, i) => (i % (E + 1) === 0 ? 1 : 0));
  const labels = [...Array(V).keys()];
  // the expected loss as the host loss over V tokens, each weighted by its probability
  const expected = (h: Float64Array) => quadLossRef(new Float64Array(V * E).map((_, i) => h[i % E]!), V, E, eye, phi, labels, [...pStar]);
  const res = minimizeLbfgs(
    (h, gr) => {
      for (let i = 0; i < E; i++) {
        const up = Float64Array.from(h);
        const dn = Float64Array.from(h);
        up[i] = up[i]! + 1e-6;
        dn[i] = dn[i]! - 1e-6;
        gr[i] = (expected(up) - expected(dn)) / 2e-6;
      }
      return expected(h);
    },
    new Float64Array(E),
    { gtol: 1e-10 },
  );
  const closed = quadMinimiser(phi, V, E, pStar);
  for (let i = 0; i < E; i++) assert.ok(Math.abs(res.x[i]! - closed[i]!) < 1e-6, `h*[${i}]: ${res.x[i]} vs ${closed[i]}`);
  const exe = await lossGraph(V, E, V);
  const f = new Float32Array(V * E).map((_, i) => closed[i % E]!);
  const out = await exe.run({ f, dense: Float32Array.from(eye), phi: Float32Array.from(phi), labels: BigInt64Array.from(labels.map(BigInt)), weight: Float32Array.from(pStar) });
  const df = toFloat64(out.df!);
  for (let i = 0; i < E; i++) {
    let s = 0;
    for (let t = 0; t < V; t++) s += df[t * E + i]!;
    assert.ok(Math.abs(s) < 1e-5, `Σ_t ∂loss/∂f_t[${i}] = ${s}`);
  }
});

test('a Quad model folds into a plain checkpoint: its logits are Φ·A·f, and its training loss is the host Quad loss', async () => {
  const raw = tinyConfig('gpt2', {});
  const model = TransformerModel.fromWeights(raw, randomWeights(raw, 4), null, { backend: 'ref' });
  const rng = new Rng(5);
  addQuadWeights(model, {}, () => rng.normal());
  model.weights.get(QUAD_DENSE).data.forEach((_, i, a) => (a[i] = (i % 17 === 0 ? 1 : 0) + 0.1 * rng.normal()));
  const folded = foldedCheckpoint(model);
  assert.equal(folded.raw.tie_word_embeddings, false);
  assert.ok(!folded.weights.has(QUAD_PHI) && !folded.weights.has(QUAD_DENSE));
  const plain = TransformerModel.fromWeights(folded.raw, folded.weights, null, { backend: 'ref' });
  const seq = [3, 9, 27, 4, 1];
  const all = await plain.forwardAll([seq]);
  // the Quad head by hand: h = A·(final norm of the body), logits = Φh
  const batch = packBatch([seq], { side: 'right', padId: 0 });
  const res = await model.runHead('test-f', batch, (h) => ({ f: model.arch.finalNorm!(h.ctx, h.hidden.reshape([-1, 16])) }));
  const f = toFloat64(res.f!);
  const A = model.weights.get(QUAD_DENSE).data;
  const phi = model.weights.get(QUAD_PHI).data;
  for (let t = 0; t < seq.length; t++) {
    const h = Array.from({ length: 16 }, (_, i) => A.subarray(i * 16, (i + 1) * 16).reduce((s, a, j) => s + a * f[t * 16 + j]!, 0));
    for (let v = 0; v < 61; v += 7) {
      const logit = h.reduce((s, hi, i) => s + hi * phi[v * 16 + i]!, 0);
      assert.ok(Math.abs(all.logits[t * 61 + v]! - logit) < 1e-4, `t=${t} v=${v}: ${all.logits[t * 61 + v]} vs ${logit}`);
    }
  }
  // the training step's loss is the host Quad loss of those rows
  const targets = { index: Int32Array.from([0, 1, 2, 3]), label: Int32Array.from([9, 27, 4, 1]) };
  const r = await quadLossAndGrads(model, batch, targets, [QUAD_DENSE]);
  const ref = quadLossRef(f.subarray(0, 4 * 16), 4, 16, Float64Array.from(A), Float64Array.from(phi), [9, 27, 4, 1], [0.25, 0.25, 0.25, 0.25]);
  assert.ok(Math.abs(r.loss - ref) < 1e-5, `${r.loss} vs ${ref}`);
  assert.equal(r.grads!.get(QUAD_DENSE)!.length, 256);
});

test('lmtune pretrain --objective quad: the loss falls, and the saved checkpoint loads as an untied GPT-2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-quad-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const text = Array.from({ length: 60 }, (_, i) => `the cat sat on the mat number ${i % 7}. a dog ran to the park and back again.`).join('\n\n');
  writeFileSync(join(dir, 'corpus.txt'), text);
  const steps: number[] = [];
  const out = join(dir, 'model');
  const s = await pretrain(
    { out, shared: dir, vocabSize: 300, layers: 1, dim: 16, heads: 2, seq: 16, batch: 4, steps: 40, lr: 1e-2, warmup: 2, weightDecay: 0, seed: 0, threads: 1, objective: 'quad', sources: [{ name: 'toy', path: join(dir, 'corpus.txt'), documents: (t) => t.split('\n\n') }] },
    { onStep: (_s, _t, loss) => steps.push(loss) },
  );
  assert.ok(Number.isFinite(s.heldOutLoss));
  assert.ok(steps[steps.length - 1]! < steps[0]! - 0.05, `the Quad loss should fall: ${steps[0]} → ${steps[steps.length - 1]}`);
  const cfg = readJson<Record<string, unknown>>(join(out, 'config.json'));
  assert.equal(cfg.tie_word_embeddings, false);
  const loaded = await TransformerModel.load(out, { backend: 'ref' });
  assert.ok(loaded.weights.has('lm_head.weight'));
  const summary = readJson<{ options: { objective: string } }>(join(out, 'pretrain_summary.json'));
  assert.equal(summary.options.objective, 'quad');
});

test('--quad-phi-from: a fixed Φ stays fixed (the saved head Φ·A lies in Φ\'s column span), and a foreign vocabulary is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-quad-fixed-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const text = Array.from({ length: 60 }, (_, i) => `the cat sat on the mat number ${i % 7}. a dog ran to the park and back again.`).join('\n\n');
  writeFileSync(join(dir, 'corpus.txt'), text);
  const base = { shared: dir, vocabSize: 300, layers: 1, dim: 16, heads: 2, seq: 16, batch: 4, steps: 10, lr: 1e-2, warmup: 2, weightDecay: 0, seed: 0, threads: 1, objective: 'quad' as const, sources: [{ name: 'toy', path: join(dir, 'corpus.txt'), documents: (t: string) => t.split('\n\n') }] };
  await pretrain({ ...base, out: join(dir, 'a') });
  const fixed = await loadQuadPhi(join(dir, 'a'));
  await pretrain({ ...base, out: join(dir, 'b'), seed: 1, quadFixedPhi: fixed });
  const [V, E] = fixed.shape as [number, number];
  const phi = Float64Array.from(fixed.data);
  // relative residual of the least-squares fit Φ X = head (normal equations, column by column)
  const residual = async (model: string): Promise<number> => {
    const head = (await TransformerModel.load(join(dir, model), { backend: 'ref' })).weights.get('lm_head.weight').data;
    let resid = 0;
    let norm = 0;
    for (let c = 0; c < E; c++) {
      const col = Float64Array.from({ length: V }, (_, w) => head[w * E + c]!);
      const x = quadMinimiser(phi, V, E, col);
      for (let w = 0; w < V; w++) {
        let fit = 0;
        for (let e = 0; e < E; e++) fit += phi[w * E + e]! * x[e]!;
        resid += (fit - col[w]!) ** 2;
        norm += col[w]! ** 2;
      }
    }
    return Math.sqrt(resid / norm);
  };
  assert.ok((await residual('b')) < 1e-4, `fixed Φ: relative residual ${await residual('b')}`);
  // the control: the same run with a learned Φ leaves that span
  await pretrain({ ...base, out: join(dir, 'd'), seed: 1 });
  assert.ok((await residual('d')) > 1e-2, `learned Φ: relative residual ${await residual('d')}`);
  await assert.rejects(pretrain({ ...base, out: join(dir, 'c'), vocabSize: 290, quadFixedPhi: fixed }), (e: unknown) => e instanceof LmtuneError && /vocabulary differs/.test(e.message));
});
