/**
 * Training on chat rows (`lmtune train --task chat`): the batch loss is the mean over examples of each
 * example's mean supervised-token cross-entropy (checked against full-vocabulary log-softmax by hand);
 * with reduction 'sum' the per-example LoRA gradients equal each example's own gradient computed alone;
 * Adam-LoRA on instruct-pool rows lowers the training loss, counts truncation, and resumes bit for bit;
 * MeZO runs on the same batches.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTrainConfig, renderSummary } from '../cli/train.ts';
import { loadTransformer, type TransformerModel } from '../heads/model.ts';
import { attachPeft } from '../peft/index.ts';
import { encodeChat, parseChatJsonl, type EncodedChat } from '../tasks/chat.ts';
import { chatLossRequest } from './chat-batches.ts';
import { readRunConfig, train } from './loop.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';
import { LmtuneError } from '../util/errors.ts';

const MODEL = new URL('../../assets/tiny-english-lm', import.meta.url).pathname;
const POOL = join(SHARED_DATA, 'instruct-pool/pool.jsonl');

/** pool rows of three sources: the first `perSource` of each that fit in `fit` tokens, and `long` CR rows that do not */
function poolRows(perSource: number, fit: number, long: number, tok: NonNullable<TransformerModel['tokenizer']>): string[] {
  const { rows } = parseChatJsonl(readFileSync(POOL, 'utf8').split('\n').slice(0, 10000).join('\n'), POOL);
  const out: string[] = [];
  const taken = new Map<string, number>([['sst2', 0], ['cr', 0], ['mpqa', 0]]);
  let longTaken = 0;
  for (const r of rows) {
    const k = taken.get(r.dataset!);
    if (k === undefined || (k >= perSource && (r.dataset !== 'cr' || longTaken >= long))) continue;
    const n = encodeChat(r, tok, 100000).ids.length;
    if (n <= fit && k < perSource) {
      out.push(r.raw);
      taken.set(r.dataset!, k + 1);
    } else if (n > fit && n < fit + 12 && longTaken < long && r.dataset === 'cr') {
      out.push(r.raw);
      longTaken++;
    }
  }
  return out;
}

const base = await loadTransformer(MODEL, { threads: 1 });
const tok = base.tokenizer!;

/** −log softmax(logits)[label] in float64 */
function nll(logits: Float64Array, offset: number, V: number, label: number): number {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, logits[offset + v]!);
  let z = 0;
  for (let v = 0; v < V; v++) z += Math.exp(logits[offset + v]! - m);
  return m + Math.log(z) - logits[offset + label]!;
}

async function bruteExampleLosses(model: TransformerModel, encs: readonly EncodedChat[]): Promise<number[]> {
  const out: number[] = [];
  const V = tok.vocabSize;
  for (const e of encs) {
    const { logits } = await model.forwardAll([e.ids]); // one row: position t's logits at t·V
    let s = 0;
    let n = 0;
    for (let t = 1; t < e.ids.length; t++) {
      if (!e.supervised[t]) continue;
      s += nll(logits, (t - 1) * V, V, e.ids[t]!);
      n++;
    }
    out.push(s / n);
  }
  return out;
}

test('chat batch loss = mean over examples of per-example mean token NLL (mean), their sum (sum)', async () => {
  const text = poolRows(2, 64, 0, tok).slice(0, 5).join('\n');
  const encs = parseChatJsonl(text, 'pool').rows.map((r) => encodeChat(r, tok, 64));
  const per = await bruteExampleLosses(base, encs);
  const mean = per.reduce((a, b) => a + b) / per.length;
  const sum = per.reduce((a, b) => a + b);
  // 8 rows for 5 examples: padding rows must not count
  const rMean = await base.loss(chatLossRequest(encs, base, 8));
  const rSum = await base.loss(chatLossRequest(encs, base, 8, { reduction: 'sum' }));
  assert.ok(Math.abs(rMean.loss - mean) < 1e-4 * Math.abs(mean), `${rMean.loss} vs ${mean}`);
  assert.ok(Math.abs(rSum.loss - sum) < 1e-4 * Math.abs(sum), `${rSum.loss} vs ${sum}`);
  // examples of different lengths: a token-weighted mean would differ
  assert.ok(new Set(encs.map((e) => e.supervisedCount)).size > 1 || new Set(encs.map((e) => e.ids.length)).size > 1);
});

