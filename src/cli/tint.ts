/**
 * `lmtune tint run`: the inner model's loss on a text before and after the gradient step a TinT simulates,
 * next to the same step taken explicitly (oracle) and an exact-gradient step.
 * `lmtune tint size`: the parameter count of a TinT for an inner configuration.
 * Flags are parsed and checked here; everything else lives in src/tint/.
 */
import type { Command } from 'commander';
import { TINT_BACKENDS } from '../tint/graph.ts';
import { runTintOnText, tintSizeFor, type TintTextRun } from '../tint/hf.ts';
import type { TintSize } from '../tint/size.ts';
import { num, oneOf } from './flags.ts';

interface CommonFlags {
  prefixes?: string;
  heads?: string;
  simulatedLayers?: string;
  steps?: string;
  json?: boolean;
}

interface RunFlags extends CommonFlags {
  inner: string;
  text: string;
  lr: string;
  fdScale: string;
  gates: string;
  gateScale: string;
  maxTokens?: string;
  trainFraction: string;
  backend: string;
}

interface SizeFlags extends CommonFlags {
  inner: string;
  reuseForward: boolean;
  reuseBackward: boolean;
}

const optInt = (flag: string, v: string | undefined, min: number): number | undefined => (v === undefined ? undefined : num(flag, v, { int: true, min }));

export function register(program: Command): void {
  const tint = program.command('tint').description('TinT (arXiv 2307.01189): a transformer that simulates a gradient step of an inner model in its forward pass');

  tint
    .command('run')
    .description('inner-model loss on a text before/after the simulated step, vs the explicit (oracle) and exact-gradient steps')
    .requiredOption('--inner <dir>', 'Hugging Face GPT-2 or OPT folder (pre-LN, tied head)')
    .requiredOption('--text <file>', 'text file; its first --max-tokens tokens are used')
    .requiredOption('--lr <eta>', 'inner learning rate η for the summed (not mean) loss over the training tokens')
    .option('--steps <k>', 'simulated SGD steps', '1')
    .option('--simulated-layers <n>', 'top layers back-propagated and updated (default: all)')
    .option('--fd-scale <N>', 'finite-difference scale of the layer-norm/activation backward', '1000')
    .option('--gates <mode>', 'tanh (reference) or hard (exact 0/1)', 'tanh')
    .option('--gate-scale <g>', 'gate pre-activation scale', '10')
    .option('--prefixes <P>', 'prefix rows (default d/S, smallest S ≥ 3)')
    .option('--heads <n>', 'TinT softmax heads (default S(S+1))')
    .option('--max-tokens <n>', 'tokens taken from the text (default min(64, positions))')
    .option('--train-fraction <f>', 'leading fraction of the tokens used for the step; the loss is measured on the rest', '0.5')
    .option('--backend <name>', 'float64 (TypeScript modules), ref (engine, float64 interpreter) or ort (engine, onnxruntime float32)', 'float64')
    .option('--json', 'print one JSON object')
    .action(async (f: RunFlags) => {
      const result = await runTintOnText({
        innerDir: f.inner,
        textFile: f.text,
        settings: {
          lr: num('--lr', f.lr, { min: 0 }), // a negative η is gradient ascent: garbage, not a step (issue 19's probe)
          steps: num('--steps', f.steps, { int: true, min: 0 }),
          fdScale: num('--fd-scale', f.fdScale, { min: Number.MIN_VALUE }),
          gates: oneOf('--gates', f.gates, ['tanh', 'hard'] as const),
          gateScale: num('--gate-scale', f.gateScale, { min: Number.MIN_VALUE }),
          ...defined('simulatedLayers', optInt('--simulated-layers', f.simulatedLayers, 0)),
          ...defined('prefixes', optInt('--prefixes', f.prefixes, 1)),
          ...defined('heads', optInt('--heads', f.heads, 1)),
        },
        ...defined('maxTokens', optInt('--max-tokens', f.maxTokens, 2)),
        trainFraction: num('--train-fraction', f.trainFraction, { min: Number.MIN_VALUE, max: 1 }),
        backend: oneOf('--backend', f.backend, TINT_BACKENDS),
      });
      process.stdout.write(f.json ? `${JSON.stringify(runJson(result))}\n` : runTable(result));
    });

  tint
    .command('size')
    .description('parameter count of the TinT for an inner configuration, as the reference builds it')
    .requiredOption('--inner <dir|name>', 'Hugging Face folder (config.json) or gpt2, gpt2-medium, gpt2-large, gpt2-xl, opt-125m, opt-1.3b, opt-2.7b')
    .option('--prefixes <P>', 'prefix rows (default d/S, smallest S ≥ 3)')
    .option('--heads <n>', 'TinT softmax heads (default S(S+1))')
    .option('--simulated-layers <n>', 'n_sim (default: all layers)')
    .option('--steps <k>', 'simulated steps', '1')
    .option('--no-reuse-forward', 'separate forward blocks for the re-evaluation passes')
    .option('--no-reuse-backward', 'separate backward blocks for every step')
    .option('--json', 'print one JSON object')
    .action((f: SizeFlags) => {
      const size = tintSizeFor(f.inner, {
        steps: num('--steps', f.steps, { int: true, min: 0 }),
        reuseForwardBlocks: f.reuseForward,
        reuseBackwardBlocks: f.reuseBackward,
        ...defined('simulatedLayers', optInt('--simulated-layers', f.simulatedLayers, 0)),
        ...defined('prefixes', optInt('--prefixes', f.prefixes, 1)),
        ...defined('heads', optInt('--heads', f.heads, 1)),
      });
      process.stdout.write(f.json ? `${JSON.stringify(sizeJson(size))}\n` : sizeTable(size));
    });
}

