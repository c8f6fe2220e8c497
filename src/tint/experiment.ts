/**
 * One TinT experiment on a token sequence (what `lmtune tint run` reports): the inner model's loss before
 * and after the step TinT simulates, next to the same step taken explicitly by the oracle and an exact-
 * gradient SGD step, plus the logit-level differences between them.
 *
 * Setup as in the reference's perplexity evaluation: the first `trainFraction` of the tokens is the training
 * segment (TinT's bidirection mask); the loss is the mean next-token CE on the predictions of the remaining
 * tokens (all tokens if that segment is empty).
 */
import { LmtuneError } from '../util/errors.ts';
import type { TintSettings } from './config.ts';
import type { InnerModel, InnerSequence } from './inner.ts';
import { maxAbsDiff, type Mat } from './matrix.ts';
import { runTintOnEngine, type TintBackend } from './graph.ts';
import { exactStep, innerLogits, intendedStep, nextTokenLosses } from './oracle.ts';
import { buildTint, runTint, type Tint, type TintRun } from './tint.ts';

export interface TintExperimentOptions {
  readonly settings: TintSettings;
  /** fraction of the tokens that form the training segment (default 0.5) */
  readonly trainFraction?: number;
}

export interface TintExperimentResult {
  readonly tokens: number;
  readonly trainTokens: number;
  /** predictions the loss is measured on */
  readonly evalTokens: number;
  /** mean CE of the inner model on the eval predictions, from TinT's first-pass logits */
  readonly lossBefore: number;
  /** … from TinT's logits after the simulated step(s) */
  readonly lossAfter: number;
  /** … after the same step taken explicitly by the oracle (intended gradient, same N) */
  readonly oracleLossAfter: number;
  /** … after k exact-gradient SGD steps with the same η on the same parameters */
  readonly exactLossAfter: number;
  /** … of the explicit inner model (must equal lossBefore) */
  readonly innerLossBefore: number;
  /** max |Δ logits| of the oracle's step: the size of the update's effect */
  readonly updateEffect: number;
  /** max |logits_TinT − logits_oracle| after the step (TinT's own error: gates, float rounding) */
  readonly tintVsOracle: number;
  /** max |logits_oracle − logits_exact| after the step: the gap the approximations cost */
  readonly approximationGap: number;
  /** max |logits_TinT − logits_exact| after the step */
  readonly tintVsExact: number;
  /** max |first-pass TinT logits − inner logits| */
  readonly firstPassError: number;
}

export function trainPrefixMask(T: number, trainFraction: number): number[] {
  if (!(trainFraction > 0 && trainFraction <= 1)) throw new LmtuneError('CONFIG', `train fraction must be in (0, 1], got ${trainFraction}`);
  const train = Math.max(1, Math.floor(trainFraction * T));
  return Array.from({ length: T }, (_, t) => (t < train ? 1 : 0));
}

/** Mean next-token CE over the predictions of tokens with trainMask 0 (all predictions if there are none). */
export function evalLoss(logits: Mat, seq: InnerSequence): { loss: number; count: number } {
  const losses = nextTokenLosses(logits, seq.tokens);
  const idx = [...losses.keys()].filter((t) => seq.trainMask[t + 1] === 0);
  const use = idx.length > 0 ? idx : [...losses.keys()];
  return { loss: use.reduce((s, t) => s + losses[t]!, 0) / use.length, count: use.length };
}

/** The experiment with the float64 TinT (`runTint`). */
export function runTintExperiment(inner: InnerModel, tokens: readonly number[], opts: TintExperimentOptions): TintExperimentResult {
  const seq = experimentSequence(tokens, opts);
  const tint = buildTint(inner, opts.settings);
  return reportTintRun(inner, seq, tint, runTint(tint, seq));
}

/** The experiment with the simulated step run by `backend` (float64 modules, or the engine's ref / ort executor). */
export async function runTintExperimentOn(
  backend: TintBackend,
  inner: InnerModel,
  tokens: readonly number[],
  opts: TintExperimentOptions & { readonly threads?: number },
): Promise<TintExperimentResult> {
  if (backend === 'float64') return runTintExperiment(inner, tokens, opts);
  const seq = experimentSequence(tokens, opts);
  const tint = buildTint(inner, opts.settings);
  const run = await runTintOnEngine(tint, seq, { backend, ...(opts.threads !== undefined ? { threads: opts.threads } : {}) });
  return reportTintRun(inner, seq, tint, run);
}

function experimentSequence(tokens: readonly number[], opts: TintExperimentOptions): InnerSequence {
  return { tokens, trainMask: trainPrefixMask(tokens.length, opts.trainFraction ?? 0.5) };
}

/** Losses and logit differences of a TinT run against the oracle's intended step and exact SGD. */
function reportTintRun(inner: InnerModel, seq: InnerSequence, tint: Tint, run: TintRun): TintExperimentResult {
  const s = tint.settings;
  const tokens = seq.tokens;
  const nSim = s.simulatedLayers;
  const base = innerLogits(inner, seq);
  const oracle = innerLogits(
    intendedStep(inner, seq, {
      lr: s.lr,
      simulatedLayers: nSim,
      steps: s.steps,
      derivatives: { kind: 'finite-difference', scale: s.fdScale },
      backpropThroughAttention: s.backpropThroughAttention,
    }),
    seq,
  );
  const exact = innerLogits(exactStep(inner, seq, { lr: s.lr, simulatedLayers: nSim, steps: s.steps }), seq);
  for (const [name, m] of [['TinT', run.logitsAfter], ['oracle', oracle], ['exact', exact]] as const) {
    if (m.data.some((x) => !Number.isFinite(x))) {
      throw new LmtuneError('NUMERIC', `${name} logits after the step are not finite (lr ${s.lr})`, 'lower --lr: TinT descends the summed loss, so η scales with the number of training tokens');
    }
  }
  const before = evalLoss(run.logitsBefore, seq);
  return {
    tokens: tokens.length,
    trainTokens: seq.trainMask.reduce((a, b) => a + b, 0),
    evalTokens: before.count,
    lossBefore: before.loss,
    lossAfter: evalLoss(run.logitsAfter, seq).loss,
    oracleLossAfter: evalLoss(oracle, seq).loss,
    exactLossAfter: evalLoss(exact, seq).loss,
    innerLossBefore: evalLoss(base, seq).loss,
    updateEffect: maxAbsDiff(oracle, base),
    tintVsOracle: maxAbsDiff(run.logitsAfter, oracle),
    approximationGap: maxAbsDiff(oracle, exact),
    tintVsExact: maxAbsDiff(run.logitsAfter, exact),
    firstPassError: maxAbsDiff(run.logitsBefore, base),
  };
}
