/**
 * `lmtune probe compare`: the paper's table for one model and task. Probes on f(s), Φᵀp_f(s), the subset
 * logits and the class-word logits, each without and with the task's prompt, next to a bag-of-words
 * logistic regression, all cross-validated on the same training examples and scored on the same eval
 * examples. One forward pass per prompt setting gives every feature kind at once.
 */
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import type { TransformerModel } from '../heads/model.ts';
import type { Example, Task } from '../tasks/index.ts';
import { encodeTexts, extractFeatures } from './extract.ts';
import { featureDefaults } from './defaults.ts';
import { resolveWords, type ResolvedWords } from './words.ts';
import { classLabel, exampleText } from './run.ts';
import { defaultCs, PROBE_SOLVER, repeatedSplits, trainAndEvaluate } from './cv.ts';
import { bowFeatures, bowVocabulary } from './bow.ts';
import type { Dataset } from './probe.ts';

export interface CompareOptions {
  folds: number;
  Cs: readonly number[] | null;
  standardize: boolean;
  /** the prompt (null: the task's default) */
  prompt: string | null;
  batchSize?: number;
  /** L-BFGS iterations per fit (default: the reference's 200) */
  maxIter?: number;
  /** the MPQA/CR protocol: no eval set, the mean over random splits of the training examples */
  splits?: { count: number; testFraction: number; seed: number } | null;
}

export interface CompareRow {
  features: string;
  prompt: boolean;
  dim: number;
  accuracy: number | null;
  /** repeated splits: the std over splits, and C is the median of the chosen Cs */
  std?: number;
  C: number | null;
  note: string;
}

export interface CompareResult {
  task: string;
  prompt: string;
  trainN: number;
  evalN: number;
  /** repeated splits instead of an eval set */
  splits: { count: number; testFraction: number; seed: number } | null;
  Cs: number[];
  folds: number;
  standardize: boolean;
  subsetWords: ResolvedWords;
  classWords: ResolvedWords;
  /** examples whose text was cut to the model's context, over both prompt settings */
  truncated: number;
  rows: CompareRow[];
}

export interface CompareProgress {
  stage: string;
  done: number;
  total: number;
}

/** a seeded random subset of at most n examples (file order kept) */
export function sampleExamples(examples: readonly Example[], n: number | null, seed: number, stream: string): Example[] {
  if (n === null || n >= examples.length) return [...examples];
  const keep = new Rng(seed).fork(stream).permutation(examples.length).slice(0, n).sort((a, b) => a - b);
  return keep.map((i) => examples[i]!);
}

/** split one file's examples into train / eval by a seeded permutation */
export function splitExamples(examples: readonly Example[], evalFraction: number, seed: number): { train: Example[]; eval: Example[] } {
  if (!(evalFraction > 0 && evalFraction < 1)) throw new LmtuneError('CONFIG', `--eval-fraction must be in (0, 1), got ${evalFraction}`);
  const perm = new Rng(seed).fork('compare-split').permutation(examples.length);
  const nEval = Math.max(1, Math.round(examples.length * evalFraction));
  const evalIdx = new Set(perm.slice(0, nEval));
  return { train: examples.filter((_, i) => !evalIdx.has(i)), eval: examples.filter((_, i) => evalIdx.has(i)) };
}

function dataset(x: Float32Array | Float64Array, y: Int32Array, d: number): Dataset {
  return { x: Float64Array.from(x), y, n: y.length, d };
}

