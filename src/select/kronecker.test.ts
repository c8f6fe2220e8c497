/**
 * The Kronecker-factored projection (src/projection/kronecker.ts, src/select/kronecker.ts): the factored
 * feature equals the dense (P_out ⊗ P_in)·vec(G) of the engine's per-example gradients (an independent
 * path: the engine's per-example mode, no LoRA taps), for plain and factored-Adam features; it is linear;
 * byte-identical across gradient batch sizes and shard splits; and it preserves norms as a JL map.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TransformerModel } from '../heads/model.ts';
import { randomWeights, tinyConfig } from '../models/testing.ts';
import { attachPeft } from '../peft/index.ts';
import { Rng } from '../util/rng.ts';
import { KroneckerProjection, kroneckerBudgets, kroneckerShape } from '../projection/kronecker.ts';
import { gradLayout, normalizeRows, perExampleGradients, LESS_ADAM, type GradExample } from './features.ts';
import { kroneckerFeatures, kroneckerMatrices } from './kronecker.ts';

async function tinyLoraModel(backend: 'ref' | 'ort', threads = 1): Promise<TransformerModel> {
  const raw = tinyConfig('gpt2');
  const m = TransformerModel.fromWeights(raw, randomWeights(raw, 5), null, { backend, threads });
  await attachPeft(m, { kind: 'lora', rank: 2, alpha: 4, dropout: 0, targets: ['attn\\.c_attn$', 'attn\\.c_proj$'] }, 1);
  // LoRA B starts at 0, which would make every A-gradient 0: give B values so both factors matter
  const rng = new Rng(9);
  for (const n of m.adapters!.names()) if (n.endsWith('lora_B.weight')) m.tensor(n).forEach((_, i, a) => (a[i] = 0.3 * rng.normal()));
  return m;
}

function examples(count: number, seed: number): GradExample[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const len = 3 + rng.int(12);
    const ids = Array.from({ length: len }, () => 3 + rng.int(50));
    const supervised = new Uint8Array(len);
    supervised.fill(1, 1 + rng.int(len - 1));
    return { ids, supervised };
  });
}

/** y = normalize(Σ_m rows_m · g_m) with the explicit Kronecker rows, float64 */
function denseFeature(p: KroneckerProjection, g: Float64Array, offsets: number[]): Float64Array {
  const y = new Float64Array(p.outDim);
  p.factors.forEach((f, m) => {
    const rows = p.denseRows(m);
    const D = f.out * f.in;
    for (let j = 0; j < f.keep; j++) {
      let s = 0;
      for (let q = 0; q < D; q++) s += rows[j * D + q]! * g[offsets[m]! + q]!;
      y[f.offset + j] = s;
    }
  });
  const norm = Math.hypot(...y);
  return y.map((v) => v / norm);
}

test('factorization rule: budgets sum to d, each within its matrix, shapes cover the budget', () => {
  const mats = [
    { name: 'a', out: 8, in: 768 },
    { name: 'b', out: 2304, in: 8 },
    { name: 'c', out: 2, in: 3 },
  ];
  for (const d of [3, 100, 1000, 8192]) {
    const b = kroneckerBudgets(mats, d);
    assert.equal(b.reduce((x, y) => x + y, 0), d);
    b.forEach((v, i) => assert.ok(v >= 1 && v <= mats[i]!.out * mats[i]!.in, `budget ${v} of ${mats[i]!.name} at d = ${d}`));
    b.forEach((v, i) => {
      const { kOut, kIn } = kroneckerShape(mats[i]!.out, mats[i]!.in, v);
      assert.ok(kOut * kIn >= v && kOut * kIn - v < Math.max(kOut, kIn), `${kOut}×${kIn} for ${v}`);
    });
  }
  // the 6-value matrix is full at d = 8192 and the excess goes to the others
  assert.deepEqual(kroneckerBudgets(mats, 8192), [4093, 4093, 6]);
  assert.deepEqual(kroneckerShape(8, 768, 171), { kOut: 8, kIn: 22 });
  assert.deepEqual(kroneckerShape(2304, 8, 171), { kOut: 22, kIn: 8 });
  assert.deepEqual(kroneckerShape(768, 768, 170), { kOut: 14, kIn: 13 });
  // a side kept whole is the identity (rule step 3), with per-row / per-column unbiasing scales
  const p = new KroneckerProjection({ seed: 0, matrices: mats, outDim: 1000, backend: 'ref' });
  assert.deepEqual(p.factors.map((f) => [f.keep, f.kOut, f.kIn, f.pOut === null, f.pIn === null]), [[498, 8, 63, true, false], [496, 62, 8, false, true], [6, 2, 3, true, true]]);
  // A [8, 768] keeps 498 = 7·63 + 57: rows 0..6 unscaled, the last row's 57 scaled by √(63/57)
  assert.equal(p.factors[0]!.scales[0], 1);
  assert.equal(p.factors[0]!.scales[497], Math.sqrt(63 / 57));
  // B [2304, 8] keeping 333 = 41·8 + 5: columns 0..4 in all 42 rows (scale 1), columns 5..7 in 41 rows
  const pb = new KroneckerProjection({ seed: 0, matrices: [mats[1]!], outDim: 333, backend: 'ref' });
  assert.equal(pb.factors[0]!.kOut, 42);
  assert.equal(pb.factors[0]!.scales[0], 1);
  assert.equal(pb.factors[0]!.scales[7], Math.sqrt(42 / 41));
  assert.throws(() => kroneckerBudgets(mats, 2), /at least one coordinate/);
  assert.throws(() => kroneckerBudgets(mats, 30000), /exceeds the LoRA gradient size/);
});

