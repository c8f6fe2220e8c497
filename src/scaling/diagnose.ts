/**
 * `lmtune scale diagnose`: measure gradient noise and signal on a real model and task at its current
 * weights (K minibatch gradients of the trainable parameters), and say whether moving from batch B to
 * κB stays inside the SDE regime where the linear / square-root scaling rules hold.
 */
import { Rng } from '../util/rng.ts';
import { loadTransformer } from '../heads/model.ts';
import { attachPeft } from '../peft/index.ts';
import type { PeftSpec } from '../peft/spec.ts';
import { loadExamples, resolveTask } from '../tasks/index.ts';
import { buildLossRequest, defaultObjective, encodeExample } from '../train/batches.ts';
import { diagnoseBatchChange, type Diagnosis } from './noise.ts';

export interface DiagnoseRun {
  model: string;
  task: string;
  data: string;
  batch: number;
  toBatch: number;
  K: number;
  seed: number;
  peft: PeftSpec;
}

export async function diagnoseModel(o: DiagnoseRun, onGradient?: (k: number) => void): Promise<Diagnosis & { trainable: number }> {
  const model = await loadTransformer(o.model);
  await attachPeft(model, o.peft, o.seed);
  const task = resolveTask(o.task);
  const examples = loadExamples(task, o.data);
  const mode = defaultObjective(task, model);
  const names = model.trainableNames();
  const rng = new Rng(o.seed).fork('diagnose');
  const trainable = names.reduce((s, n) => s + model.tensor(n).length, 0);
  const diag = await diagnoseBatchChange(
    async (k) => {
      const idx = Array.from({ length: o.batch }, () => rng.int(examples.length));
      const req = buildLossRequest(idx.map((i) => encodeExample(task, examples[i]!, model)), mode, model, o.batch);
      const r = await model.loss(req, names);
      const flat = new Float32Array(trainable);
      let off = 0;
      for (const n of names) {
        const g = r.grads!.get(n)!;
        flat.set(g, off);
        off += g.length;
      }
      onGradient?.(k);
      return flat;
    },
    { batch: o.batch, toBatch: o.toBatch, K: o.K },
  );
  return { ...diag, trainable };
}
