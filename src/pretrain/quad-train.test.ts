/**
 * `lmtune train --objective quad`: continuing a Quad-pretrained checkpoint (A and Φ loaded from its
 * quad.safetensors, a fixed Φ kept fixed) and starting Quad from a cross-entropy checkpoint (A = I,
 * Φ = its head). The first logged loss is checked against an independent value: the Quad loss computed
 * in float64 from the saved folder's plain logits z = Φ·A·f, as −z_w + ½Σ_v z_v² per token (‖Φh‖² is
 * the sum of the squared logits). Then: the loss falls, an interrupted run resumes to the same bytes
 * (in process and through the CLI with a kill -9), and bad input gives clear errors.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import '../node/host.ts';
import { LmtuneError } from '../util/errors.ts';
import { TransformerModel } from '../heads/model.ts';
import { readSafetensors } from '../node/safetensors-file.ts';
import { readRunConfig } from '../train/loop.ts';
import { runResults, type LogRecord } from '../report/run-view.ts';
import { buildTrainConfig, refuseFlagsForQuad, register } from '../cli/train.ts';
import { pretrain } from './pretrain.ts';
import { loadQuadPhi, QUAD_DENSE, QUAD_FILE, QUAD_PHI } from './quad.ts';
import { prepareQuadModel, readTextDocuments, trainQuad } from './quad-train.ts';

const CLI = new URL('../../bin/lmtune.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'lmtune-quad-train-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const SEQ = 16;
const corpus = join(dir, 'corpus.txt');
const trainText = join(dir, 'train.txt');
const devText = join(dir, 'dev.txt');
const quadModel = join(dir, 'quad');
const fixedModel = join(dir, 'quad-fixed');
const xentModel = join(dir, 'xent');
const otherVocab = join(dir, 'xent-290');

const sentence = (i: number) => `the cat sat on the mat number ${i % 7}. a dog ran to the park and back again, ${i % 3 ? 'slowly' : 'quickly'}.`;

before(async () => {
  writeFileSync(corpus, Array.from({ length: 60 }, (_, i) => sentence(i)).join('\n\n'));
  writeFileSync(trainText, Array.from({ length: 12 }, (_, i) => sentence(i + 1)).join('\n\n'));
  writeFileSync(devText, Array.from({ length: 4 }, (_, i) => sentence(i + 100)).join('\n\n'));
  const base = { shared: dir, vocabSize: 300, layers: 1, dim: 16, heads: 2, seq: SEQ, batch: 4, steps: 12, lr: 1e-2, warmup: 2, weightDecay: 0, seed: 0, threads: 1, sources: [{ name: 'toy', path: corpus, documents: (t: string) => t.split('\n\n') }] };
  await pretrain({ ...base, out: xentModel });
  await pretrain({ ...base, out: quadModel, objective: 'quad' });
  await pretrain({ ...base, out: fixedModel, objective: 'quad', quadFixedPhi: await loadQuadPhi(xentModel) });
  await pretrain({ ...base, out: otherVocab, vocabSize: 290, steps: 1 });
});

/** the Quad loss of a saved folder's plain logits on windows of SEQ tokens overlapping by one, float64 */
async function independentQuadLoss(model: string, textFile: string): Promise<number> {
  const m = await TransformerModel.load(model, { backend: 'ref' });
  const eot = m.tokenizer!.eosId!;
  const ids: number[] = [];
  for (const d of readFileSync(textFile, 'utf8').split('\n\n')) ids.push(...m.tokenizer!.encode(d.trim(), { addSpecialTokens: false }), eot);
  const V = m.cfg.vocabSize;
  let total = 0;
  let n = 0;
  for (let s = 0; s + SEQ <= ids.length; s += SEQ - 1) {
    const w = ids.slice(s, s + SEQ);
    const { logits } = await m.forwardAll([w]);
    for (let t = 0; t + 1 < SEQ; t++) {
      let sq = 0;
      for (let v = 0; v < V; v++) sq += logits[t * V + v]! ** 2;
      total += 0.5 * sq - logits[t * V + w[t + 1]!]!;
      n++;
    }
  }
  return total / n;
}

