/**
 * `lmtune train --objective quad`: continue a checkpoint with the Quad objective (quad.ts) on text, as
 * a `train` run (run folder, config.json, log.jsonl, eval.jsonl, checkpoint/ with optimizer state, best/,
 * final/, `--resume` after a kill with the same bytes as an uninterrupted run).
 *
 * Why not the task loop (train/loop.ts): Quad is a language-modelling loss over every token of a text,
 * while the loop's unit is a labelled example with candidates and a dev metric. The data here is a
 * token stream cut into windows, the held-out measure is the Quad loss, and the model carries two
 * weights that no task model has (A and Φ). What the two share is reused: the run folder and its
 * marker, the options and their validation, the optimizers, the checkpoint format and its atomic swap,
 * the seeded epoch order (`DataOrder`, over windows instead of examples), the logs and the report.
 *
 * Where A and Φ come from:
 *  - a folder `lmtune pretrain --objective quad` (or this command) wrote holds `quad.safetensors`: A and
 *    Φ are loaded from it as trained, and Φ stays fixed when it was fixed at pretraining. The folded
 *    head Φ·A of model.safetensors must equal their product (checked), so the continued run starts
 *    from exactly the saved model;
 *  - any other GPT-2 checkpoint (trained with cross-entropy): A = I as pretraining starts it, and Φ a
 *    copy of the checkpoint's own output embedding, learned; or fixed to another model's output
 *    embedding with `--quad-phi-from DIR` (same vocabulary). Starting Φ from the model's own head (not
 *    from pretraining's N(0, 0.02²)) keeps what the checkpoint learned: the starting Quad model's logits
 *    Φ·A·f are the checkpoint's own logits.
 *
 * The data (`--data`, and `--dev` when given): with `--task text` (the default with `--objective quad`)
 * a plain text file whose documents are separated by blank lines, or a JSONL file with a "text" field
 * per line; with a task name, the input fields of that task's examples (labels unused), one document
 * per example. Documents become one token stream, each followed by the end-of-text token, as
 * pretraining builds it, cut into windows of `--max-length` tokens (default: the model's context, at
 * most 128) that overlap by one token, so each adjacent pair of tokens is one target exactly once.
 * Without `--dev`, `--num-dev` documents (seeded) are held out.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { Rng } from '../util/rng.ts';
import { faultPoint } from '../util/fault.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import { replaceFolder } from '../node/outputs.ts';
import { copyTokenizerFiles } from '../models/index.ts';
import { loadTransformer, type TransformerModel } from '../heads/model.ts';
import { padTargets } from '../heads/objective.ts';
import { packBatch } from '../models/batch.ts';
import { lrAt, type Schedule } from '../optim/schedule.ts';
import { clipGradNorm, globalGradNorm } from '../optim/clip.ts';
import { loadExamples, resolveTask } from '../tasks/index.ts';
import { claimRunFolder, DataOrder, finishedRun, JsonlWriter, loggedEvals, loggedLastLoss, truncateJsonl, type EvalEvent, type TrainHooks, type TrainSummary } from '../train/loop.ts';
import { readCheckpoint, writeCheckpoint, type RunState } from '../train/checkpoint.ts';
import { makeOptimizer } from '../optim/options.ts';
import { writeRunReport } from '../train/report.ts';
import type { TrainConfig } from '../train/options.ts';
import { addQuadWeights, foldedHead, loadQuadPhi, QUAD_DENSE, QUAD_FILE, QUAD_PHI, quadLossAndGrads, readQuadFile, saveQuadModel } from './quad.ts';

/** `--task text`: --data is a plain text corpus (the default task of `--objective quad`) */
export const TEXT_TASK = 'text';
/** the metric eval.jsonl records: the held-out Quad loss (lower is better) */
export const QUAD_METRIC = 'quad_loss';
const DEFAULT_WINDOW_CAP = 128;

