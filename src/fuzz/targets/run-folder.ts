/**
 * Run folders: config.json and checkpoint/state.json (+ the checkpoint's tensors) of a MeZO/Adam run,
 * with keys edited (negative or past-the-end steps, wrong types, missing optimizer settings, unknown
 * enums) or the files damaged as text; read as `lmtune train --resume` reads them before any work:
 * `readRunConfig` then `readCheckpoint` (validated against the run's max steps).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { buildTrainConfig } from '../../cli/train.ts';
import { writeSafetensors } from '../../node/safetensors-file.ts';
import { readCheckpoint } from '../../train/checkpoint.ts';
import { readRunConfig } from '../../train/loop.ts';
import { documentEdits, mutateJsonText, rarely, type DocumentEdits, type Json } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';

export interface RunFolderInput {
  optimizer: 'adam' | 'mezo';
  config: DocumentEdits | null;
  state: DocumentEdits;
  optimizerFile: boolean;
}

export const runFolderTarget: FuzzTarget<RunFolderInput> = {
  name: 'run',
  description: "a run folder's config.json + checkpoint/state.json through readRunConfig + readCheckpoint (what --resume reads first)",
  input: fc.record({ optimizer: fc.constantFrom('adam' as const, 'mezo' as const), config: rarely(documentEdits), state: documentEdits, optimizerFile: fc.boolean() }),
  prepare(i, dir) {
    const cfg = buildTrainConfig({ model: '/models/m', task: 'sst2', data: '/data/train.jsonl', optimizer: i.optimizer, maxSteps: '20', batchSize: '4', seed: '3' });
    const state: Json = { step: 10, data: { epoch: 1, cursor: 3 }, best: { value: 0.75, step: 10 }, optimizerScalars: i.optimizer === 'adam' ? { 'step:w': 10 } : {}, extra: { sde_time: 0.5 } };
    writeFileSync(join(dir, 'config.json'), i.config ? mutateJsonText(cfg as unknown as Json, i.config, 2) : JSON.stringify(cfg, null, 2));
    const ck = join(dir, 'checkpoint');
    mkdirSync(ck);
    writeFileSync(join(ck, 'state.json'), mutateJsonText(state, i.state, 2));
    writeSafetensors(join(ck, 'trainable.safetensors'), new Map([['w', { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }]]));
    if (i.optimizerFile) writeSafetensors(join(ck, 'optimizer.safetensors'), new Map([['m:w', { shape: [4], data: new Float32Array(4) }]]));
  },
  async run(_i, dir) {
    const ck = join(dir, 'checkpoint');
    const run = readRunConfig(dir);
    const c = readCheckpoint(ck, run.maxSteps);
    if (c && (c.state.step > run.maxSteps || c.state.step < 0 || !Number.isInteger(c.state.data.cursor))) throw new Error(`silent garbage: state ${JSON.stringify(c.state)} accepted`);
  },
};
