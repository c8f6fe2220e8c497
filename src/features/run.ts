/**
 * `lmtune features` as a library call: a task's examples → one feature matrix of the requested kind
 * (with the task's default prompt and words unless given), projected when asked, plus the settings
 * the feature file records.
 */
import { createHash } from 'node:crypto';
import { LmtuneError } from '../util/errors.ts';
import { stableStringify } from '../node/fsx.ts';
import type { TransformerModel } from '../heads/model.ts';
import type { Example, Task } from '../tasks/index.ts';
import { RademacherProjection } from '../projection/rademacher.ts';
import { encodeTexts, extractFeatures, type FeatureKind } from './extract.ts';
import { featureDefaults } from './defaults.ts';
import { resolveWords } from './words.ts';
import type { FeatureMeta } from './feature-file.ts';

export interface FeatureSpec {
  kind: FeatureKind;
  /** null: the task's default prompt ('' when it has none) */
  prompt: string | null;
  /** subset: the words (null: the task's default subset list) */
  words: readonly string[] | null;
  /** p: project the distribution to this many dims */
  projDim: number | null;
  projSeed: number;
  batchSize?: number;
  /** drop examples with empty text instead of failing */
  skipEmpty?: boolean;
}

export interface FeatureMatrix {
  features: Float32Array;
  labels: Int32Array;
  dim: number;
  prompt: string;
  words: string[];
  /** examples whose text was cut to fit the context */
  truncated: number;
  skipped: number;
}

/** A content fingerprint of a model: config, every tensor's name and shape, and a strided sample of values. */
export function modelFingerprint(model: TransformerModel): string {
  const h = createHash('sha256');
  h.update(stableStringify(model.cfg.raw));
  for (const name of [...model.weights.names()].sort()) {
    const t = model.weights.get(name);
    h.update(`${name}:${t.shape.join('x')};`);
    const stride = Math.max(1, Math.floor(t.data.length / 4096));
    const sample = new Float32Array(Math.ceil(t.data.length / stride));
    for (let i = 0, j = 0; i < t.data.length; i += stride, j++) sample[j] = t.data[i]!;
    h.update(new Uint8Array(sample.buffer));
  }
  for (const name of model.adapters?.names() ?? []) h.update(`adapter:${name}`);
  return h.digest('hex').slice(0, 16);
}

/** the text a task's example contributes (single-sentence tasks; the fields joined otherwise) */
export function exampleText(task: Task, ex: Example): string {
  const f = ex.fields;
  if (f.sentence !== undefined && Object.keys(f).length === 1) return f.sentence;
  return Object.values(f).join(' ');
}

export function classLabel(task: Task, ex: Example, file: string): number {
  if (task.kind !== 'classification' || ex.label < 0) throw new LmtuneError('DATA', `${file}: task ${task.name} is ${task.kind}; features and probes need a classification task`);
  return ex.label;
}

export async function featureMatrix(model: TransformerModel, task: Task, examples: readonly Example[], spec: FeatureSpec, onProgress?: (done: number, total: number) => void): Promise<FeatureMatrix> {
  const defaults = featureDefaults(task.name);
  const prompt = spec.prompt ?? defaults?.prompt ?? '';
  let kept = [...examples];
  if (spec.skipEmpty) kept = kept.filter((e) => exampleText(task, e).trim() !== '');
  const texts = kept.map((e) => exampleText(task, e));
  const labels = Int32Array.from(kept, (e) => classLabel(task, e, e.id));
  let words: string[] = [];
  let wordIds: number[] = [];
  if (spec.kind === 'subset') {
    const list = spec.words ?? defaults?.subset;
    if (!list) throw new LmtuneError('CONFIG', `--kind subset needs --words: task ${task.name} has no default word list`);
    const r = resolveWords(model.tokenizer!, list);
    words = r.words;
    wordIds = r.ids;
  }
  const kinds = spec.kind === 'subset' ? [] : [spec.kind];
  const enc = encodeTexts(model, texts, prompt, kept.map((e) => e.id));
  if (spec.projDim !== null && spec.kind !== 'p') throw new LmtuneError('CONFIG', `--proj-dim projects the next-word distribution; it applies to --kind p, not ${spec.kind}`);
  const n = enc.sequences.length;
  const proj = spec.projDim !== null ? new RademacherProjection({ seed: spec.projSeed, inDim: model.cfg.vocabSize, outDim: spec.projDim, ...(model.threads !== undefined ? { threads: model.threads } : {}) }) : null;
  // projected distributions go chunk by chunk, so N × V floats never sit in memory at once
  const chunk = proj ? 256 : n;
  let features = new Float32Array(0);
  let dim = 0;
  for (let s = 0; s < n; s += chunk) {
    const ex = await extractFeatures(model, {
      sequences: enc.sequences.slice(s, s + chunk),
      kinds,
      ...(spec.kind === 'subset' ? { wordLists: { subset: wordIds } } : {}),
      ...(spec.batchSize ? { batchSize: spec.batchSize } : {}),
      ...(onProgress ? { onProgress: (done: number) => onProgress(s + done, n) } : {}),
    });
    let part = spec.kind === 'subset' ? ex.byWords.subset! : ex.byKind[spec.kind]!;
    dim = spec.kind === 'subset' ? wordIds.length : spec.kind === 'p' ? ex.vocabSize : ex.hiddenDim;
    if (proj) {
      part = await proj.project(part, ex.n);
      dim = proj.outDim;
    }
    if (s === 0) features = new Float32Array(n * dim);
    features.set(part, s * dim);
  }
  return { features, labels, dim, prompt, words, truncated: enc.truncated, skipped: examples.length - kept.length };
}

export function featureMeta(model: TransformerModel, modelDir: string, task: Task, dataFile: string, spec: FeatureSpec, m: FeatureMatrix): FeatureMeta {
  return {
    kind: spec.kind,
    model: modelDir,
    modelFingerprint: modelFingerprint(model),
    task: task.name,
    data: dataFile,
    prompt: m.prompt,
    words: m.words,
    projDim: spec.projDim,
    projSeed: spec.projDim === null ? null : spec.projSeed,
  };
}
