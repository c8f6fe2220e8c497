/**
 * A fine-tuning session as the page's worker runs it: a model from a Folder, data from text, zero-shot
 * evaluation, and MeZO on LoRA adapters with its trajectory kept in memory. Core code only (no DOM, no
 * Node), so the same session runs in a Web Worker and in Node's tests, and the trajectory it records
 * replays with `lmtune mezo replay` to the same bits.
 *
 * It follows `lmtune train --optimizer mezo --peft lora` step for step (data order, step seeds, the
 * reference decay filter, the lr schedule, the trajectory's sealed lines), without the run folder:
 * a page has no files to checkpoint into, so a stopped run is its adapters and trajectory, downloaded.
 */
import { LmtuneError } from '../util/errors.ts';
import { MemorySink, type Folder } from '../util/folder.ts';
import { Rng } from '../util/rng.ts';
import { adapterFiles, asLanguageModel, TransformerModel } from '../models/index.ts';
import { attachPeft } from '../peft/index.ts';
import type { LoraSpec } from '../peft/spec.ts';
import { detectFormat, evaluate, getBuiltinTask, parseRecords, type Example, type Task } from '../tasks/index.ts';
import { MezoOptimizer } from '../optim/mezo.ts';
import { mezoReferenceDecayFilter } from '../optim/decay.ts';
import { mezoStepSeed } from '../optim/zstream.ts';
import { lrAt, type Schedule } from '../optim/schedule.ts';
import { sealHeader, sealRecord, stepRecord, trajectoryHeader } from '../optim/trajectory.ts';
import { buildLossRequest, defaultObjective, encodeExample, lossUnits, type Encoded, type ObjectiveMode } from '../train/batches.ts';

export interface ModelInfo {
  label: string;
  family: string;
  params: number;
  /** the weights' bytes in memory (float32) */
  weightBytes: number;
  files: string[];
}

export interface TuneSettings {
  steps: number;
  batchSize: number;
  lr: number;
  /** MeZO's perturbation size ε */
  eps: number;
  seed: number;
  loraRank: number;
  loraAlpha: number;
  /** evaluate on dev every this many steps (0: only at the end) */
  evalEvery: number;
  schedule: 'constant' | 'linear';
}

export const DEFAULT_SETTINGS: TuneSettings = { steps: 200, batchSize: 16, lr: 5e-3, eps: 1e-2, seed: 0, loraRank: 8, loraAlpha: 16, evalEvery: 50, schedule: 'linear' };

export interface ScoredExample {
  text: string;
  gold: string;
  predicted: string;
  right: boolean;
  /** log-probability score of each label word */
  scores: { label: string; score: number }[];
}

export interface DevEval {
  step: number;
  accuracy: number;
  devLoss: number;
  n: number;
  /** demonstrations in each prompt (0: zero-shot) */
  shots: number;
  examples: ScoredExample[];
}

export interface StepEvent {
  step: number;
  steps: number;
  loss: number;
  projectedGrad: number;
  lr: number;
  /** this step's wall time (both forward passes and the update) */
  ms: number;
  stepsPerSecond: number;
}

export interface TrainHooks {
  onStep?(e: StepEvent): void;
  onEval?(e: DevEval): void;
  /** awaited between steps: where pause holds the loop and stop is noticed */
  between?(): Promise<'go' | 'stop'>;
}

/** the text of an example, for showing it */
function exampleText(ex: Example): string {
  const f = ex.fields;
  return f.sentence ?? f.text ?? Object.values(f).join(' / ');
}

export class TuneSession {
  model: TransformerModel | null = null;
  task: Task = getBuiltinTask('sst2');
  train: Example[] = [];
  dev: Example[] = [];
  private encodeCache = new Map<Example, Encoded>();
  private initialAdapters: { config: Uint8Array; weights: Uint8Array } | null = null;
  private trajectory: string[] = [];
  private lastChk = '';
  private spec: LoraSpec | null = null;

