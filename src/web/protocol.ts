/**
 * The messages between the fine-tuning page (src/web/page.js) and its worker (worker.ts). All work is in
 * the worker; the page only sends requests and draws what comes back, so it stays responsive.
 */
import type { DevEval, ModelInfo, RunInfo, StepEvent, TuneSettings } from './session.ts';

export type Request =
  | { type: 'load-embedded-model' }
  /** before the weights are read: will the model described by this config.json fit the tab? */
  | { type: 'check-model'; label: string; config: string; budgetBytes: number }
  | { type: 'load-model'; label: string; files: Record<string, ArrayBuffer> }
  | { type: 'set-task'; name: string }
  /** a run folder's files by their path in it (config.json, checkpoint/…, trajectory.jsonl, logs) */
  | { type: 'load-run'; label: string; files: Record<string, ArrayBuffer> }
  | { type: 'continue' }
  | { type: 'load-embedded-data' }
  | { type: 'load-data'; which: 'train' | 'dev'; name: string; text: string }
  | { type: 'evaluate'; limit: number; shots: number }
  | { type: 'train'; settings: TuneSettings; devLimit: number }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'stop' }
  | { type: 'download' };

export type Reply =
  | { type: 'ready'; threads: number; isolated: boolean; tasks: { name: string; kind: string; labels: string[] }[] }
  | { type: 'model-fits'; label: string; params: number; needBytes: number }
  | { type: 'task'; name: string; labels: string[] }
  | { type: 'run'; info: RunInfo }
  | { type: 'busy'; what: string }
  | { type: 'model'; info: ModelInfo }
  | { type: 'data'; which: 'train' | 'dev'; name: string; n: number }
  | { type: 'eval'; eval: DevEval }
  | { type: 'step'; event: StepEvent }
  | { type: 'paused'; paused: boolean }
  | { type: 'trained'; steps: number; stopped: boolean }
  | { type: 'files'; files: Record<string, ArrayBuffer> }
  /** the worker's wasm heap (onnxruntime's working memory; it only grows) */
  | { type: 'memory'; wasmBytes: number }
  /** what failed (the request), the message naming file:line or tensor, and what to do */
  | { type: 'error'; during: string; code: string; message: string; hint?: string };

/** the embedded model's files, served next to the page */
export const EMBEDDED_MODEL = { dir: 'assets/tiny-english-lm', label: 'tiny-english-lm (embedded)', files: ['config.json', 'vocab.json', 'merges.txt', 'model.safetensors'] };
export const EMBEDDED_DATA = { train: 'assets/demo/sst2-train.jsonl', dev: 'assets/demo/sst2-dev.jsonl' };