function defined<K extends string, V>(key: K, v: V | undefined): { [k in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [k in K]?: V };
}

function runJson(r: TintTextRun): Record<string, unknown> {
  const s = r.settings;
  return {
    inner: r.inner,
    backend: r.backend,
    tokens: r.tokens,
    train_tokens: r.trainTokens,
    eval_tokens: r.evalTokens,
    lr: s.lr,
    steps: s.steps,
    simulated_layers: s.simulatedLayers,
    fd_scale: s.fdScale,
    gates: s.gates,
    gate_scale: s.gateScale,
    layout: { d: r.layout.d, P: r.layout.P, S: r.layout.S, H: r.layout.H, heads: r.layout.heads },
    loss_before: r.lossBefore,
    loss_after: r.lossAfter,
    oracle_loss_after: r.oracleLossAfter,
    exact_loss_after: r.exactLossAfter,
    inner_loss_before: r.innerLossBefore,
    update_effect: r.updateEffect,
    tint_vs_oracle: r.tintVsOracle,
    approximation_gap: r.approximationGap,
    tint_vs_exact: r.tintVsExact,
    first_pass_error: r.firstPassError,
  };
}

function runTable(r: TintTextRun): string {
  const f = (x: number): string => x.toFixed(6);
  const e = (x: number): string => x.toExponential(3);
  const s = r.settings;
  return [
    `TinT on ${r.inner}: ${r.tokens} tokens (${r.trainTokens} train, loss on ${r.evalTokens}); P=${r.layout.P} S=${r.layout.S} H=${r.layout.H} heads=${r.layout.heads}`,
    `η=${s.lr} (summed loss)  steps=${s.steps}  n_sim=${s.simulatedLayers}  N=${s.fdScale}  gates=${s.gates}(${s.gateScale})  backend=${r.backend}`,
    '',
    `  loss before                  ${f(r.lossBefore)}`,
    `  loss after, TinT             ${f(r.lossAfter)}`,
    `  loss after, oracle step      ${f(r.oracleLossAfter)}`,
    `  loss after, exact SGD step   ${f(r.exactLossAfter)}`,
    '',
    `  max |Δ logits| of the step            ${e(r.updateEffect)}`,
    `  max |TinT − oracle| logits            ${e(r.tintVsOracle)}`,
    `  max |oracle − exact| logits (gap)     ${e(r.approximationGap)}`,
    `  max |first pass − inner| logits       ${e(r.firstPassError)}`,
    '',
  ].join('\n');
}

function sizeJson(s: TintSize & { inner: string }): Record<string, unknown> {
  return {
    inner: s.inner,
    params: s.params,
    layout: { d: s.layout.d, P: s.layout.P, S: s.layout.S, H: s.layout.H, heads: s.layout.heads, seq_length: s.layout.seqLength },
    settings: {
      simulated_layers: s.settings.simulatedLayers,
      steps: s.settings.steps,
      reuse_forward_blocks: s.settings.reuseForwardBlocks,
      reuse_backward_blocks: s.settings.reuseBackwardBlocks,
    },
    breakdown: {
      forward_blocks: s.totals.forward,
      backward_blocks: s.totals.backward,
      reforward_blocks: s.totals.reforward,
      final_ln_module: s.totals.gradient,
      stored_inner_weights: s.totals.stored,
      embeddings: s.totals.embeddings,
    },
    counts: { forward_blocks: s.counts.forwardBlocks, backward_blocks: s.counts.backwardBlocks, reforward_blocks: s.counts.reforwardBlocks },
    per_block: { forward: s.blocks.forward, backward: s.blocks.backward, final_ln: s.blocks.gradient, stored_per_layer: s.blocks.storedPerLayer, stored_final_ln: s.blocks.storedFinalLn },
    modules: {
      linear_forward: s.modules.linearForward,
      layer_norm_forward: s.modules.layerNormForward,
      attention_forward: s.modules.attentionForward,
      activation_forward: s.modules.activationForward,
      linear_descent_backward: s.modules.linearDescentBackward,
      layer_norm_descent_backward: s.modules.layerNormDescentBackward,
      attention_backward_descent: s.modules.attentionBackwardDescent,
      activation_backward: s.modules.activationBackward,
    },
  };
}

function sizeTable(s: TintSize & { inner: string }): string {
  const m = (x: number): string => `${(x / 1e6).toFixed(2)}M`.padStart(12);
  const st = s.settings;
  return [
    `TinT for ${s.inner}: P=${s.layout.P} S=${s.layout.S} H=${s.layout.H} heads=${s.layout.heads}; n_sim=${st.simulatedLayers} k=${st.steps} reuse forward=${st.reuseForwardBlocks} backward=${st.reuseBackwardBlocks}`,
    `  forward blocks    ${s.counts.forwardBlocks} + ${s.counts.reforwardBlocks} × ${m(s.blocks.forward).trim()}  ${m(s.totals.forward + s.totals.reforward)}`,
    `  backward blocks   ${s.counts.backwardBlocks} × ${m(s.blocks.backward).trim()}  ${m(s.totals.backward)}`,
    `  final-LN module                ${m(s.totals.gradient)}`,
    `  stored inner weights           ${m(s.totals.stored)}`,
    `  embeddings (tied head)         ${m(s.totals.embeddings)}`,
    `  total                          ${m(s.params)}  (${(s.params / 1e9).toFixed(3)}B)`,
    '',
  ].join('\n');
}