  async loadModel(folder: Folder, threads?: number): Promise<ModelInfo> {
    const files = folder.list();
    if (!files.includes('config.json')) throw new LmtuneError('IO', `${folder.label}: no config.json: not a Hugging Face model folder`, 'pick the folder that holds config.json, the tokenizer and the *.safetensors weights');
    if (!files.some((f) => f.endsWith('.safetensors'))) {
      throw new LmtuneError('IO', `${folder.label}: no weights (*.safetensors) among ${files.length} files (${files.slice(0, 8).join(', ')}${files.length > 8 ? ', …' : ''})`, 'pick a folder with model.safetensors (or sharded model-0000x-of-0000y.safetensors + model.safetensors.index.json); PyTorch .bin files are not read');
    }
    const m = await TransformerModel.load(folder, { ...(threads ? { threads } : {}), sharedWeights: false });
    if (m.kind !== 'causal') throw new LmtuneError('UNSUPPORTED', `${folder.label}: a ${m.cfg.family} (masked LM) model; the page fine-tunes causal LMs`, 'pick a GPT-2, Llama, OPT or other causal LM folder');
    if (!m.tokenizer) throw new LmtuneError('TOKENIZER', `${folder.label}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt)`, 'copy the tokenizer files next to config.json');
    this.model = m;
    this.encodeCache = new Map();
    this.initialAdapters = null;
    this.trajectory = [];
    return { label: folder.label, family: m.cfg.family, params: m.weights.numParams(), weightBytes: 4 * m.weights.numParams(), files };
  }

  /** Examples of a JSONL/TSV/CSV text, validated as the CLI does (errors name `name:line`). */
  parseData(name: string, text: string): Example[] {
    const examples = parseRecords(text, name, detectFormat(name, text)).flatMap((r) => this.task.parse(r));
    if (examples.length === 0) throw new LmtuneError('DATA', `${name}: no examples`);
    return examples;
  }

  setData(which: 'train' | 'dev', examples: Example[]): void {
    this[which] = examples;
    this.encodeCache = new Map();
  }

  private requireModel(): TransformerModel {
    if (!this.model) throw new LmtuneError('CONFIG', 'load a model first');
    return this.model;
  }

  private mode(): ObjectiveMode {
    return defaultObjective(this.task, this.requireModel());
  }

  private encoded(e: Example): Encoded {
    let enc = this.encodeCache.get(e);
    if (!enc) {
      enc = encodeExample(this.task, e, this.requireModel());
      this.encodeCache.set(e, enc);
    }
    return enc;
  }

  /**
   * accuracy (k-shot with `shots` demonstrations drawn from the training data, as `lmtune eval --shots k
   * --train FILE`) and the dev loss (zero-shot, the mean over examples, as `lmtune train` logs it), plus
   * the first `show` examples scored
   */
  async evaluateDev(step: number, limit: number, batchSize: number, shots = 0, show = 6): Promise<DevEval> {
    const model = this.requireModel();
    if (!this.dev.length) throw new LmtuneError('CONFIG', 'load dev data first');
    const dev = this.dev.slice(0, limit);
    if (shots > 0 && !this.train.length) throw new LmtuneError('CONFIG', `${shots}-shot evaluation draws its demonstrations from the training data: load training data first`);
    const result = await evaluate(asLanguageModel(model), this.task, dev, { batchSize: 8, ...(shots > 0 ? { shots, demoPool: this.train } : {}) });
    let total = 0;
    let units = 0;
    for (let s = 0; s < dev.length; s += batchSize) {
      const req = buildLossRequest(dev.slice(s, s + batchSize).map((e) => this.encoded(e)), this.mode(), model, batchSize);
      const r = await model.loss(req);
      const u = lossUnits(req);
      total += r.loss * u;
      units += u;
    }
    const words = this.task.labelWords;
    const examples = result.predictions.slice(0, show).map((p, i): ScoredExample => {
      const pred = typeof p.prediction === 'number' ? p.prediction : -1;
      const gold = (p.gold as readonly number[])[0] ?? -1;
      return {
        text: exampleText(dev[i]!),
        gold: words[gold] ?? String(gold),
        predicted: words[pred] ?? String(p.prediction),
        right: p.score === 1,
        scores: (p.candidateScores ?? []).map((score, c) => ({ label: words[c] ?? String(c), score })),
      };
    });
    return { step, accuracy: result.value, devLoss: total / Math.max(1, units), n: dev.length, shots, examples };
  }

