/**
 * The size calculator against the spec's counts (shared/specs/tint.md §2: module sizes for the OPT-125M
 * configuration and the totals table), and the layout constraints of §2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LmtuneError } from '../util/errors.ts';
import { tintLayout } from './config.ts';
import { INNER_PRESETS, type InnerConfig } from './inner.ts';
import { tintSize } from './size.ts';

const OPT = INNER_PRESETS['opt-125m']!;
const GPT2 = INNER_PRESETS['gpt2']!;
const noReuse = { reuseForwardBlocks: false, reuseBackwardBlocks: false } as const;

/** the spec quotes 4 significant figures in M or B; compare at that precision */
function approx(actual: number, expected: number, unit: number, what: string): void {
  const digits = expected.toString().split('.')[1]?.length ?? 0;
  const tol = 0.5 * 10 ** -digits * unit;
  assert.ok(Math.abs(actual - expected * unit) <= tol, `${what}: ${actual} vs ${expected}·${unit}`);
}

test('spec §2: OPT-125M module sizes (P=256, H=3072, n_T=12)', () => {
  const s = tintSize(OPT);
  assert.deepEqual(s.layout, { d: 768, P: 256, S: 3, H: 3072, heads: 12, seqLength: 2048 });
  const M = 1e6;
  approx(s.modules.linearForward, 6.68, M, 'LinearForward');
  approx(s.modules.positionProjection, 1.77, M, 'p_attn');
  approx(s.modules.permutation, 2.36, M, 'permutation_conv');
  approx(s.modules.layerNormForward, 6.69, M, 'LayerNormForward');
  approx(s.modules.attentionForward, 10.98, M, 'AttentionForward');
  approx(s.modules.activationForward, 0.83, M, 'ActivationForward');
  approx(s.blocks.forward, 45.23, M, 'forward block F');
  approx(s.blocks.storedPerLayer, 14.16, M, 'stored per layer');
  assert.equal(s.blocks.storedPerLayer, 18 * 256 * 3072);
  approx(s.modules.linearDescentBackward, 11.7, M, 'Linear_Descent_Backward');
  approx(s.modules.layerNormDescentBackward, 11.79, M, 'LayerNormDescent_Backward');
  approx(s.modules.attentionBackwardDescent, 16.01, M, 'AttentionBackward_Descent');
  approx(s.blocks.backward, 74.77, M, 'backward block B');
  approx(s.blocks.gradient, 18.47, M, 'final-LN module G');
  approx(s.blocks.storedFinalLn, 0.79, M, 'final-LN stored');
  approx(s.totals.embeddings, 40.2, M, 'embeddings');
  approx(s.totals.stored, 170.7, M, 'all stored inner weights');
});

test('spec §2 table: totals for OPT-125M, GPT-2 and gpt2-medium', () => {
  const B = 1e9;
  approx(tintSize(OPT, { simulatedLayers: 12, steps: 1 }).params, 1.669, B, 'OPT-125M n_sim=12 k=1 reuse');
  approx(tintSize(OPT, { simulatedLayers: 12, steps: 1, ...noReuse }).params, 2.212, B, 'OPT-125M no reuse');
  approx(tintSize(OPT, { simulatedLayers: 6, steps: 2 }).params, 1.221, B, 'OPT-125M n_sim=6 k=2 reuse');
  approx(tintSize(OPT, { simulatedLayers: 3, steps: 4 }).params, 0.996, B, 'OPT-125M n_sim=3 k=4 reuse');
  approx(tintSize(GPT2, { simulatedLayers: 12, steps: 1 }).params, 1.477, B, 'GPT-2 reuse');
  approx(tintSize(GPT2, { simulatedLayers: 12, steps: 1, ...noReuse }).params, 1.953, B, 'GPT-2 no reuse');
  const medium = tintSize(INNER_PRESETS['gpt2-medium']!, noReuse);
  assert.equal(medium.layout.H, 5120);
  assert.equal(medium.layout.heads, 20);
  approx(medium.params, 6.84, B, 'gpt2-medium no reuse');
});

test('totals follow the spec formulas: reuse L·F + n_sim·B + G + stored + emb; no reuse adds k·n_sim·(B+F)', () => {
  for (const [nSim, k] of [[12, 1], [6, 2], [3, 4]] as const) {
    const r = tintSize(OPT, { simulatedLayers: nSim, steps: k });
    const { forward: F, backward: Bk, gradient: G } = r.blocks;
    assert.equal(r.params, 12 * F + nSim * Bk + G + r.totals.stored + r.totals.embeddings);
    const n = tintSize(OPT, { simulatedLayers: nSim, steps: k, ...noReuse });
    assert.equal(n.params, 12 * F + k * nSim * (Bk + F) + G + n.totals.stored + n.totals.embeddings);
  }
});

test('layout constraints (spec §2) are enforced with actionable errors', () => {
  const base: InnerConfig = { ...OPT, dModel: 24, nHeads: 3, ffnDim: 96, maxPositions: 32 };
  assert.deepEqual(
    { ...tintLayout(base, {}) },
    { d: 24, S: 3, P: 8, H: 96, linearHeads: 12, heads: 12, headDim: 8, innerHeads: 3, innerHeadDim: 8, chunks: 4, attnMem: 24, lnMem: 48, linMem: 72, actMem: 72, seqLength: 32, posDim: 40 },
  );
  const err = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof LmtuneError);
      return e.message;
    }
    assert.fail('expected an LmtuneError');
  };
  assert.match(err(() => tintLayout(base, { prefixes: 12 })), /S = d\/P ≥ 3/);
  assert.match(err(() => tintLayout(base, { prefixes: 5 })), /must divide d/);
  assert.match(err(() => tintLayout(base, { heads: 2 })), /H\/n_T = 48 does not divide d = 24/);
  assert.match(err(() => tintLayout({ ...base, nHeads: 6 }, { heads: 4 })), /n_T = 4 < the inner model's 6 heads/);
  assert.match(err(() => tintLayout(base, { heads: 5 })), /not divisible by 5 heads/);
  assert.match(err(() => tintLayout({ ...base, ffnDim: 100 }, {})), /not a multiple of d/);
});
