/**
 * The "eval-slice" job kind: a large `lmtune eval` split into contiguous slices of the dev set, one job
 * each, merged in order. Slices are whole multiples of the batch size, so every model call sees the
 * same batch as in one process and the merged record equals the single-process one exactly; metrics
 * are recomputed over all predictions by the same code (classificationResult).
 */
import { LmtuneError } from '../util/errors.ts';
import { classificationResult, evaluate, type ChoicePrediction } from '../tasks/evaluate.ts';
import { loadExamples, resolveTask, type EvalRecord, type EvalRunOptions } from '../tasks/run-eval.ts';
import type { LanguageModel } from '../models/api.ts';
import { runJobs, type QueueProgress } from './coordinator.ts';
import { CODE_VERSION, fingerprintModelDir, registerJobKind, type JobEnvelope } from './jobs.ts';

export const EVAL_SLICE = 'eval-slice';

export interface EvalSlicePayload {
  readonly task: string;
  readonly data: string;
  readonly limit: number | null;
  /** examples [start, end) of the (limited) data file */
  readonly start: number;
  readonly end: number;
  readonly scoring: 'mean' | 'sum';
  readonly calibrate: boolean;
  readonly batchSize: number;
  readonly maxLength: number | null;
}

export interface EvalSliceResult {
  readonly modelKind: LanguageModel['kind'];
  readonly predictions: ChoicePrediction[];
}

function int(raw: Record<string, unknown>, k: string, nullable = false): number | null {
  const v = raw[k];
  if (v === null && nullable) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new LmtuneError('DATA', `eval-slice payload: ${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return v;
}

export function parseEvalSlicePayload(raw: unknown): EvalSlicePayload {
  if (typeof raw !== 'object' || raw === null) throw new LmtuneError('DATA', 'eval-slice payload must be an object');
  const r = raw as Record<string, unknown>;
  if (typeof r['task'] !== 'string' || typeof r['data'] !== 'string') throw new LmtuneError('DATA', 'eval-slice payload: task and data must be strings');
  if (r['scoring'] !== 'mean' && r['scoring'] !== 'sum') throw new LmtuneError('DATA', `eval-slice payload: scoring must be mean or sum`);
  const start = int(r, 'start')!;
  const end = int(r, 'end')!;
  if (end <= start) throw new LmtuneError('DATA', `eval-slice payload: empty slice [${start}, ${end})`);
  return { task: r['task'], data: r['data'], limit: int(r, 'limit', true), start, end, scoring: r['scoring'], calibrate: r['calibrate'] === true, batchSize: int(r, 'batchSize')!, maxLength: int(r, 'maxLength', true) };
}

registerJobKind<EvalSlicePayload, EvalSliceResult>({
  name: EVAL_SLICE,
  parsePayload: parseEvalSlicePayload,
  run: async (ctx, p) => {
    const task = resolveTask(p.task);
    const all = loadExamples(task, p.data);
    const examples = (p.limit !== null ? all.slice(0, p.limit) : all).slice(p.start, p.end);
    const model = await ctx.model();
    const r = await evaluate(model, task, examples, {
      scoring: p.scoring,
      ...(p.calibrate ? { calibrate: true } : {}),
      batchSize: p.batchSize,
      ...(p.maxLength !== null ? { maxLength: p.maxLength } : {}),
      onProgress: (x) => void ctx.progress(x.done / x.total),
    });
    return { modelKind: model.kind, predictions: r.predictions.map((x) => ({ prediction: x.prediction as number, scores: [...(x.candidateScores ?? [])] })) };
  },
});

export interface DistributedEvalOptions extends Omit<EvalRunOptions, 'onProgress'> {
  readonly queueUrl: string;
  readonly modelDir: string;
  /** examples per job, rounded up to a multiple of the batch size (default 256) */
  readonly sliceSize?: number;
  readonly fingerprint?: (dir: string) => string;
  readonly codeVersion?: string;
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  /** first retry delay of a failed job (default 1000 ms, doubling) */
  readonly backoffMs?: number;
  readonly onProgress?: (p: QueueProgress) => void;
}

/** What `runEvaluation` would return, computed by the workers of the queue. */
export async function runDistributedEvaluation(o: DistributedEvalOptions): Promise<EvalRecord> {
  const task = resolveTask(o.task);
  if ((o.shots ?? 0) > 0) throw new LmtuneError('UNSUPPORTED', '--queue does not support --shots yet (demonstration draws depend on the global example index)', 'drop --queue or --shots');
  if (task.evaluate || task.kind === 'generation') throw new LmtuneError('UNSUPPORTED', `--queue supports classification and multiple-choice tasks; ${task.name} is ${task.kind}${task.evaluate ? ' with its own evaluator' : ''}`, 'drop --queue');
  const all = loadExamples(task, o.data);
  if (o.limit !== undefined && (!Number.isInteger(o.limit) || o.limit < 1)) throw new LmtuneError('CONFIG', `--limit must be a positive integer, got ${o.limit}`);
  const examples = o.limit !== undefined ? all.slice(0, o.limit) : all;
  const batchSize = Math.max(1, o.batchSize ?? 8);
  const slice = Math.ceil(Math.max(1, o.sliceSize ?? 256) / batchSize) * batchSize;
  const model = { dir: o.modelDir, fingerprint: (o.fingerprint ?? fingerprintModelDir)(o.modelDir) };
  const envelopes: JobEnvelope<EvalSlicePayload>[] = [];
  for (let s = 0; s < examples.length; s += slice) {
    envelopes.push({
      kind: EVAL_SLICE,
      model,
      codeVersion: o.codeVersion ?? CODE_VERSION,
      payload: { task: o.task, data: o.data, limit: o.limit ?? null, start: s, end: Math.min(examples.length, s + slice), scoring: o.scoring ?? 'mean', calibrate: o.calibrate ?? false, batchSize, maxLength: o.maxLength ?? null },
    });
  }
  const parts = await runJobs<EvalSliceResult>(o.queueUrl, envelopes, {
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
    ...(o.backoffMs !== undefined ? { backoffMs: o.backoffMs } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  const preds = parts.flatMap((p) => p.predictions);
  if (preds.length !== examples.length) throw new LmtuneError('RUNTIME', `eval slices returned ${preds.length} predictions for ${examples.length} examples`);
  const modelKind = parts[0]!.modelKind;
  const result = classificationResult(task, examples, preds);
  return {
    ...result,
    kind: task.kind,
    model: modelKind,
    data: o.data,
    train: null,
    shots: 0,
    seed: o.seed ?? 0,
    scoring: o.calibrate ? 'calibrated' : (o.scoring ?? 'mean'),
    provenance: task.provenance,
    labelWords: modelKind === 'masked' ? (task.masked?.labelWords ?? []) : task.labelWords,
  };
}