  /**
   * MeZO on fresh LoRA adapters (seeded), the trajectory recorded from step 0. Returns the steps done
   * (fewer than asked when stopped).
   */
  async fineTune(s: TuneSettings, devLimit: number, hooks: TrainHooks = {}): Promise<number> {
    const model = this.requireModel();
    if (!this.train.length) throw new LmtuneError('CONFIG', 'load training data first');
    const spec: LoraSpec = { kind: 'lora', rank: s.loraRank, alpha: s.loraAlpha, dropout: 0, targets: [] };
    await attachPeft(model, spec, s.seed);
    this.spec = model.peft as LoraSpec;
    // a MeZO run is its initial adapters plus the trajectory: keep the initial ones as bytes now
    this.initialAdapters = this.adapterBytes();
    const opt = new MezoOptimizer(model.trainableParams(), { eps: s.eps, weightDecay: 0, decayFilter: mezoReferenceDecayFilter, distribution: 'gaussian', nSpsa: 1, rule: { kind: 'sgd' } });
    const head = sealHeader(trajectoryHeader(opt));
    this.trajectory = [head.line];
    this.lastChk = head.chk;
    const sched: Schedule = s.schedule === 'constant' ? { kind: 'constant', lr: s.lr } : { kind: 'linear', lr: s.lr, warmupSteps: 0, totalSteps: s.steps };
    const mode = this.mode();
    // the data order of src/train/loop.ts's DataOrder: a seeded permutation per epoch
    let epoch = 0;
    let cursor = 0;
    let perm = new Rng(`data/${s.seed}/0`).permutation(this.train.length);
    const nextBatch = (): number[] => {
      const out: number[] = [];
      while (out.length < s.batchSize) {
        out.push(perm[cursor++]!);
        if (cursor >= this.train.length) {
          epoch++;
          cursor = 0;
          perm = new Rng(`data/${s.seed}/${epoch}`).permutation(this.train.length);
        }
      }
      return out;
    };
    let done = 0;
    let busyMs = 0;
    for (let step = 0; step < s.steps; step++) {
      if ((await hooks.between?.()) === 'stop') break;
      const t0 = performance.now();
      const lr = lrAt(sched, step);
      const req = buildLossRequest(nextBatch().map((i) => this.encoded(this.train[i]!)), mode, model, s.batchSize);
      const r = await opt.step(mezoStepSeed(s.seed, step), async () => (await model.loss(req)).loss, lr);
      const sealed = sealRecord(stepRecord(opt, step, r, lr), this.lastChk);
      this.trajectory.push(sealed.line);
      this.lastChk = sealed.chk!;
      const ms = performance.now() - t0;
      busyMs += ms;
      done = step + 1;
      hooks.onStep?.({ step: done, steps: s.steps, loss: r.lossPlus, projectedGrad: r.projectedGrad, lr, ms, stepsPerSecond: (1000 * done) / busyMs });
      if (s.evalEvery > 0 && done % s.evalEvery === 0 && done < s.steps) hooks.onEval?.(await this.evaluateDev(done, devLimit, s.batchSize));
    }
    if (done > 0) hooks.onEval?.(await this.evaluateDev(done, devLimit, s.batchSize));
    return done;
  }

  private adapterBytes(): { config: Uint8Array; weights: Uint8Array } {
    const model = this.requireModel();
    if (!model.adapters || !this.spec) throw new LmtuneError('CONFIG', 'no adapters yet: fine-tune first');
    const out: Record<string, Uint8Array> = {};
    for (const f of adapterFiles(this.spec, model.adapters)) {
      const sink = new MemorySink();
      f.write(sink);
      out[f.name] = sink.bytes();
    }
    return { config: out['adapter_config.json']!, weights: out['adapter_model.safetensors']! };
  }

  /** what the page downloads: the adapters now and at step 0 (PEFT layout) and the trajectory */
  downloads(): Record<string, Uint8Array> {
    if (!this.initialAdapters) throw new LmtuneError('CONFIG', 'nothing to download yet: fine-tune first');
    const now = this.adapterBytes();
    return {
      'adapter_config.json': now.config,
      'adapter_model.safetensors': now.weights,
      'initial_adapter_model.safetensors': this.initialAdapters.weights,
      'trajectory.jsonl': new TextEncoder().encode(this.trajectory.join('\n') + '\n'),
    };
  }
}