function windowsOf(model: string, textFile: string): Promise<number> {
  return TransformerModel.load(model, { backend: 'ref' }).then((m) => {
    let len = 0;
    for (const d of readFileSync(textFile, 'utf8').split('\n\n')) len += m.tokenizer!.encode(d.trim(), { addSpecialTokens: false }).length + 1;
    return Math.floor((len - 1) / (SEQ - 1));
  });
}

const flags = (model: string, extra: Record<string, string> = {}) => ({ model, data: trainText, dev: devText, objective: 'quad', optimizer: 'adamw', lr: '1e-2', maxSteps: '6', batchSize: '4', evalEvery: '3', saveEvery: '2', seed: '1', maxLength: String(SEQ), threads: '1', ...extra });

function logged(run: string): number[] {
  return readFileSync(join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number }).loss);
}

const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

test('continuing a Quad checkpoint: A and Φ come from its quad.safetensors, and the first loss is the saved model\'s own Quad loss', async () => {
  const side = readSafetensors(join(quadModel, QUAD_FILE));
  const A = side.tensors.get(QUAD_DENSE)!.data;
  // pretraining moved A away from its identity start, so loading it is not the same as starting afresh
  assert.ok(A.some((a, i) => Math.abs(a - (i % 17 === 0 ? 1 : 0)) > 1e-3));
  const q = await prepareQuadModel(buildTrainConfig(flags(quadModel)));
  assert.deepEqual(q.model.weights.get(QUAD_DENSE).data, A);
  assert.deepEqual(q.model.weights.get(QUAD_PHI).data, side.tensors.get(QUAD_PHI)!.data);
  assert.equal(q.phiFixedFrom, null);
  assert.ok(q.names.includes(QUAD_PHI) && q.names.includes(QUAD_DENSE) && !q.names.includes('lm_head.weight'));

  // one batch holds every training window, so step 1's loss is the mean over all of them in any order
  const windows = await windowsOf(quadModel, trainText);
  const run = join(dir, 'run-quad');
  const s = await trainQuad(buildTrainConfig(flags(quadModel, { batchSize: String(windows) })), run);
  close(logged(run)[0]!, await independentQuadLoss(quadModel, trainText), 'step 1 loss');
  close(s.initialEval!.value, await independentQuadLoss(quadModel, devText), 'held-out loss at step 0');
  assert.equal(s.initialEval!.metric, 'quad_loss');
  // the final folder is a Quad model again: its folded head is Φ·A of its quad.safetensors, and it loads as a plain GPT-2
  close(s.finalEval!.value, await independentQuadLoss(s.finalDir, devText), 'held-out loss of final/');
  assert.ok(existsSync(join(s.finalDir, QUAD_FILE)) && existsSync(join(s.finalDir, 'vocab.json')));
  // best/ and the report keep the lowest held-out loss
  const evals = readFileSync(join(run, 'eval.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LogRecord);
  const lowest = Math.min(...evals.map((e) => e.value as number));
  assert.equal(s.best!.value, lowest);
  assert.equal(runResults([], evals).best!.value, lowest);
});

test('a fixed Φ stays fixed through the continued run; A trains', async () => {
  const q = await prepareQuadModel(buildTrainConfig(flags(fixedModel)));
  assert.equal(q.phiFixedFrom, xentModel);
  assert.ok(!q.names.includes(QUAD_PHI));
  const run = join(dir, 'run-fixed');
  const s = await trainQuad(buildTrainConfig(flags(fixedModel)), run);
  const before = readSafetensors(join(fixedModel, QUAD_FILE));
  const afterRun = readSafetensors(join(s.finalDir, QUAD_FILE));
  assert.deepEqual(afterRun.tensors.get(QUAD_PHI)!.data, before.tensors.get(QUAD_PHI)!.data);
  assert.deepEqual(afterRun.tensors.get(QUAD_PHI)!.data, (await loadQuadPhi(xentModel)).data);
  assert.notDeepEqual(afterRun.tensors.get(QUAD_DENSE)!.data, before.tensors.get(QUAD_DENSE)!.data);
  assert.equal(afterRun.header.metadata['phi'], 'fixed');
});

test('starting Quad from a cross-entropy checkpoint: A = I and Φ = its head, so the first loss is its own logits\' Quad loss; the loss falls', async () => {
  const windows = await windowsOf(xentModel, trainText);
  const run = join(dir, 'run-xent');
  const s = await trainQuad(buildTrainConfig(flags(xentModel, { batchSize: String(windows), maxSteps: '1', evalEvery: '1' })), run);
  close(logged(run)[0]!, await independentQuadLoss(xentModel, trainText), 'step 1 loss');
  close(s.initialEval!.value, await independentQuadLoss(xentModel, devText), 'held-out loss at step 0');
  // a longer run on the same text: the Quad loss falls (held-out and training)
  const long = join(dir, 'run-xent-long');
  const l = await trainQuad(buildTrainConfig(flags(xentModel, { maxSteps: '30', evalEvery: '30', saveEvery: '30', lr: '3e-3' })), long);
  assert.ok(l.finalEval!.value < l.initialEval!.value - 0.1 * Math.abs(l.initialEval!.value), `held-out Quad loss ${l.initialEval!.value} → ${l.finalEval!.value}`);
  const losses = logged(long);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(mean(losses.slice(-5)) < mean(losses.slice(0, 5)), `training loss ${mean(losses.slice(0, 5))} → ${mean(losses.slice(-5))}`);
  // the saved folder is a Quad model that a further run continues
  assert.equal(readSafetensors(join(l.finalDir, QUAD_FILE)).header.metadata['phi'], 'learned');
});

test('--task NAME: the documents are the input texts of the task\'s examples (labels unused); --num-dev of them held out', async () => {
  const data = join(dir, 'sst2.jsonl');
  writeFileSync(data, readFileSync('../shared/data/sst2/glue_train.jsonl', 'utf8').split('\n').slice(0, 24).join('\n') + '\n');
  const { dev: _dev, ...noDev } = flags(xentModel);
  const s = await trainQuad(buildTrainConfig({ ...noDev, task: 'sst2', data, numDev: '4', maxSteps: '2', batchSize: '2' }), join(dir, 'run-sst2'));
  assert.deepEqual(s.examples, { train: 20, dev: 4 });
  assert.ok(Number.isFinite(s.finalLoss) && Number.isFinite(s.finalEval!.value));
});

const FINAL = ['final/model.safetensors', `final/${QUAD_FILE}`, 'checkpoint/trainable.safetensors', 'checkpoint/optimizer.safetensors', 'checkpoint/state.json'];
const bytes = (run: string) => Object.fromEntries(FINAL.map((f) => [f, readFileSync(join(run, f))]));

test('an interrupted Quad run resumes to the uninterrupted run\'s bytes (in process, and kill -9 through the CLI)', async () => {
  const base = join(dir, 'resume-base');
  await trainQuad(buildTrainConfig(flags(quadModel)), base);
  const want = bytes(base);
  const cut = join(dir, 'resume-cut');
  await assert.rejects(trainQuad(buildTrainConfig(flags(quadModel)), cut, { afterStep: (k) => { if (k === 3) throw new Error('simulated kill'); } }), /simulated kill/);
  assert.ok(!existsSync(join(cut, 'final')));
  await trainQuad(readRunConfig(cut), cut, {}, true);
  for (const [f, b] of Object.entries(bytes(cut))) assert.ok(b.equals(want[f]!), `in process: ${f} differs`);

  const args = ['train', ...Object.entries(flags(quadModel)).flatMap(([k, v]) => [`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, v])];
  for (const fault of ['logged:3', 'checkpoint:4:swapping']) {
    const killedDir = join(dir, `kill-${fault.replace(/:/g, '_')}`);
    const killed = spawnSync(process.execPath, [CLI, ...args, '--out', killedDir], { encoding: 'utf8', env: { ...process.env, LMTUNE_THREADS: '1', LMTUNE_FAULT: fault } });
    assert.equal(killed.signal, 'SIGKILL', `${fault}: ${killed.stderr}`);
    const resumed = spawnSync(process.execPath, [CLI, 'train', '--resume', killedDir], { encoding: 'utf8', env: { ...process.env, LMTUNE_THREADS: '1' } });
    assert.equal(resumed.status, 0, resumed.stderr);
    for (const [f, b] of Object.entries(bytes(killedDir))) assert.ok(b.equals(want[f]!), `${fault}: ${f} differs`);
    const steps = readFileSync(join(killedDir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
    assert.deepEqual(steps, [1, 2, 3, 4, 5, 6], fault);
  }
});

async function cli(args: string[]): Promise<void> {
  const program = new Command();
  program.exitOverride();
  register(program);
  await program.parseAsync(['node', 'lmtune', ...args]);
}

const config = (re: RegExp) => (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG' && re.test(e.message);

test('bad input: flags that do not apply, a foreign vocabulary for a fixed Φ, a Φ the checkpoint already has, a mismatched quad.safetensors, no text', async () => {
  assert.throws(() => refuseFlagsForQuad(['loraR', 'zoEps']), config(/--lora-r, --zo-eps do not apply to --objective quad/));
  await assert.rejects(cli(['train', '--model', xentModel, '--data', trainText, '--objective', 'quad', '--zo-eps', '1e-3', '--out', join(dir, 'bad1')]), config(/--zo-eps does not apply to --objective quad/));
  assert.throws(() => buildTrainConfig(flags(xentModel, { optimizer: 'mezo' })), config(/--optimizer mezo does not apply/));
  assert.throws(() => buildTrainConfig(flags(xentModel, { peft: 'lora' })), config(/--peft lora does not apply/));
  assert.throws(() => buildTrainConfig({ ...flags(xentModel), objective: 'auto', task: 'sst2', quadPhiFrom: xentModel }), config(/--quad-phi-from applies to --objective quad/));
  assert.throws(() => buildTrainConfig({ ...flags(xentModel), objective: 'auto', task: 'text' }), config(/--task text .* applies to --objective quad only/));
  await assert.rejects(trainQuad(buildTrainConfig(flags(xentModel, { quadPhiFrom: otherVocab })), join(dir, 'bad2')), config(/--quad-phi-from .*xent-290: its vocabulary \(\d+ tokens\) differs from .*vocab\.json/));
  await assert.rejects(trainQuad(buildTrainConfig(flags(quadModel, { quadPhiFrom: xentModel })), join(dir, 'bad3')), config(/carries its own Φ/));
  // a quad.safetensors from another model next to these weights
  const mixed = join(dir, 'mixed');
  cpSync(quadModel, mixed, { recursive: true });
  cpSync(join(fixedModel, QUAD_FILE), join(mixed, QUAD_FILE));
  await assert.rejects(prepareQuadModel(buildTrainConfig(flags(mixed))), (e: unknown) => e instanceof LmtuneError && e.code === 'CHECKPOINT' && /quad\.safetensors: Φ·A differs from .*lm_head\.weight/.test(e.message));
  writeFileSync(join(dir, 'empty.txt'), '\n\n  \n');
  assert.throws(() => readTextDocuments(join(dir, 'empty.txt')), (e: unknown) => e instanceof LmtuneError && /empty\.txt: no text/.test(e.message));
  writeFileSync(join(dir, 'bad.jsonl'), '{"text": "fine"}\n{"sentence": "no text field"}\n');
  assert.throws(() => readTextDocuments(join(dir, 'bad.jsonl')), (e: unknown) => e instanceof LmtuneError && /bad\.jsonl:2: no string "text" field/.test(e.message));
  const { dev: _dev, ...noDev } = flags(xentModel);
  await assert.rejects(trainQuad(buildTrainConfig({ ...noDev, numDev: '12' }), join(dir, 'bad4')), config(/--num-dev 12: .* has 12 documents, which leaves none to train on/));
});