test('factored features equal (P_out ⊗ P_in)·vec(G) of the engine per-example gradients (plain and factored Adam)', async () => {
  const m = await tinyLoraModel('ref');
  const layout = gradLayout(m, m.trainableNames());
  const exs = examples(3, 1);
  const proj = new KroneckerProjection({ seed: 3, matrices: kroneckerMatrices(m, layout), outDim: 96, backend: 'ref' });
  assert.equal(proj.inDim, layout.dim);
  const { grads } = await perExampleGradients(m, layout, exs, 3);
  // moments: v spread over four orders of magnitude so the rank-1 fit is not trivially exact
  const rng = new Rng(4);
  const moments = new Map(layout.names.map((n, i) => [n, { expAvg: Float32Array.from({ length: layout.sizes[i]! }, () => 1e-3 * rng.normal()), expAvgSq: Float32Array.from({ length: layout.sizes[i]! }, () => 1e-8 * 10 ** (2 * rng.uniform())) }]));
  for (const kind of ['sgd', 'adam'] as const) {
    const { features } = await kroneckerFeatures(m, layout, exs, { batchSize: 3, kind, moments, projections: [proj] });
    for (let b = 0; b < exs.length; b++) {
      const g = Float64Array.from(grads.subarray(b * layout.dim, (b + 1) * layout.dim));
      if (kind === 'adam') {
        // Γ̃ = β1 m ⊘ √W + (1 − β1) ρ_a g_ab γ_b with W = β2 v + ε and its rank-1 fit, by hand
        const { beta1, beta2, eps } = LESS_ADAM;
        proj.factors.forEach((f, i) => {
          const mo = moments.get(f.name)!;
          const W = Float64Array.from(mo.expAvgSq, (v) => beta2 * v + eps);
          const R = new Float64Array(f.out);
          const C = new Float64Array(f.in);
          let S = 0;
          W.forEach((w, k) => {
            R[Math.floor(k / f.in)] += w;
            C[k % f.in] += w;
            S += w;
          });
          const o = layout.offsets[i]!;
          for (let k = 0; k < W.length; k++) {
            const a = Math.floor(k / f.in);
            const c = k % f.in;
            g[o + k] = (beta1 * mo.expAvg[k]!) / Math.sqrt(W[k]!) + ((1 - beta1) * g[o + k]! * Math.sqrt(S)) / Math.sqrt(R[a]! * C[c]!);
          }
        });
      }
      const want = denseFeature(proj, g, layout.offsets);
      const got = features[0]!.subarray(b * 96, (b + 1) * 96);
      // project() of the formed gradient (the factors applied to G as a matrix): the same map
      const viaMatrix = normalizeRows(await proj.project(Float32Array.from(g), 1), 1, 96);
      let err = 0;
      let err2 = 0;
      for (let j = 0; j < 96; j++) {
        err = Math.max(err, Math.abs(got[j]! - want[j]!));
        err2 = Math.max(err2, Math.abs(viaMatrix[j]! - want[j]!));
      }
      assert.ok(err < 2e-5, `${kind} example ${b}: max deviation ${err}`);
      assert.ok(err2 < 2e-5, `${kind} example ${b}: project() deviates by ${err2}`);
    }
  }
});

test('at d = the gradient size every block is the gradient itself: features equal the normalized per-example gradients', async () => {
  const m = await tinyLoraModel('ref');
  const layout = gradLayout(m, m.trainableNames());
  const exs = examples(3, 7);
  const proj = new KroneckerProjection({ seed: 3, matrices: kroneckerMatrices(m, layout), outDim: layout.dim, backend: 'ref' });
  assert.ok(proj.factors.every((f) => f.pOut === null && f.pIn === null && f.keep === f.out * f.in));
  const { grads } = await perExampleGradients(m, layout, exs, 3);
  const want = normalizeRows(Float32Array.from(grads), 3, layout.dim);
  const { features } = await kroneckerFeatures(m, layout, exs, { batchSize: 3, kind: 'sgd', projections: [proj] });
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(features[0]![i]! - want[i]!));
  assert.ok(err < 2e-5, `max deviation ${err}`);
});