test('reduction sum: per-example LoRA gradients equal each example trained alone', async () => {
  const m = await loadTransformer(MODEL, { threads: 1 });
  await attachPeft(m, { kind: 'lora', rank: 2, alpha: 4, dropout: 0, targets: [] }, 7);
  // non-zero B so both LoRA factors get gradients
  for (const n of m.trainableNames()) {
    const t = m.tensor(n);
    for (let i = 0; i < t.length; i++) t[i] = 0.01 * Math.sin(i + n.length);
  }
  const names = m.trainableNames();
  const encs = parseChatJsonl(poolRows(1, 64, 0, tok).slice(0, 3).join('\n'), 'pool').rows.map((r) => encodeChat(r, tok, 64));
  const together = await m.loss(chatLossRequest(encs, m, 4, { reduction: 'sum' }), names, names);
  for (let b = 0; b < encs.length; b++) {
    const alone = await m.loss(chatLossRequest([encs[b]!], m, 1), names);
    for (const n of names) {
      const g = alone.grads!.get(n)!;
      const all = together.grads!.get(n)!;
      assert.equal(all.length, 4 * g.length, `${n}: [rows, ...] per-example layout`);
      let err = 0;
      let ref = 0;
      for (let i = 0; i < g.length; i++) {
        err = Math.max(err, Math.abs(all[b * g.length + i]! - g[i]!));
        ref = Math.max(ref, Math.abs(g[i]!));
      }
      assert.ok(ref > 0 && err <= 1e-4 * ref + 1e-7, `${n} example ${b}: max error ${err} (scale ${ref})`);
    }
  }
});

