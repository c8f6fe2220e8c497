/**
 * Issue 19 item 4, the two invariances the batch-size test does not vary: the padding side and the
 * shape bucket. A training request is repacked with its rows padded on the left instead of the right, and
 * into a longer bucket (and a taller batch with all-padding rows); the loss and its gradient must not move
 * beyond float32 rounding, since padding is masked out of attention and out of the objective. The
 * reference is the request as `buildLossRequest` builds it; the variants share its tokens and labels only.
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadTransformer, type TransformerModel } from '../heads/model.ts';
import type { LossRequest } from '../heads/objective.ts';
import { packBatch, type PackedBatch } from '../models/batch.ts';
import { loadExamples, resolveTask } from '../tasks/index.ts';
import { buildLossRequest, defaultObjective, encodeExample } from './batches.ts';

const MODEL = new URL('../../assets/tiny-english-lm', import.meta.url).pathname;
const SST2 = new URL('../../assets/demo/sst2-dev.jsonl', import.meta.url).pathname;

/** the same rows as `req`, packed with `side` into `seq` × `rows`; target positions follow their tokens */
function repack(req: LossRequest, side: 'left' | 'right', seq: number, rows: number, padId: number): LossRequest {
  const { batch } = req;
  const seqs: number[][] = [];
  for (let b = 0; b < batch.batch; b++) {
    const row: number[] = [];
    for (let i = 0; i < batch.len[b]!; i++) row.push(Number(batch.ids[b * batch.seq + batch.start[b]! + i]!));
    seqs.push(row);
  }
  // rows that were all padding in the reference stay empty: they carry no targets
  const real = seqs.map((s, b) => (batch.len[b]! > 0 ? s : null)).filter((s): s is number[] => s !== null);
  const packed: PackedBatch = packBatch(real, { side, padId, seq, batch: rows });
  const index = Int32Array.from(req.targets.index, (flat) => {
    const b = Math.floor(flat / batch.seq);
    const t = (flat % batch.seq) - batch.start[b]!;
    // padded target slots (beyond the real ones) point at row 0, position 0 in both layouts
    if (t < 0 || b >= real.length) return 0;
    return b * packed.seq + packed.start[b]! + t;
  });
  return { batch: packed, targets: { index, label: req.targets.label }, objective: req.objective };
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(a[i]!));
  }
  return num / Math.max(den, 1e-30);
}

async function check(model: TransformerModel, req: LossRequest, wrt: readonly string[]): Promise<void> {
  const ref = await model.loss(req, wrt);
  const T = req.batch.seq;
  const B = req.batch.batch;
  const variants: [string, LossRequest][] = [
    ['left padding', repack(req, 'left', T, B, model.padId())],
    ['a longer bucket', repack(req, 'right', T + 24, B, model.padId())],
    ['left padding in a longer, taller batch', repack(req, 'left', T + 40, B + 3, model.padId())],
  ];
  for (const [what, v] of variants) {
    const r = await model.loss(v, wrt);
    assert.ok(Math.abs(r.loss - ref.loss) <= 2e-6 * Math.max(1, Math.abs(ref.loss)), `${what}: loss ${r.loss} vs ${ref.loss}`);
    for (const n of wrt) {
      const d = relDiff(ref.grads!.get(n)!, r.grads!.get(n)!);
      assert.ok(d < 1e-4, `${what}: gradient of ${n} differs by ${d} (relative to its largest entry)`);
    }
  }
}

test('the classification loss and its gradient w.r.t. every weight do not depend on the padding side or the bucket', async () => {
  const model = await loadTransformer(MODEL, { threads: 1 });
  const task = resolveTask('sst2');
  const examples = loadExamples(task, SST2).slice(0, 6);
  const encs = examples.map((e) => encodeExample(task, e, model));
  const req = buildLossRequest(encs, defaultObjective(task, model), model, 8);
  // the request really has uneven rows (otherwise padding would not be exercised)
  assert.ok(new Set(Array.from(req.batch.len).filter((l) => l > 0)).size > 1);
  await check(model, req, model.allParamNames());
});

test('the answer-token (lm) loss does not depend on the padding side or the bucket', async () => {
  const model = await loadTransformer(MODEL, { threads: 1 });
  const task = resolveTask('sst2');
  const examples = loadExamples(task, SST2).slice(6, 11);
  const encs = examples.map((e) => encodeExample(task, e, model));
  const req = buildLossRequest(encs, 'lm', model, 5);
  await check(model, req, []);
});
