/**
 * Refusing up front what cannot fit: a model whose f32 weights, plus the gradients and optimizer state a
 * training run keeps per trainable weight, exceed the memory the host says is available. Counted from
 * the safetensors headers (no tensor data is read), so a 70B checkpoint is refused in milliseconds with
 * the numbers, instead of swapping the machine to a halt or being killed by the OOM killer minutes in.
 *
 * The core never asks the OS: the budget is a number set at the edge (`configureMemory`; Node fills it
 * from os.freemem() or LMTUNE_MEMORY_MB in src/node/runtime.ts). No budget: no check (a page, tests).
 * The estimate is a lower bound (activations, graphs and copies come on top), so a refusal is certain.
 */
import { LmtuneError } from '../util/errors.ts';

let budget: { bytes: number; source: string } | null = null;

/**
 * The memory a command may use, and where the number came from (messages); null turns the check off.
 * Never throws (the edge calls it before any command's error handling): a bad number is reported by the
 * first check, as a CONFIG error naming its source.
 */
export function configureMemory(b: { bytes: number; source: string } | null): void {
  budget = b;
}

export function memoryBudget(): { bytes: number; source: string } | null {
  return budget;
}

/** What a training run keeps per trainable weight besides the weight itself (in f32 copies). */
export interface TrainingFootprint {
  /** e.g. "Adam" (messages) */
  what: string;
  /** f32 values per trainable weight: gradients, accumulators, optimizer moments */
  copiesPerTrainable: number;
  /** every weight is trainable (full fine-tuning); otherwise adapters, whose size is not known yet and is ignored */
  full: boolean;
}

/** copies per trainable weight of an optimizer's state: Adam's two moments, momentum's one, … */
export function optimizerSlots(name: string): number {
  if (name === 'adam' || name === 'adamw') return 2;
  if (name === 'sgdm' || name === 'momentum' || name === 'rmsprop' || name === 'hizoo') return 1;
  return 0;
}

export interface MemoryEstimate {
  weightBytes: number;
  stateBytes: number;
  totalBytes: number;
}

export function estimateMemory(storedElements: number, training?: TrainingFootprint): MemoryEstimate {
  const weightBytes = 4 * storedElements; // every dtype is held as f32
  const stateBytes = training && training.full ? 4 * storedElements * training.copiesPerTrainable : 0;
  return { weightBytes, stateBytes, totalBytes: weightBytes + stateBytes };
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 3 : 1)} GiB`;
}

/** Throws RESOURCE when `est` exceeds `available`, with both numbers and what makes up the estimate. */
export function checkMemory(where: string, storedElements: number, est: MemoryEstimate, available: { bytes: number; source: string }, training?: TrainingFootprint): void {
  if (!(Number.isFinite(available.bytes) && available.bytes > 0)) throw new LmtuneError('CONFIG', `${available.source}: the available memory must be a positive number, got ${available.bytes}`, 'LMTUNE_MEMORY_MB takes megabytes (e.g. 16000), or "off" to skip the check');
  if (est.totalBytes <= available.bytes) return;
  const parts = [`${storedElements.toLocaleString('en-US')} weights × 4 bytes (f32) = ${gib(est.weightBytes)}`];
  if (est.stateBytes > 0 && training) parts.push(`${training.what}: ${training.copiesPerTrainable} f32 value(s) per trainable weight = ${gib(est.stateBytes)}`);
  throw new LmtuneError(
    'RESOURCE',
    `${where}: needs at least ${gib(est.totalBytes)} (${parts.join(' + ')}), but ${gib(available.bytes)} is available (${available.source}); refused before loading`,
    training?.full ? 'use --peft lora (adapters need a fraction of the state), MeZO (no optimizer state), or a machine with more memory; LMTUNE_MEMORY_MB overrides the available memory' : 'use a smaller model or a machine with more memory; LMTUNE_MEMORY_MB overrides the available memory',
  );
}
