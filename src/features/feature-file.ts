/**
 * Feature files: safetensors with `features` [N, k] float32 and `labels` [N] int64, and the settings
 * that produced them in the metadata, so `lmtune probe` can refuse to train on one model's features and
 * evaluate on another's.
 */
import { existsSync } from 'node:fs';
import { LmtuneError } from '../util/errors.ts';
import { readSafetensors, writeSafetensors } from '../node/safetensors-file.ts';
import type { Dataset } from './probe.ts';

export const FEATURE_FORMAT = 'lmtune-features/1';

export interface FeatureMeta {
  kind: string;
  /** the model folder as given, and a fingerprint of its config and weights */
  model: string;
  modelFingerprint: string;
  task: string;
  data: string;
  prompt: string;
  /** subset kind: the words, in column order */
  words: string[];
  projDim: number | null;
  projSeed: number | null;
}

/** the settings that must agree between a probe's training and eval features */
const MUST_MATCH: readonly (keyof FeatureMeta)[] = ['modelFingerprint', 'kind', 'words', 'prompt', 'projDim', 'projSeed'];

export function writeFeatureFile(path: string, features: Float32Array, labels: Int32Array, dim: number, meta: FeatureMeta): void {
  const n = labels.length;
  if (features.length !== n * dim) throw new LmtuneError('SHAPE', `${path}: ${features.length} feature values for ${n} examples of ${dim}`);
  writeSafetensors(
    path,
    [
      ['features', { shape: [n, dim], data: features }],
      ['labels', { shape: [n], data: Float32Array.from(labels), dtype: 'I64' }],
    ],
    {
      format: FEATURE_FORMAT,
      kind: meta.kind,
      model: meta.model,
      model_fingerprint: meta.modelFingerprint,
      task: meta.task,
      data: meta.data,
      prompt: meta.prompt,
      words: JSON.stringify(meta.words),
      proj_dim: meta.projDim === null ? '' : String(meta.projDim),
      proj_seed: meta.projSeed === null ? '' : String(meta.projSeed),
    },
  );
}

export function readFeatureFile(path: string, flag = 'feature file'): { data: Dataset; meta: FeatureMeta } {
  if (!existsSync(path)) throw new LmtuneError('IO', `${flag}: ${path} not found`);
  const { header, tensors } = readSafetensors(path);
  const md = header.metadata;
  if (md.format !== FEATURE_FORMAT) throw new LmtuneError('DATA', `${path} is not an lmtune feature file (metadata format '${md.format ?? ''}')`, 'write one with lmtune features');
  const f = tensors.get('features');
  const y = tensors.get('labels');
  if (!f || !y) throw new LmtuneError('DATA', `${path}: needs tensors 'features' and 'labels'`);
  if (f.shape.length !== 2 || y.shape.length !== 1 || f.shape[0] !== y.shape[0]) {
    throw new LmtuneError('SHAPE', `${path}: features [${f.shape.join(', ')}] and labels [${y.shape.join(', ')}] do not describe the same examples`);
  }
  const [n, d] = f.shape as [number, number];
  for (let i = 0; i < f.data.length; i++) if (!Number.isFinite(f.data[i])) throw new LmtuneError('NUMERIC', `${path}: feature ${i % d} of example ${Math.floor(i / d)} is ${f.data[i]}`);
  const num = (s: string | undefined): number | null => (s === undefined || s === '' ? null : Number(s));
  const meta: FeatureMeta = {
    kind: md.kind ?? '',
    model: md.model ?? '',
    modelFingerprint: md.model_fingerprint ?? '',
    task: md.task ?? '',
    data: md.data ?? '',
    prompt: md.prompt ?? '',
    words: md.words ? (JSON.parse(md.words) as string[]) : [],
    projDim: num(md.proj_dim),
    projSeed: num(md.proj_seed),
  };
  return { data: { x: Float64Array.from(f.data), y: Int32Array.from(y.data), n, d }, meta };
}

/** refuse a train/eval pair that was not extracted the same way, naming the first difference */
export function checkCompatible(train: { path: string; meta: FeatureMeta; d: number }, evalFile: { path: string; meta: FeatureMeta; d: number }): void {
  if (train.d !== evalFile.d) {
    throw new LmtuneError('SHAPE', `${train.path} has ${train.d} features per example but ${evalFile.path} has ${evalFile.d}`, 'extract both with the same model, --kind, --words and --proj-dim');
  }
  for (const k of MUST_MATCH) {
    const a = JSON.stringify(train.meta[k]);
    const b = JSON.stringify(evalFile.meta[k]);
    if (a !== b) {
      const what = k === 'modelFingerprint' ? `come from different models (${train.meta.model} vs ${evalFile.meta.model})` : `differ in ${k}: ${a} vs ${b}`;
      throw new LmtuneError('DATA', `${train.path} and ${evalFile.path} ${what}`, 'a probe must be trained and evaluated on features extracted the same way');
    }
  }
}