test('train --task chat: Adam-LoRA on instruct-pool rows lowers the training loss; truncation counted; resume is exact', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-chat-train-'));
  try {
    const lines = poolRows(3, 64, 2, tok);
    const data = join(tmp, 'pool-subset.jsonl');
    writeFileSync(data, lines.join('\n') + '\n');
    const flags = { model: MODEL, task: 'chat', data, numDev: '0', evalEvery: '0', optimizer: 'adam', lr: '3e-3', peft: 'lora', loraR: '4', maxSteps: '12', batchSize: '4', saveEvery: '1', seed: '5', threads: '1', maxLength: '64', truncation: 'left' };
    const cfg = buildTrainConfig(flags);
    const s = await train(cfg, join(tmp, 'run'));

    // truncation, counted independently
    const { rows } = parseChatJsonl(lines.join('\n'), data);
    const over = rows.filter((r) => encodeChat(r, tok, 100000).ids.length > 64).length;
    assert.equal(over, 2, 'fixture: two rows longer than the context');
    // on the left, a row is also cut when its prompt leaves the final reply less than its room (its
    // length rounded up to 8 tokens, chat.ts)
    const eos = tok.decode([tok.eosId!]);
    const cut = rows.filter((r) => {
      const reply = tok.encode(r.messages[r.messages.length - 1]!.content.trim() + eos + '\n').length;
      return encodeChat(r, tok, 100000).ids.length - reply + Math.ceil(reply / 8) * 8 > 64;
    }).length;
    assert.ok(cut >= over);
    assert.deepEqual(s.chat, { rows: rows.length, truncated: cut, skipped: 0, maxLength: 64 });
    assert.match(renderSummary(s), new RegExp(`chat rows +\\d+ read, ${cut} truncated to 64 tokens, 0 skipped`));

    // the exact training-set loss (mean of per-example means), before and after
    const encs = rows.map((r) => encodeChat(r, tok, 64, { truncation: 'left' }));
    const lossOf = async (m: TransformerModel) => (await bruteExampleLosses(m, encs)).reduce((a, b) => a + b) / encs.length;
    const before = await lossOf(base);
    const after = await lossOf(await loadTransformer(s.finalDir, { threads: 1 }));
    t.diagnostic(`${rows.length} rows, training loss ${before.toFixed(4)} → ${after.toFixed(4)} after ${cfg.maxSteps} Adam-LoRA steps`);
    assert.ok(after < before - 0.2, `training loss ${before} → ${after}`);

    // interrupted after step 5 (its checkpoint written), then resumed: the same final adapter bytes
    const dir = join(tmp, 'killed');
    await assert.rejects(train(buildTrainConfig(flags), dir, { afterStep: (k) => { if (k === 5) throw new Error('simulated kill'); } }), /simulated kill/);
    await train(readRunConfig(dir), dir, {}, true);
    const a = readFileSync(join(s.finalDir, 'adapter_model.safetensors'));
    const b = readFileSync(join(dir, 'final', 'adapter_model.safetensors'));
    assert.ok(a.equals(b), 'resumed adapters equal the uninterrupted run');

    // a run started before left truncation kept a reply room (no chat-encoding.json) is not resumed
    const old = join(tmp, 'old-encoding');
    await assert.rejects(train(buildTrainConfig(flags), old, { afterStep: (k) => { if (k === 2) throw new Error('simulated kill'); } }), /simulated kill/);
    rmSync(join(old, 'chat-encoding.json'));
    await assert.rejects(train(readRunConfig(old), old, {}, true), (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG' && e.message.startsWith(old) && /just enough to fit/.test(e.message));

    // MeZO on the same chat batches: runs and logs a finite projected gradient per step
    const mz = await train(buildTrainConfig({ ...flags, optimizer: 'mezo', lr: '1e-3', maxSteps: '3' }), join(tmp, 'mezo'));
    const log = readFileSync(join(mz.runDir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number; projected_grad: number });
    assert.equal(log.length, 3);
    assert.ok(log.every((r) => Number.isFinite(r.loss) && Number.isFinite(r.projected_grad)));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('train --task chat: rows cut away are an error naming file:line, or skipped and counted with --skip-invalid', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'lmtune-chat-skip-'));
  try {
    const data = join(tmp, 'd.jsonl');
    const ok = JSON.stringify({ messages: [{ role: 'user', content: 'Say yes.' }, { role: 'assistant', content: 'yes' }] });
    const long = JSON.stringify({ messages: [{ role: 'user', content: 'word '.repeat(80) }, { role: 'assistant', content: 'done' }] });
    writeFileSync(data, [ok, ok, long, ok, '{"messages": []}', ok].join('\n') + '\n');
    const flags = { model: MODEL, task: 'chat', data, numDev: '0', evalEvery: '0', optimizer: 'adam', lr: '1e-3', peft: 'lora', maxSteps: '1', batchSize: '2', seed: '1', threads: '1' };
    await assert.rejects(train(buildTrainConfig(flags), join(tmp, 'a')), new RegExp(`${data}:5: "messages" is empty`));
    const s = await train(buildTrainConfig({ ...flags, skipInvalid: true }), join(tmp, 'b'));
    assert.deepEqual(s.chat, { rows: 6, truncated: 0, skipped: 2, maxLength: 64 });
    writeFileSync(data, [ok, long].join('\n') + '\n');
    await assert.rejects(train(buildTrainConfig(flags), join(tmp, 'c')), new RegExp(`${data}:2: every assistant token is cut by the max length 64`));
    assert.throws(() => buildTrainConfig({ ...flags, task: 'sst2', skipInvalid: true }), /--skip-invalid applies to --task chat only/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
