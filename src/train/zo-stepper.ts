/**
 * A training step with a ZO registry method other than the MeZO rules (src/optim/zo/registry.ts):
 * one batch per step, the method's forward passes on it, the step's record appended to
 * `trajectory.jsonl` (ZO trajectory format, src/optim/zo/trajectory.ts), and `zo-method.json` in the run
 * folder saying what the method costs (forward passes per step, memory beyond inference).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import type { TransformerModel } from '../heads/model.ts';
import { mezoReferenceDecayFilter } from '../optim/decay.ts';
import { mezoStepSeed } from '../optim/zstream.ts';
import type { ZoMethod, ZoSettings } from '../optim/zo/method.ts';
import { DEFAULT_ZO_SETTINGS } from '../optim/zo/method.ts';
import { createZoMethod, ZO_METHOD_INFO, type ZoMethodName } from '../optim/zo/registry.ts';
import { zoTrajectoryHeader } from '../optim/zo/trajectory.ts';
import { ZoTrajectoryWriter } from './zo-trajectory-file.ts';
import type { TrainConfig } from './options.ts';
import type { BatchRequest, StepResult, Stepper } from './stepper.ts';

/** the run's ZO settings from its config */
export function zoSettings(cfg: TrainConfig): ZoSettings {
  const o = cfg.optimizer;
  return { ...DEFAULT_ZO_SETTINGS, eps: o.zoEps, distribution: o.zoDistribution, samples: o.zoSamples, weightDecay: o.weightDecay, decayFilter: mezoReferenceDecayFilter, momentum: o.momentum, beta1: o.beta1, beta2: o.beta2, adamEps: o.eps };
}

export class ZoMethodStepper implements Stepper {
  private readonly method: ZoMethod;
  private readonly settings: ZoSettings;
  private writer: ZoTrajectoryWriter | null = null;
  private readonly path: string;

  constructor(
    private readonly cfg: TrainConfig,
    private readonly model: TransformerModel,
    private readonly runDir: string,
    name: ZoMethodName,
  ) {
    if (cfg.optimizer.zoObjective !== 'ce') throw new LmtuneError('CONFIG', `--zo-method ${name} supports --zo-objective ce only (got ${cfg.optimizer.zoObjective})`, 'use --zo-method sgd|momentum|adam for accuracy or F1 objectives');
    this.settings = zoSettings(cfg);
    this.method = createZoMethod(name, model.trainableParams(), this.settings);
    this.path = join(runDir, 'trajectory.jsonl');
    const info = ZO_METHOD_INFO[name];
    atomicWrite(join(runDir, 'zo-method.json'), stableStringify({ method: name, paper: info.paper, forwardPassesPerStep: this.method.passesPerStep(), extraMemory: info.memory, extraMemoryBytes: this.method.stateBytes(), unbiased: info.unbiased }));
  }

  async step(next: () => BatchRequest, step: number, lr: number): Promise<StepResult> {
    if (!this.writer) this.writer = new ZoTrajectoryWriter(this.path, zoTrajectoryHeader(this.method, this.settings));
    const req = next();
    const r = await this.method.step(mezoStepSeed(this.cfg.seed, step), async () => (await this.model.loss(req)).loss, lr);
    this.writer.append({ step, ...r.record });
    return { loss: r.loss, extra: { forward_passes: r.forwardPasses } };
  }

  stateTensors(): Map<string, Float32Array> {
    return new Map([...this.method.stateTensors()].map(([k, v]) => [k, Float32Array.from(v)]));
  }
  stateScalars(): Record<string, number> {
    return this.method.stateScalars();
  }
  extraState(): Record<string, number> {
    return {};
  }
  loadState(t: ReadonlyMap<string, Float32Array>, s: Readonly<Record<string, number>>): void {
    if (t.size || Object.keys(s).length) this.method.loadState(t, s);
  }
  truncate(step: number): void {
    if (existsSync(this.path)) this.writer = ZoTrajectoryWriter.resume(this.path, step);
  }
  flush(): void {}
}