/** documents of a text file: blank-line separated (.txt and anything not .jsonl), or JSONL "text" fields */
export function readTextDocuments(file: string): string[] {
  if (!existsSync(file)) throw new LmtuneError('IO', `text file not found: ${file}`);
  const text = readFileSync(file, 'utf8');
  let docs: string[];
  if (file.toLowerCase().endsWith('.jsonl')) {
    docs = [];
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch (e) {
        throw new LmtuneError('DATA', `${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
      }
      const t = rec !== null && typeof rec === 'object' ? (rec as Record<string, unknown>)['text'] : undefined;
      if (typeof t !== 'string') throw new LmtuneError('DATA', `${file}:${i + 1}: no string "text" field`, 'with --task text a JSONL file holds one {"text": ...} per line; for a task\'s data pass --task NAME');
      if (t.trim()) docs.push(t.trim());
    });
  } else {
    docs = text
      .split(/\r?\n\s*\r?\n/)
      .map((d) => d.trim())
      .filter(Boolean);
  }
  if (!docs.length) throw new LmtuneError('DATA', `${file}: no text`, 'the Quad objective trains on the text of --data');
  return docs;
}

function documentsOf(cfg: TrainConfig, file: string): string[] {
  if (cfg.task === TEXT_TASK) return readTextDocuments(file);
  const task = resolveTask(cfg.task);
  const docs = loadExamples(task, file)
    .map((e) => Object.values(e.fields).filter((v) => v.trim() !== '').join(' '))
    .filter((d) => d.trim() !== '');
  if (!docs.length) throw new LmtuneError('DATA', `${file}: the ${cfg.task} examples have no text`);
  return docs;
}

/** one token stream: each document's tokens, then the end-of-text token (as pretraining builds it) */
export function tokenStream(model: TransformerModel, docs: readonly string[]): Int32Array {
  const tok = model.tokenizer!;
  const eot = tok.eosId;
  if (eot === null) throw new LmtuneError('TOKENIZER', `${model.dir ?? 'model'}: the tokenizer has no end-of-text token to separate documents`);
  const ids: number[] = [];
  for (const d of docs) {
    for (const t of tok.encode(d, { addSpecialTokens: false })) ids.push(t);
    ids.push(eot);
  }
  return Int32Array.from(ids);
}

/** the starts of the windows of `seq` tokens over a stream, overlapping by one token */
export function windowStarts(length: number, seq: number): number[] {
  const out: number[] = [];
  for (let s = 0; s + seq <= length; s += seq - 1) out.push(s);
  return out;
}

/** a batch of windows: every position but the last predicts the next token of its window */
export function windowRequest(ids: Int32Array, starts: readonly number[], seq: number, padId: number) {
  const seqs = starts.map((s) => Array.from(ids.subarray(s, s + seq)));
  const batch = packBatch(seqs, { side: 'right', padId, seq, batch: starts.length });
  const index: number[] = [];
  const label: number[] = [];
  seqs.forEach((q, b) => {
    for (let t = 0; t + 1 < q.length; t++) {
      index.push(b * seq + t);
      label.push(q[t + 1]!);
    }
  });
  return { batch, targets: padTargets(index, label, index.length) };
}

/** the window length of a run: --max-length, or the model's context capped at 128 */
export function quadWindow(cfg: TrainConfig, model: TransformerModel): number {
  const ctx = model.cfg.maxPositions;
  if (cfg.maxLength !== null && cfg.maxLength > ctx) throw new LmtuneError('CONFIG', `--max-length ${cfg.maxLength}: the model's context is ${ctx} tokens`);
  return cfg.maxLength ?? Math.min(ctx, DEFAULT_WINDOW_CAP);
}

interface QuadModel {
  model: TransformerModel;
  /** the folder Φ is fixed to, or null when it is learned */
  phiFixedFrom: string | null;
  /** the weights the run trains (lm_head, which the Quad loss does not read, and a fixed Φ are left out) */
  names: string[];
}

/** loads `cfg.model` and gives it A and Φ: from its quad.safetensors, or initialized (see the header) */
export async function prepareQuadModel(cfg: TrainConfig, onMessage: (m: string) => void = () => {}): Promise<QuadModel> {
  const model = await loadTransformer(cfg.model, { ...(cfg.threads ? { threads: cfg.threads } : {}), sharedWeights: false });
  if (model.cfg.family !== 'gpt2') throw new LmtuneError('UNSUPPORTED', `--objective quad: ${cfg.model} is a ${model.cfg.family} model; the Quad objective is implemented for GPT-2 models, as lmtune pretrain makes them`);
  if (!model.tokenizer) throw new LmtuneError('TOKENIZER', `${cfg.model}: no tokenizer files; --objective quad tokenizes --data`);
  const V = model.cfg.vocabSize;
  const E = model.cfg.hiddenSize;
  const side = readQuadFile(cfg.model);
  let phiFixedFrom: string | null;
  if (side) {
    const file = join(cfg.model, QUAD_FILE);
    if (cfg.quadPhiFrom !== undefined) {
      throw new LmtuneError('CONFIG', `--quad-phi-from ${cfg.quadPhiFrom}: ${cfg.model} is a Quad model whose ${QUAD_FILE} carries its own Φ (${side.phiFixedFrom === null ? 'learned' : `fixed to ${side.phiFixedFrom}`}), which the run continues`, '--quad-phi-from applies when starting Quad from a cross-entropy checkpoint');
    }
    const want = (name: string, t: { shape: readonly number[] }, shape: number[]) => {
      if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) throw new LmtuneError('CHECKPOINT', `${file}: '${name}' is [${t.shape.join(', ')}], this model needs [${shape.join(', ')}]`, 'the file belongs to another model');
    };
    want(QUAD_DENSE, side.dense, [E, E]);
    want(QUAD_PHI, side.phi, [V, E]);
    model.weights.set(QUAD_DENSE, [E, E], Float32Array.from(side.dense.data));
    model.weights.set(QUAD_PHI, [V, E], Float32Array.from(side.phi.data));
    // the folded head must be Φ·A: otherwise model.safetensors was trained or edited apart from the file
    const head = model.weights.has('lm_head.weight') ? model.weights.get('lm_head.weight').data : null;
    const folded = foldedHead(model.weights).data;
    let diff = 0;
    let scale = 0;
    for (let i = 0; head && i < folded.length; i++) {
      diff = Math.max(diff, Math.abs(folded[i]! - head[i]!));
      scale = Math.max(scale, Math.abs(folded[i]!));
    }
    if (!head || diff > 1e-4 * scale + 1e-6) {
      throw new LmtuneError('CHECKPOINT', `${file}: Φ·A differs from ${cfg.model}'s lm_head.weight (${head ? `max |difference| ${diff.toExponential(2)}` : 'the model has no lm_head'}), so the file does not belong to these weights`, `remove ${QUAD_FILE} to start Quad afresh from the weights (A = I, Φ = the head)`);
    }
    phiFixedFrom = side.phiFixedFrom;
    onMessage(`continuing a Quad model: A and Φ from ${file} (Φ ${phiFixedFrom === null ? 'learned' : `fixed to ${phiFixedFrom}`})`);
  } else {
    if (cfg.quadPhiFrom !== undefined) {
      const fixed = await loadQuadPhi(cfg.quadPhiFrom);
      const vocabPath = join(cfg.model, 'vocab.json');
      if (!existsSync(vocabPath)) throw new LmtuneError('CONFIG', `--quad-phi-from ${cfg.quadPhiFrom}: ${cfg.model} has no vocab.json to compare vocabularies with`, 'a fixed Φ needs the model\'s vocabulary to be the same as that model\'s');
      const mine = JSON.parse(readFileSync(vocabPath, 'utf8')) as unknown;
      if (stableStringify(mine) !== stableStringify(fixed.vocab)) {
        throw new LmtuneError('CONFIG', `--quad-phi-from ${cfg.quadPhiFrom}: its vocabulary (${Object.keys(fixed.vocab).length} tokens) differs from ${vocabPath}'s, so its Φ rows name other words`, 'fix Φ to a model with the same tokenizer, or leave --quad-phi-from out to learn Φ from this model\'s own head');
      }
      addQuadWeights(model, { fixedPhi: fixed }, () => 0);
      phiFixedFrom = fixed.from;
    } else {
      const head = model.weights.has('lm_head.weight') ? model.weights.get('lm_head.weight') : model.weights.get('transformer.wte.weight');
      // a learned Φ starts as the model's own output embedding (no random draw: the normal is unused)
      addQuadWeights(model, { fixedPhi: head }, () => 0);
      phiFixedFrom = null;
    }
    onMessage(`starting Quad from ${cfg.model}: A = I, Φ ${phiFixedFrom === null ? "= its output embedding, learned" : `fixed to ${phiFixedFrom}'s output embedding`}`);
  }
  const names = model.trainableNames().filter((n) => n !== 'lm_head.weight' && !(phiFixedFrom !== null && n === QUAD_PHI));
  return { model, phiFixedFrom, names };
}

function schedule(cfg: TrainConfig): Schedule {
  const lr = cfg.optimizer.lr;
  if (cfg.schedule === 'constant') return { kind: 'constant', lr };
  return { kind: cfg.schedule, lr, warmupSteps: cfg.warmupSteps, totalSteps: cfg.maxSteps };
}

/**
 * option values (flags or a --config file) before they are parsed: `--objective quad` without `--task`
 * reads `--data` as plain text (`--task text`)
 */
export function withQuadDefaults<T extends Readonly<Record<string, unknown>>>(values: T): T {
  return values['objective'] === 'quad' && (values['task'] === undefined || values['task'] === '') ? { ...values, task: TEXT_TASK } : values;
}

/**
 * the cross-option rules of `--objective quad` on a parsed TrainConfig: the options it does not
 * implement are refused (flags, config files, edited runs), and its own options need it
 */
export function checkQuadConfig(cfg: TrainConfig): void {
  if (cfg.objective !== 'quad') {
    if (cfg.quadPhiFrom !== undefined) throw new LmtuneError('CONFIG', '--quad-phi-from applies to --objective quad');
    if (cfg.task === TEXT_TASK) throw new LmtuneError('CONFIG', `--task ${TEXT_TASK} (plain text) applies to --objective quad only`);
    return;
  }
  const no = (what: string, hint?: string): never => {
    throw new LmtuneError('CONFIG', `--objective quad: ${what}`, hint);
  };
  if (cfg.optimizer.name === 'mezo') no('--optimizer mezo does not apply; Quad trains with backprop', 'choose sgd, sgdm, rmsprop, adam or adamw');
  if (cfg.peft.kind !== 'full' || cfg.peft.only !== undefined) no(`${cfg.peft.kind !== 'full' ? `--peft ${cfg.peft.kind}` : '--trainable'} does not apply; Quad trains every weight (but a fixed Φ)`);
  if (cfg.gradAccum !== 1) no('--grad-accum does not apply', 'raise --batch-size instead');
  if (cfg.svag !== 1) no('--svag does not apply');
  if (cfg.numTrain !== null) no('--num-train does not apply; the run trains on all of --data but the held-out documents');
  if (cfg.skipInvalid || cfg.truncation) no('--skip-invalid and --truncation apply to --task chat only');
  if (cfg.task === 'chat') no('chat data does not apply', 'pass its text as a plain text file with --task text');
}

/** saves a Quad model folder (folded checkpoint + quad.safetensors + tokenizer files), swapped in whole */
function saveQuadFolder(q: QuadModel, from: string, dir: string, role: string): void {
  replaceFolder(dir, { kind: 'model', role }, '--out', (tmp) => {
    saveQuadModel(q.model, tmp, q.phiFixedFrom);
    copyTokenizerFiles(from, tmp);
  });
}

export async function trainQuad(cfg: TrainConfig, runDir: string, hooks: TrainHooks = {}, resume = false): Promise<TrainSummary> {
  const t0 = performance.now();
  checkQuadConfig(cfg);
  claimRunFolder(runDir, resume ? '--resume' : '--out');
  if (!resume) {
    cfg = {
      ...cfg,
      model: resolve(cfg.model),
      data: resolve(cfg.data),
      dev: cfg.dev ? resolve(cfg.dev) : null,
      task: existsSync(cfg.task) ? resolve(cfg.task) : cfg.task,
      ...(cfg.quadPhiFrom !== undefined ? { quadPhiFrom: resolve(cfg.quadPhiFrom) } : {}),
    };
    if (existsSync(join(runDir, 'checkpoint', 'state.json')) || existsSync(join(runDir, 'checkpoint.old', 'state.json'))) {
      throw new LmtuneError('CONFIG', `${runDir} already holds a run`, 'continue it with --resume, or choose another --out');
    }
    atomicWrite(join(runDir, 'config.json'), stableStringify(cfg));
  }
  const q = await prepareQuadModel(cfg, (m) => hooks.onMessage?.(m));
  const { model, names } = q;
  const seq = quadWindow(cfg, model);
  // documents: --dev, or --num-dev of --data's held out (seeded)
  const pool = documentsOf(cfg, cfg.data);
  let trainDocs: string[];
  let heldDocs: string[];
  if (cfg.dev) {
    trainDocs = pool;
    heldDocs = documentsOf(cfg, cfg.dev);
  } else {
    if (cfg.numDev >= pool.length) throw new LmtuneError('CONFIG', `--num-dev ${cfg.numDev}: ${cfg.data} has ${pool.length} documents, which leaves none to train on`, 'lower --num-dev, or pass held-out text with --dev');
    const order = new Rng(`quad-docs/${cfg.seed}`).permutation(pool.length);
    heldDocs = order.slice(0, cfg.numDev).map((i) => pool[i]!);
    trainDocs = order.slice(cfg.numDev).map((i) => pool[i]!);
  }
  const trainIds = tokenStream(model, trainDocs);
  const heldIds = tokenStream(model, heldDocs);
  const trainStarts = windowStarts(trainIds.length, seq);
  const heldStarts = windowStarts(heldIds.length, seq).slice(0, cfg.devLimit);
  if (!trainStarts.length) throw new LmtuneError('DATA', `${cfg.data}: ${trainIds.length} training tokens, fewer than one window of ${seq}`, 'pass more text, or a smaller --max-length');
  const padId = model.tokenizer!.eosId!;
  hooks.onMessage?.(`model ${cfg.model}: ${model.cfg.family}, ${model.weights.numParams()} parameters with A and Φ; trainable ${names.reduce((s, n) => s + model.tensor(n).length, 0)}; objective quad; ${trainDocs.length} train / ${heldDocs.length} held-out documents, ${trainStarts.length} / ${heldStarts.length} windows of ${seq} tokens`);

  const params = names.map((name) => ({ name, data: model.tensor(name) }));
  const opt = makeOptimizer(cfg.optimizer);
  const order = new DataOrder(trainStarts.length, cfg.seed);
  let state: RunState = { step: 0, data: { epoch: 0, cursor: 0 }, best: null, optimizerScalars: {}, extra: {} };
  if (resume) {
    const ck = readCheckpoint(join(runDir, 'checkpoint'), cfg.maxSteps);
    if (ck) {
      const statePath = join(runDir, 'checkpoint', 'state.json');
      if (ck.state.step >= cfg.maxSteps && existsSync(join(runDir, 'summary.json'))) {
        return finishedRun(runDir, ck.state.step, cfg.maxSteps, hooks);
      }
      if (ck.state.data.cursor >= trainStarts.length) throw new LmtuneError('CHECKPOINT', `${statePath}: "data.cursor" is ${ck.state.data.cursor}, past the ${trainStarts.length} training windows`, 'the state or the --data file changed since the run was checkpointed');
      if (ck.state.step > 0 && ck.optimizer.size === 0 && cfg.optimizer.name !== 'sgd') throw new LmtuneError('CHECKPOINT', `${join(runDir, 'checkpoint', 'optimizer.safetensors')}: missing; ${cfg.optimizer.name} keeps state that a resume needs`, 'restore the file, or start the run again');
      for (const n of names) {
        const t = ck.trainable.get(n);
        if (!t) throw new LmtuneError('CHECKPOINT', `${runDir}/checkpoint: no tensor '${n}'`, 'the checkpoint belongs to another run');
        const dst = model.tensor(n);
        if (dst.length !== t.data.length) throw new LmtuneError('CHECKPOINT', `${runDir}/checkpoint: tensor '${n}' has ${t.data.length} values, the model has ${dst.length}`);
        dst.set(t.data);
      }
      if (ck.optimizer.size || Object.keys(ck.state.optimizerScalars).length) opt.loadState(ck.optimizer, ck.state.optimizerScalars);
      state = ck.state;
      order.epoch = state.data.epoch;
      order.cursor = state.data.cursor;
      hooks.onMessage?.(`resuming ${runDir} at step ${state.step}`);
    } else hooks.onMessage?.(`no checkpoint in ${runDir}: starting from step 0`);
    truncateJsonl(join(runDir, 'log.jsonl'), state.step);
    truncateJsonl(join(runDir, 'eval.jsonl'), state.step === 0 && cfg.evalEvery > 0 ? -1 : state.step);
  } else {
    for (const f of ['log.jsonl', 'eval.jsonl']) rmSync(join(runDir, f), { force: true });
  }

  const log = new JsonlWriter(join(runDir, 'log.jsonl'));
  const evalLog = new JsonlWriter(join(runDir, 'eval.jsonl'));
  const sched = schedule(cfg);
  const evaluateHeld = async (): Promise<number> => {
    // every held-out window once; all windows have seq − 1 targets, so the window mean is the token mean
    let total = 0;
    for (let s = 0; s < heldStarts.length; s += cfg.batchSize) {
      const starts = heldStarts.slice(s, s + cfg.batchSize);
      const req = windowRequest(heldIds, starts, seq, padId);
      total += (await quadLossAndGrads(model, req.batch, req.targets)).loss * starts.length;
    }
    return total / heldStarts.length;
  };
  let initialEval: EvalEvent | null = null;
  let finalEval: EvalEvent | null = null;
  const doEval = cfg.evalEvery > 0 && heldStarts.length > 0;
  if (cfg.evalEvery > 0 && !heldStarts.length) hooks.onMessage?.(`no held-out window of ${seq} tokens: no evaluation`);
  const runEval = async (step: number): Promise<EvalEvent> => {
    const loss = await evaluateHeld();
    // lower is better for a loss; state.best keeps the lowest
    const better = state.best === null || loss < state.best.value;
    const ev: EvalEvent = { step, metric: QUAD_METRIC, value: loss, devLoss: loss, best: better };
    if (better) {
      state.best = { value: loss, step };
      saveQuadFolder(q, cfg.model, join(runDir, 'best'), 'best');
    }
    evalLog.push(ev);
    evalLog.flush();
    hooks.onEval?.(ev);
    return ev;
  };

  if (state.step === 0 && doEval) initialEval = await runEval(0);
  if (resume && state.step >= cfg.maxSteps) ({ initialEval, finalEval } = loggedEvals(join(runDir, 'eval.jsonl'), cfg.maxSteps));
  const startStep = state.step;
  const tStart = performance.now();
  let lastLoss = resume && state.step >= cfg.maxSteps ? loggedLastLoss(join(runDir, 'log.jsonl')) : Number.NaN;
  for (let step = state.step; step < cfg.maxSteps; step++) {
    const lr = lrAt(sched, step);
    const req = windowRequest(trainIds, order.next(cfg.batchSize).map((i) => trainStarts[i]!), seq, padId);
    const r = await quadLossAndGrads(model, req.batch, req.targets, names);
    const grads = r.grads!;
    const gradNorm = cfg.clipNorm ? clipGradNorm(grads, cfg.clipNorm, { errorIfNonfinite: false }) : globalGradNorm(grads);
    if (!Number.isFinite(gradNorm)) {
      throw new LmtuneError('NUMERIC', `step ${step + 1}: the gradient norm is ${gradNorm}`, `the last good checkpoint is ${join(runDir, 'checkpoint')} (step ${state.step}); lower the learning rate and resume`);
    }
    opt.step(params, grads, lr);
    lastLoss = r.loss;
    const sps = (step + 1 - startStep) / Math.max((performance.now() - tStart) / 1000, 1e-9);
    log.push({ step: step + 1, loss: r.loss, lr, grad_norm: gradNorm });
    state.step = step + 1;
    state.data = { epoch: order.epoch, cursor: order.cursor };
    faultPoint(`logged:${step + 1}`);
    hooks.onStep?.({ step: step + 1, maxSteps: cfg.maxSteps, loss: r.loss, lr, stepsPerSecond: sps, etaSeconds: (cfg.maxSteps - step - 1) / sps });
    const last = step + 1 === cfg.maxSteps;
    if (doEval && ((step + 1) % cfg.evalEvery === 0 || last)) {
      log.flush();
      finalEval = await runEval(step + 1);
    }
    if ((step + 1) % cfg.saveEvery === 0 || last) {
      log.flush();
      writeCheckpoint(join(runDir, 'checkpoint'), {
        state: { ...state, optimizerScalars: opt.stateScalars(), extra: {} },
        trainable: new Map(names.map((n) => [n, { shape: model.weights.get(n).shape, data: model.tensor(n) }] as const)),
        optimizer: new Map([...opt.stateTensors()].map(([k, v]) => [k, Float32Array.from(v)] as const)),
      });
    }
    hooks.afterStep?.(step + 1, model);
    faultPoint(`step:${step + 1}`);
  }
  log.flush();
  const finalDir = join(runDir, 'final');
  saveQuadFolder(q, cfg.model, finalDir, 'final');
  const summary: TrainSummary = {
    runDir,
    steps: state.step,
    finalLoss: lastLoss,
    initialEval,
    finalEval,
    best: state.best,
    finalDir,
    seconds: (performance.now() - t0) / 1000,
    examples: { train: trainDocs.length, dev: heldDocs.length },
  };
  atomicWrite(join(runDir, 'summary.json'), stableStringify({ ...summary, seconds: undefined }));
  writeRunReport(runDir, cfg, { sizes: summary.examples ?? null, seconds: summary.seconds });
  return summary;
}
