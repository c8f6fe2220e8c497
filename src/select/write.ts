/**
 * LESS's last step (reference: write_selected_data.py): rank the pool by score and write
 *   scores.csv      `file,index,score` for every scored row, best first
 *   selected.jsonl  the top k rows, each line exactly as in the pool file, best first
 * Ranking is (score desc, pool index asc): the reference's unstable torch.sort leaves ties in device
 * order. k = floor(percentage · N) of the N scored rows (the reference's int(p·N)), or --max-samples.
 * Unlike the reference, scores.csv is rewritten on every run (its content is a function of the scores).
 */
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite } from '../node/fsx.ts';
import { rankAll, TopK } from './topk.ts';
import type { ChatFile } from './pool.ts';

export type Amount = { percentage: number } | { maxSamples: number };

export function selectionCount(scored: number, amount: Amount): number {
  if ('percentage' in amount) {
    const p = amount.percentage;
    if (!(p > 0 && p <= 1)) throw new LmtuneError('CONFIG', `--percentage must be in (0, 1], got ${p}`);
    // a tiny epsilon so 0.29·100 counts 29 rows, not the 28 that floating point gives
    return Math.min(scored, Math.floor(p * scored + 1e-9));
  }
  const k = amount.maxSamples;
  if (!(Number.isInteger(k) && k >= 1)) throw new LmtuneError('CONFIG', `--max-samples must be an integer >= 1, got ${k}`);
  return Math.min(scored, k);
}

function csvField(s: string): string {
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** the k best scored indices (NaN scores are unscored rows) in ranking order, with bounded memory */
export function topIndices(scores: Float64Array, k: number): number[] {
  const heap = new TopK(k);
  for (let i = 0; i < scores.length; i++) if (!Number.isNaN(scores[i]!)) heap.push(scores[i]!, i);
  return heap.sorted().map((e) => e.index);
}

export interface WrittenSelection {
  scored: number;
  selected: number;
  indices: number[];
}

/**
 * Writes OUT/scores.csv and OUT/selected.jsonl atomically. `scores[index]` is NaN for unscored rows.
 * scores.csv names each row's own pool file and its index in that file (pools of several files).
 */
export function writeSelection(out: string, pool: ChatFile, scores: Float64Array, amount: Amount): WrittenSelection {
  if (scores.length !== pool.count) throw new LmtuneError('SHAPE', `${scores.length} scores for ${pool.count} pool rows`);
  const rawOf = new Map<number, string>();
  for (const r of pool.rows) rawOf.set(r.index, r.chat.raw);
  let scored = 0;
  for (const s of scores) if (!Number.isNaN(s)) scored++;
  const k = selectionCount(scored, amount);
  const ranked = rankAll(scores);
  const labels = pool.parts.map((p) => csvField(p.path));
  const csv: string[] = ['file,index,score'];
  let part = 0;
  for (const i of ranked) {
    // the part holding i: parts are few, and ranked order jumps between them
    if (!(pool.parts[part]!.offset <= i && i < pool.parts[part]!.offset + pool.parts[part]!.count)) part = pool.parts.findIndex((p) => p.offset <= i && i < p.offset + p.count);
    csv.push(`${labels[part]},${i - pool.parts[part]!.offset},${scores[i]!.toFixed(8)}`);
  }
  atomicWrite(join(out, 'scores.csv'), csv.join('\n') + '\n');
  const indices = topIndices(scores, k);
  const lines = indices.map((i) => {
    const raw = rawOf.get(i);
    if (raw === undefined) throw new LmtuneError('DATA', `pool row ${i} was scored but is not in ${pool.path}`);
    return raw + '\n';
  });
  atomicWrite(join(out, 'selected.jsonl'), lines.join(''));
  return { scored, selected: k, indices };
}