test('the projection is linear: the tokens of two examples as one give the sum of their features', async () => {
  const p = new KroneckerProjection({ seed: 1, matrices: [{ name: 'w', out: 40, in: 30 }], outDim: 50, backend: 'ref' });
  const rng = new Rng(2);
  const rows = 12;
  const x = Float32Array.from({ length: rows * 30 }, () => rng.normal());
  const d = Float32Array.from({ length: rows * 40 }, () => rng.normal());
  const apart = new Float64Array(2 * 50);
  await p.accumulate(0, x, d, Int32Array.of(0, 5, 12), apart);
  const joint = new Float64Array(50);
  await p.accumulate(0, x, d, Int32Array.of(0, 12), joint);
  // float32 rounding of the projected tokens: compare against the block's norm
  const norm = Math.hypot(...joint);
  for (let j = 0; j < 50; j++) assert.ok(Math.abs(joint[j]! - apart[j]! - apart[50 + j]!) < 1e-12 * norm, `coordinate ${j}`);
  // scaling the output gradients by 3 scales the feature by 3
  const tripled = new Float64Array(50);
  await p.accumulate(0, x, d.map((v) => 3 * v), Int32Array.of(0, 12), tripled);
  for (let j = 0; j < 50; j++) assert.ok(Math.abs(tripled[j]! - 3 * joint[j]!) < 1e-6 * norm, `scaled coordinate ${j}: ${tripled[j]} vs 3·${joint[j]}`);
});

test('features are byte-identical for gradient batch sizes 1, 3 and 8, shard splits and 1 or 2 threads (ort)', async () => {
  const m = await tinyLoraModel('ort');
  const layout = gradLayout(m, m.trainableNames());
  const exs = examples(7, 2);
  const moments = new Map(layout.names.map((n, i) => [n, { expAvg: Float32Array.from({ length: layout.sizes[i]! }, (_, k) => 1e-4 * Math.sin(k)), expAvgSq: new Float32Array(layout.sizes[i]!).fill(1e-9) }]));
  const projections = [new KroneckerProjection({ seed: 0, matrices: kroneckerMatrices(m, layout), outDim: 64, threads: 1 })];
  const runs: Buffer[] = [];
  for (const batchSize of [1, 3, 8]) runs.push(Buffer.from((await kroneckerFeatures(m, layout, exs, { batchSize, kind: 'adam', moments, projections })).features[0]!.buffer));
  assert.ok(runs[0]!.equals(runs[1]!), 'batch 1 vs 3');
  assert.ok(runs[0]!.equals(runs[2]!), 'batch 1 vs 8');
  const parts = [];
  for (const p of [exs.slice(0, 3), exs.slice(3)]) parts.push(Buffer.from((await kroneckerFeatures(m, layout, p, { batchSize: 4, kind: 'adam', moments, projections })).features[0]!.buffer));
  assert.ok(Buffer.concat(parts).equals(runs[0]!), 'shards of 3 + 4 rows');
  // two compute threads (the model's graphs and the factor GEMMs): the same bytes
  const m2 = await tinyLoraModel('ort', 2);
  const p2 = [new KroneckerProjection({ seed: 0, matrices: kroneckerMatrices(m2, layout), outDim: 64, threads: 2 })];
  assert.ok(Buffer.from((await kroneckerFeatures(m2, layout, exs, { batchSize: 8, kind: 'adam', moments, projections: p2 })).features[0]!.buffer).equals(runs[0]!), 'threads 1 vs 2');
  // another seed, another feature
  const other = new KroneckerProjection({ seed: 1, matrices: kroneckerMatrices(m, layout), outDim: 64, threads: 1 });
  const o = (await kroneckerFeatures(m, layout, exs, { batchSize: 8, kind: 'adam', moments, projections: [other] })).features[0]!;
  assert.ok(!Buffer.from(o.buffer).equals(runs[0]!));
});

