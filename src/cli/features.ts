/**
 * `lmtune features --model DIR --task T --data FILE --kind f|phi-p|subset|p [--prompt TEXT] [--words a,b]
 * [--proj-dim k] --out FILE.safetensors`: the features of Saunshi et al. (ICLR'21) for every example of a
 * classification file, written with their labels and settings for `lmtune probe`. The work is
 * `featureMatrix` (src/features/run.ts).
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { readSafetensorsHeader } from '../node/safetensors-file.ts';
import { loadTransformer } from '../heads/model.ts';
import { loadExamples, resolveTask } from '../tasks/index.ts';
import { FEATURE_KINDS, type FeatureKind } from '../features/extract.ts';
import { FEATURE_FORMAT, writeFeatureFile } from '../features/feature-file.ts';
import { featureMatrix, featureMeta, type FeatureSpec } from '../features/run.ts';
import { parseWordList } from '../features/words.ts';
import { fmtEta, num, oneOf, ProgressLine } from './flags.ts';

interface FeatureFlags {
  model: string;
  task: string;
  data: string;
  kind: string;
  prompt?: string;
  words?: string;
  projDim?: string;
  projSeed: string;
  limit?: string;
  batchSize: string;
  threads: string;
  skipEmpty?: boolean;
  out: string;
  progress: boolean;
}

/** refuse to replace a file lmtune did not write as a feature file */
export function checkOutput(path: string, flag = '--out'): void {
  if (!existsSync(path)) return;
  let ours = false;
  try {
    ours = readSafetensorsHeader(path).metadata.format === FEATURE_FORMAT;
  } catch {
    ours = false;
  }
  if (!ours) throw new LmtuneError('IO', `${flag}: ${path} exists and is not an lmtune feature file; not overwriting it`, 'choose another path or remove the file');
}

export function featureSpec(flags: Pick<FeatureFlags, 'kind' | 'prompt' | 'words' | 'projDim' | 'projSeed' | 'batchSize' | 'skipEmpty'>): FeatureSpec {
  const kind = oneOf<FeatureKind>('--kind', flags.kind, FEATURE_KINDS);
  if (flags.words !== undefined && kind !== 'subset') throw new LmtuneError('CONFIG', `--words applies to --kind subset, not ${kind}`);
  return {
    kind,
    prompt: flags.prompt ?? null,
    words: flags.words !== undefined ? parseWordList('--words', flags.words) : null,
    projDim: flags.projDim !== undefined ? num('--proj-dim', flags.projDim, { int: true, min: 1 }) : null,
    projSeed: num('--proj-seed', flags.projSeed, { int: true, min: 0 }),
    batchSize: num('--batch-size', flags.batchSize, { int: true, min: 1 }),
    ...(flags.skipEmpty ? { skipEmpty: true } : {}),
  };
}

export function register(program: Command): void {
  program
    .command('features')
    .description('extract probe features from a causal LM: f (final hidden state), phi-p (conditional mean), subset (word logits) or p (next-word distribution)')
    .requiredOption('--model <dir>', 'causal LM checkpoint folder')
    .requiredOption('--task <name>', 'classification task (sst2, agnews, cr, mpqa, ...) or a task file')
    .requiredOption('--data <file>', 'the examples (any format the task reads)')
    .requiredOption('--kind <kind>', `one of ${FEATURE_KINDS.join(', ')}`)
    .requiredOption('--out <file>', 'feature file to write (.safetensors)')
    .option('--prompt <text>', 'appended to every text (default: the task\'s, e.g. " This movie is "; "" for none)')
    .option('--words <list>', 'comma-separated words for --kind subset; each must be the single token of " word" (default: the task\'s list)')
    .option('--proj-dim <k>', '--kind p: randomly project the distribution to k dimensions (Rademacher, ±1/√k)')
    .option('--proj-seed <n>', 'seed of the projection', '0')
    .option('--limit <n>', 'use only the first n examples')
    .option('--skip-empty', 'drop examples with an empty text instead of failing')
    .option('--batch-size <n>', 'texts per forward pass', '16')
    .option('--threads <n>', 'compute threads', '1')
    .option('--no-progress', 'do not show progress')
    .action(async (flags: FeatureFlags) => {
      const spec = featureSpec(flags);
      checkOutput(flags.out);
      const limit = flags.limit !== undefined ? num('--limit', flags.limit, { int: true, min: 1 }) : null;
      const task = resolveTask(flags.task);
      const examples = loadExamples(task, flags.data);
      const model = await loadTransformer(flags.model, { threads: num('--threads', flags.threads, { int: true, min: 1 }) });
      const progress = new ProgressLine();
      const t0 = performance.now();
      const m = await featureMatrix(model, task, limit ? examples.slice(0, limit) : examples, spec, (done, total) => {
        if (!flags.progress) return;
        const rate = done / ((performance.now() - t0) / 1000);
        progress.update(`features ${done}/${total}  ${rate.toFixed(1)} ex/s  ETA ${fmtEta((total - done) / rate)}`, done, total);
      });
      writeFeatureFile(flags.out, m.features, m.labels, m.dim, featureMeta(model, flags.model, task, flags.data, spec, m));
      const notes = [m.truncated ? `${m.truncated} texts cut to the model's ${model.maxPositions} positions` : '', m.skipped ? `${m.skipped} empty texts skipped` : ''].filter(Boolean);
      process.stdout.write(`${m.labels.length} × ${m.dim} ${spec.kind} features${m.prompt ? ` (prompt ${JSON.stringify(m.prompt)})` : ''} → ${flags.out}${notes.length ? `; ${notes.join('; ')}` : ''}\n`);
    });
}
