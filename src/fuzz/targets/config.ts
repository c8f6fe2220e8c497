/**
 * config.json: each family's tiny config with values replaced, removed or added (wrong types, negative,
 * huge, fractional, unicode), duplicate keys, BOM/CRLF, cut at any byte; read with `loadModelConfig`,
 * then the tensor contract (`expectedTensors`, `parameterCount`) every loader derives from it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { expectedTensors, loadModelConfig, parameterCount, type ModelFamily } from '../../models/config.ts';
import { tinyConfig } from '../../models/testing.ts';
import { documentEdits, mutateJsonText, type DocumentEdits, type Json } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';
import { diskFolder } from '../../node/folder.ts';

const FAMILIES: ModelFamily[] = ['gpt2', 'opt', 'llama', 'gpt_neox', 'roberta'];

export interface ConfigInput {
  family: ModelFamily;
  edits: DocumentEdits;
}

export const configTarget: FuzzTarget<ConfigInput> = {
  name: 'config',
  description: "a model folder's config.json through loadModelConfig + the tensor contract",
  input: fc.record({ family: fc.constantFrom(...FAMILIES), edits: documentEdits }),
  prepare(i, dir) {
    writeFileSync(join(dir, 'config.json'), mutateJsonText(tinyConfig(i.family) as Json, i.edits, 2));
  },
  async run(i, dir) {
    const cfg = loadModelConfig(diskFolder(dir));
    const tensors = expectedTensors(cfg);
    const n = parameterCount(cfg);
    if (!Number.isFinite(n) || tensors.some((t) => t.shape.some((d) => !Number.isSafeInteger(d) || d < 0))) {
      throw new Error(`silent garbage: config accepted with tensor shapes ${JSON.stringify(tensors.map((t) => t.shape))}`);
    }
  },
};