export async function compareProbes(model: TransformerModel, task: Task, train: readonly Example[], evalSet: readonly Example[], opts: CompareOptions, onProgress?: (p: CompareProgress) => void): Promise<CompareResult> {
  const defaults = featureDefaults(task.name);
  const prompt = opts.prompt ?? defaults?.prompt ?? '';
  if (!prompt) throw new LmtuneError('CONFIG', `task ${task.name} has no default prompt; pass --prompt`, 'e.g. --prompt " This movie is "');
  const tok = model.tokenizer;
  if (!tok) throw new LmtuneError('TOKENIZER', `${model.dir ?? 'model'}: no tokenizer files in the folder`);
  const subsetWords = resolveWords(tok, defaults?.subset ?? [], { dropMultiToken: true, what: `${task.name} subset words` });
  let classWords = resolveWords(tok, defaults?.classWords ?? task.labelWords, { dropMultiToken: true, what: `${task.name} class words` });
  let classFallback = false;
  if (classWords.ids.length === 0 && defaults) {
    // a small vocabulary may have none of the reference's class words as one token (':)' is two in
    // the embedded model's): the task's verbalizer words stand in, and the table says so
    const alt = resolveWords(tok, task.labelWords, { dropMultiToken: true, what: `${task.name} label words` });
    if (alt.ids.length) {
      classWords = { ...alt, dropped: [...classWords.dropped, ...alt.dropped] };
      classFallback = true;
    }
  }
  const texts = { train: train.map((e) => exampleText(task, e)), eval: evalSet.map((e) => exampleText(task, e)) };
  const y = { train: Int32Array.from(train, (e) => classLabel(task, e, e.id)), eval: Int32Array.from(evalSet, (e) => classLabel(task, e, e.id)) };
  const Cs = opts.Cs ? [...opts.Cs] : defaultCs(train.length);
  const cv = { Cs, folds: opts.folds, standardize: opts.standardize, solver: { ...PROBE_SOLVER, ...(opts.maxIter !== undefined ? { maxIter: opts.maxIter } : {}) } };
  const splits = opts.splits ?? null;
  if (splits && evalSet.length) throw new LmtuneError('CONFIG', 'repeated random splits use the training examples only; drop --eval or --splits');
  if (!splits && !evalSet.length) throw new LmtuneError('DATA', 'no eval examples');
  // an eval set, or the mean over random splits of the training examples (bag-of-words vocabulary: all of them)
  const score = (tr: Dataset, ev: Dataset): Pick<CompareRow, 'accuracy' | 'C' | 'std'> => {
    if (!splits) {
      const r = trainAndEvaluate(tr, ev, cv);
      return { accuracy: r.value, C: r.C };
    }
    const r = repeatedSplits(tr, { ...cv, splits: splits.count, testFraction: splits.testFraction, seed: splits.seed });
    const sorted = [...r.Cs].sort((a, b) => a - b);
    return { accuracy: r.value, std: r.std, C: sorted[Math.floor(sorted.length / 2)]! };
  };
  const rows: CompareRow[] = [];
  const wordLists: Record<string, number[]> = {};
  if (subsetWords.ids.length) wordLists.subset = subsetWords.ids;
  if (classWords.ids.length) wordLists.class = classWords.ids;
  let truncated = 0;
  const totalFits = 2 * 4 + 1;
  let fits = 0;
  const fitted = () => onProgress?.({ stage: 'probes', done: ++fits, total: totalFits });
  for (const withPrompt of [false, true]) {
    const p = withPrompt ? prompt : '';
    const extract = (part: 'train' | 'eval') => {
      const enc = encodeTexts(model, texts[part], p, (part === 'train' ? train : evalSet).map((e) => e.id));
      truncated += enc.truncated;
      return extractFeatures(model, {
        sequences: enc.sequences,
        kinds: ['f', 'phi-p'],
        wordLists,
        ...(opts.batchSize ? { batchSize: opts.batchSize } : {}),
        onProgress: (done, total) => onProgress?.({ stage: `features (${part}${withPrompt ? ', prompt' : ''})`, done, total }),
      });
    };
    const feats = { train: await extract('train'), eval: evalSet.length ? await extract('eval') : null };
    const E = feats.train.hiddenDim;
    const kinds: { name: string; get: (f: typeof feats.train) => Float32Array | undefined; d: number; words?: ResolvedWords }[] = [
      { name: 'f(s)', get: (f) => f.byKind.f, d: E },
      { name: 'Φp_f(s)', get: (f) => f.byKind['phi-p'], d: E },
      { name: 'subset logits', get: (f) => f.byWords.subset, d: subsetWords.ids.length, words: subsetWords },
      { name: classFallback ? 'label-word logits' : 'class-word logits', get: (f) => f.byWords.class, d: classWords.ids.length, words: classWords },
    ];
    for (const k of kinds) {
      const xtr = k.get(feats.train);
      const xev = feats.eval ? k.get(feats.eval) : new Float32Array(0);
      const note = k.words ? `${k.words.words.join(' ')}${k.words.dropped.length ? ` (not one token, dropped: ${k.words.dropped.map((d) => d.word).join(' ')})` : ''}` : '';
      if (!xtr || !xev || k.d === 0) {
        rows.push({ features: k.name, prompt: withPrompt, dim: 0, accuracy: null, C: null, note: `no word is a single token (${k.words?.dropped.map((d) => d.word).join(' ') ?? ''})` });
      } else {
        rows.push({ features: k.name, prompt: withPrompt, dim: k.d, ...score(dataset(xtr, y.train, k.d), dataset(xev, y.eval, k.d)), note });
      }
      fitted();
    }
  }
  const vocab = bowVocabulary(texts.train);
  if (vocab.words.length === 0) {
    rows.push({ features: 'bag of words', prompt: false, dim: 0, accuracy: null, C: null, note: 'no word occurs twice in the training texts' });
  } else {
    const d = vocab.words.length;
    const r = score(dataset(bowFeatures(texts.train, vocab), y.train, d), dataset(bowFeatures(texts.eval, vocab), y.eval, d));
    rows.push({ features: 'bag of words', prompt: false, dim: d, ...r, note: 'word presence, words seen twice in training' });
  }
  fitted();
  return { task: task.name, prompt, trainN: train.length, evalN: evalSet.length, splits: opts.splits ?? null, Cs, folds: opts.folds, standardize: opts.standardize, subsetWords, classWords, truncated, rows };
}

/** the table `lmtune probe compare` prints */
export function renderCompareTable(r: CompareResult): string {
  const head = ['features', 'prompt', 'dim', 'accuracy', 'C'];
  const body = r.rows.map((row) => [row.features, row.prompt ? 'yes' : 'no', String(row.dim), row.accuracy === null ? '—' : `${row.accuracy.toFixed(4)}${row.std !== undefined ? ` ± ${row.std.toFixed(4)}` : ''}`, row.C === null ? '—' : String(row.C)]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
  const data = r.splits ? `${r.trainN} examples, mean ± std over ${r.splits.count} random splits holding out ${r.splits.testFraction} (C: the median chosen)` : `${r.trainN} training / ${r.evalN} eval examples`;
  const out = [`${r.task}: ${data}, prompt ${JSON.stringify(r.prompt)}, ${r.folds}-fold CV over C ∈ {${r.Cs.join(', ')}}${r.standardize ? ', standardized' : ''}`, line(head), ...body.map(line)];
  for (const row of r.rows) if (row.accuracy === null) out.push(`  ${row.features}${row.prompt ? ' (prompt)' : ''}: ${row.note}`);
  if (r.subsetWords.dropped.length) out.push(`subset words not one token (dropped): ${r.subsetWords.dropped.map((d) => d.word).join(' ')}`);
  if (r.classWords.dropped.length) out.push(`class words not one token (dropped): ${r.classWords.dropped.map((d) => d.word).join(' ')}`);
  if (r.truncated) out.push(`${r.truncated} texts cut to the model's context`);
  return out.join('\n') + '\n';
}
