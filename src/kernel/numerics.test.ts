/**
 * Numerics guards of eNTK kernels (issue 19): a model with a NaN/Inf weight is refused before any work
 * (its kernel would be all NaN), and a non-finite Jacobian entry or output stops the computation naming
 * the set, the example, the class and the parameter tensor (with the index inside it).
 */
import '../node/host.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Rng } from '../util/rng.ts';
import { LmtuneError } from '../util/errors.ts';
import { TransformerModel, loadTransformer } from '../heads/model.ts';
import { randomWeights, tinyConfig } from '../models/testing.ts';
import { loadExamples, loadTaskFile } from '../tasks/index.ts';
import { computeKernels, type JacobianSource } from './accumulate.ts';
import { computeKernelSets } from './compute.ts';
import { ModelJacobianSource, type KernelEncoding } from './model-source.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const numeric = (re: RegExp) => (e: unknown) => e instanceof LmtuneError && e.code === 'NUMERIC' && re.test(e.message);

test('kernel compute refuses a model holding a NaN weight before any work, naming the weight', async () => {
  const model = await loadTransformer(`${ROOT}assets/tiny-english-lm`, { threads: 1 });
  const task = loadTaskFile(`${ROOT}src/kernel/tasks/sst2-single-token.yaml`);
  const train = loadExamples(task, `${ROOT}assets/demo/sst2-train.jsonl`).slice(0, 2);
  model.tensor('transformer.h.1.mlp.c_proj.weight')[17] = Number.NaN;
  await assert.rejects(
    computeKernelSets({ model, task, sets: { train: { examples: train, file: null } }, formula: 'sgd', params: '\\.h\\.1\\.mlp', threads: 1 }),
    numeric(/^kernel: .*tiny-english-lm: weight 'transformer\.h\.1\.mlp\.c_proj\.weight' holds NaN at index 17$/),
  );
});

test('a non-finite Jacobian entry stops the kernel naming set, example, class and tensor[index]; a non-finite output too', async () => {
  const raw = tinyConfig('gpt2', { n_embd: 8, n_head: 2, vocab_size: 23 });
  const model = TransformerModel.fromWeights(raw, randomWeights(raw, 3), null, { backend: 'ref' });
  const rng = new Rng(5);
  const mk = (len: number, label: number) => ({ ids: Array.from({ length: len }, () => 3 + rng.int(18)), pos: len - 1, label });
  const enc: KernelEncoding = { labelIds: [5, 9], labelWords: [' a', ' b'], template: 'test', sets: { train: [mk(5, 0), mk(3, 1), mk(6, 1)], eval: [mk(4, 0)] } };
  const real = new ModelJacobianSource(model, enc, { params: model.allParamNames(), blockElements: 400, batch: 2 });
  // the block and column the injected value lands in, and the tensor the real source says holds it
  const block = 1;
  const column = 37;
  const poisoned = (what: 'rows' | 'f'): JacobianSource => ({
    classes: real.classes,
    sizes: real.sizes,
    blocks: real.blocks,
    paramAt: (b, c) => real.paramAt(b, c),
    async jacobian(set, start, count, b) {
      const got = await real.jacobian(set, start, count, b);
      // eval example 0, class 1
      if (set === 'eval' && b === block) {
        if (what === 'rows') got.rows[1 * real.blocks[b]! + column] = Number.POSITIVE_INFINITY;
        else got.f[1] = Number.NaN;
      }
      return got;
    },
  });
  const tensor = real.paramAt(block, column);
  assert.match(tensor, /^transformer\..+\[\d+\]$/);
  await assert.rejects(
    computeKernels(poisoned('rows'), { formula: 'sgd', batch: 2 }),
    numeric(new RegExp(`^kernel: the gradient of f_1 for eval example 0 holds Infinity in parameter block 1 \\('${tensor.replace(/[.[\]]/g, '\\$&')}'\\)$`)),
  );
  await assert.rejects(computeKernels(poisoned('f'), { formula: 'sgd', batch: 2 }), numeric(/^kernel: the output f_1 of eval example 0 is NaN$/));
});