test('JL: ‖(P_out ⊗ P_in) vec(G)‖² ≈ ‖G‖² and inner products are preserved', async () => {
  const out = 120;
  const inn = 100;
  const rows = 200;
  const rng = new Rng(6);
  const x = Float32Array.from({ length: 2 * rows * inn }, () => rng.normal());
  const d = Float32Array.from({ length: 2 * rows * out }, () => rng.normal());
  // G_e = Σ_t δ_t x_tᵀ over each example's 200 tokens (full rank), and a second example correlated with it
  for (let k = 0; k < rows * inn; k++) x[rows * inn + k] = 0.8 * x[k]! + 0.6 * x[rows * inn + k]!;
  for (let k = 0; k < rows * out; k++) d[rows * out + k] = d[k]!;
  const G = [0, 1].map((e) => {
    const g = new Float64Array(out * inn);
    for (let t = e * rows; t < (e + 1) * rows; t++) for (let a = 0; a < out; a++) for (let b = 0; b < inn; b++) g[a * inn + b] += d[t * out + a]! * x[t * inn + b]!;
    return g;
  });
  const dot = (u: Float64Array, v: Float64Array, o = 0, n = u.length): number => {
    let s = 0;
    for (let i = 0; i < n; i++) s += u[o + i]! * v[o + i]!;
    return s;
  };
  const cos = dot(G[0]!, G[1]!) / Math.sqrt(dot(G[0]!, G[0]!) * dot(G[1]!, G[1]!));
  const dim = 2000;
  const ratios: number[] = [];
  for (let seed = 0; seed < 8; seed++) {
    const p = new KroneckerProjection({ seed, matrices: [{ name: 'w', out, in: inn }], outDim: dim, backend: 'ref' });
    const y = new Float64Array(2 * dim);
    await p.accumulate(0, x, d, Int32Array.of(0, rows, 2 * rows), y);
    const r = dot(y, y, 0, dim) / dot(G[0]!, G[0]!);
    ratios.push(r);
    assert.ok(Math.abs(r - 1) < 0.15, `seed ${seed}: ‖Py‖²/‖G‖² = ${r}`);
    const y1 = y.subarray(dim);
    const c = dot(y, Float64Array.from(y1), 0, dim) / Math.sqrt(dot(y, y, 0, dim) * dot(Float64Array.from(y1), Float64Array.from(y1)));
    assert.ok(Math.abs(c - cos) < 0.06, `seed ${seed}: projected cosine ${c} vs ${cos}`);
  }
  const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
  assert.ok(Math.abs(mean - 1) < 0.06, `mean ratio ${mean}`);
});

test('JL with an identity side (a LoRA A [8, in] and B [out, 8]): norms unbiased, cosines kept', async () => {
  const rng = new Rng(11);
  const rows = 100;
  for (const [out, inn, dim] of [[8, 100, 300], [100, 8, 300]] as const) {
    const x = Float32Array.from({ length: 2 * rows * inn }, () => rng.normal());
    const d = Float32Array.from({ length: 2 * rows * out }, () => rng.normal());
    for (let k = 0; k < rows * inn; k++) x[rows * inn + k] = 0.8 * x[k]! + 0.6 * x[rows * inn + k]!;
    for (let k = 0; k < rows * out; k++) d[rows * out + k] = d[k]!;
    const G = [0, 1].map((e) => {
      const g = new Float64Array(out * inn);
      for (let t = e * rows; t < (e + 1) * rows; t++) for (let a = 0; a < out; a++) for (let b = 0; b < inn; b++) g[a * inn + b] += d[t * out + a]! * x[t * inn + b]!;
      return g;
    });
    const dot = (u: ArrayLike<number>, v: ArrayLike<number>): number => {
      let s = 0;
      for (let i = 0; i < u.length; i++) s += u[i]! * v[i]!;
      return s;
    };
    const cos = dot(G[0]!, G[1]!) / Math.sqrt(dot(G[0]!, G[0]!) * dot(G[1]!, G[1]!));
    let sum = 0;
    const seeds = 16;
    for (let seed = 0; seed < seeds; seed++) {
      const p = new KroneckerProjection({ seed, matrices: [{ name: 'w', out, in: inn }], outDim: dim, backend: 'ref' });
      assert.ok(out === 8 ? p.factors[0]!.pOut === null : p.factors[0]!.pIn === null);
      const y = new Float64Array(2 * dim);
      await p.accumulate(0, x, d, Int32Array.of(0, rows, 2 * rows), y);
      const y0 = y.subarray(0, dim);
      const y1 = y.subarray(dim);
      sum += dot(y0, y0) / dot(G[0]!, G[0]!);
      const c = dot(y0, y1) / Math.sqrt(dot(y0, y0) * dot(y1, y1));
      assert.ok(Math.abs(c - cos) < 0.1, `${out}×${inn} seed ${seed}: projected cosine ${c} vs ${cos}`);
    }
    assert.ok(Math.abs(sum / seeds - 1) < 0.06, `${out}×${inn}: mean ‖y‖²/‖G‖² = ${sum / seeds}`);
  }
});
