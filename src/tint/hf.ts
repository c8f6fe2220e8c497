/**
 * TinT on Hugging Face folders: load an inner model and its tokenizer, run the experiment on a text file;
 * resolve `--inner` for the size calculator (a preset name or a folder's config.json). This is the library
 * side of `lmtune tint run` and `lmtune tint size`.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpointTensors } from '../models/checkpoint.ts';
import { loadTokenizer } from '../models/tokenizer.ts';
import { LmtuneError } from '../util/errors.ts';
import { readJson } from '../node/fsx.ts';
import { tintLayout, tintSettings, type TintLayout, type TintSettings } from './config.ts';
import type { TintBackend } from './graph.ts';
import { runTintExperimentOn, type TintExperimentResult } from './experiment.ts';
import { INNER_PRESETS, innerConfigFromHf, innerModelFromHf, type InnerConfig, type InnerModel } from './inner.ts';
import { tintSize, type TintSize, type TintSizeOptions } from './size.ts';

export async function loadInnerModel(dir: string): Promise<InnerModel> {
  const { config, tensors } = await loadCheckpointTensors(dir);
  return innerModelFromHf(config, tensors, dir);
}

/** `--inner` for the size calculator: a preset (gpt2, opt-125m, …) or a folder with config.json. */
export function resolveInnerConfig(arg: string): { name: string; config: InnerConfig } {
  const preset = INNER_PRESETS[arg.toLowerCase()];
  if (preset) return { name: arg.toLowerCase(), config: preset };
  if (existsSync(arg) && statSync(arg).isDirectory()) {
    return { name: arg, config: innerConfigFromHf(readJson<Record<string, unknown>>(join(arg, 'config.json'), 'config.json'), arg) };
  }
  throw new LmtuneError('CONFIG', `--inner ${arg}: not a folder and not a known configuration`, `use a Hugging Face folder or one of ${Object.keys(INNER_PRESETS).join(', ')}`);
}

export function tintSizeFor(arg: string, opts: TintSizeOptions): TintSize & { inner: string } {
  const { name, config } = resolveInnerConfig(arg);
  return { inner: name, ...tintSize(config, opts) };
}

export interface TintTextRunOptions {
  readonly innerDir: string;
  readonly textFile: string;
  /** TinT settings except the ones derived here; lr is required */
  readonly settings: Partial<TintSettings> & { readonly lr: number };
  /** tokens taken from the start of the text (default min(64, the model's positions)) */
  readonly maxTokens?: number;
  readonly trainFraction?: number;
  /** who runs the simulated step: the float64 modules (default) or the engine's ref / ort executor */
  readonly backend?: TintBackend;
}

export interface TintTextRun extends TintExperimentResult {
  readonly inner: string;
  readonly backend: TintBackend;
  readonly settings: TintSettings & { readonly simulatedLayers: number };
  readonly layout: TintLayout;
}

export async function runTintOnText(opts: TintTextRunOptions): Promise<TintTextRun> {
  if (!existsSync(opts.textFile)) throw new LmtuneError('IO', `--text ${opts.textFile}: file not found`);
  const inner = await loadInnerModel(opts.innerDir);
  const tokenizer = await loadTokenizer(opts.innerDir);
  const text = readFileSync(opts.textFile, 'utf8');
  const all = tokenizer.encode(text, { addSpecialTokens: true });
  const maxTokens = opts.maxTokens ?? Math.min(64, inner.config.maxPositions);
  if (maxTokens > inner.config.maxPositions) throw new LmtuneError('CONFIG', `--max-tokens ${maxTokens} exceeds the inner model's ${inner.config.maxPositions} positions`);
  const tokens = all.slice(0, maxTokens);
  if (tokens.length < 2) throw new LmtuneError('DATA', `${opts.textFile}: the text has ${tokens.length} token(s); TinT needs at least 2`);
  const bad = tokens.find((t) => t >= inner.config.vocabSize);
  if (bad !== undefined) throw new LmtuneError('TOKENIZER', `${opts.innerDir}: the tokenizer produced id ${bad}, outside the model's vocabulary of ${inner.config.vocabSize}`);
  const settings = tintSettings(opts.settings);
  const backend = opts.backend ?? 'float64';
  const result = await runTintExperimentOn(backend, inner, tokens, { settings, ...(opts.trainFraction !== undefined ? { trainFraction: opts.trainFraction } : {}) });
  return {
    inner: opts.innerDir,
    backend,
    settings: { ...settings, simulatedLayers: settings.simulatedLayers ?? inner.config.nLayers },
    layout: tintLayout(inner.config, settings),
    ...result,
  };
}
