/**
 * `lmtune kernel compute | solve` on the embedded model: the folder's kernels equal an in-memory
 * computation with a different parameter blocking, an interrupted computation resumes to the same bytes,
 * `solve --json` reports what the library computes, and bad input gets errors naming the flag, file or word.
 */
import '../node/host.ts';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { loadTransformer } from '../heads/model.ts';
import { loadExamples, loadTaskFile } from '../tasks/index.ts';
import { computeKernelSets, problemFromTensors } from '../kernel/compute.ts';
import { solve } from '../kernel/solvers.ts';
import { KERNEL_FILE, PARTIAL_FILE, readKernelFolder } from '../kernel/store.ts';
import { register } from './kernel.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MODEL = join(ROOT, 'assets', 'tiny-english-lm');
const TASK = join(ROOT, 'src', 'kernel', 'tasks', 'sst2-single-token.yaml');
const TRAIN = join(ROOT, 'assets', 'demo', 'sst2-train.jsonl');
const DEV = join(ROOT, 'assets', 'demo', 'sst2-dev.jsonl');
const tmp = mkdtempSync(join(tmpdir(), 'lmtune-kernel-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

async function cli(args: string[]): Promise<string> {
  const program = new Command();
  program.exitOverride();
  register(program);
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    await program.parseAsync(['node', 'lmtune', 'kernel', ...args]);
  } finally {
    process.stdout.write = orig;
    process.stderr.write = origErr;
  }
  return out;
}

const base = (out: string, extra: string[] = []) => ['compute', '--model', MODEL, '--task', TASK, '--train', TRAIN, '--limit-train', '6', '--eval', DEV, '--limit-eval', '4', '--batch', '4', '--out', out, ...extra];

test('kernel compute writes float64 kernels equal to a differently blocked computation; solve --json reports the library result', async () => {
  const out = join(tmp, 'sgd');
  await cli(base(out, ['--formula', 'sgd']));
  const f = readKernelFolder(out);
  assert.equal(f.meta.params.count, 1325824);
  assert.deepEqual(f.tensors.train_train!.shape, [6, 2, 6, 2]);
  assert.deepEqual(f.tensors.train_eval!.shape, [6, 2, 4, 2]);
  assert.equal(f.tensors.train_train!.dtype, 'F64');
  assert.equal(f.tensors.labels_eval!.dtype, 'I64');
  // the same kernel in ~8 parameter blocks, computed in memory
  const task = loadTaskFile(TASK);
  const model = await loadTransformer(MODEL, { threads: 1 });
  const res = await computeKernelSets({
    model, task, formula: 'sgd', batch: 3, memBytes: 8 * 12 * 200_000, threads: 1,
    sets: { train: { examples: loadExamples(task, TRAIN).slice(0, 6), file: null }, eval: { examples: loadExamples(task, DEV).slice(0, 4), file: null } },
  });
  assert.ok(res.meta.blocks > 5, `${res.meta.blocks} blocks`);
  for (const name of ['train_train', 'train_eval']) {
    const a = f.tensors[name]!.data as Float64Array;
    const b = res.kernels.kernels[name]!;
    let err = 0;
    let mx = 0;
    for (let i = 0; i < a.length; i++) {
      err = Math.max(err, Math.abs(a[i]! - b[i]!));
      mx = Math.max(mx, Math.abs(b[i]!));
    }
    assert.ok(err / mx < 1e-5, `${name}: relative difference ${err / mx} between blockings`);
  }
  const p = problemFromTensors(f.tensors, 2, 'eval', out);
  const json = JSON.parse(await cli(['solve', '--kernels', out, '--solver', 'lstsq', '--reg', '1e-3', '--json'])) as Record<string, unknown>;
  const lib = solve('lstsq', p, { reg: 1e-3 });
  assert.deepEqual([json.metric, json.value, json.n, json.solver], ['accuracy', lib.value, 4, 'lstsq']);
  let correct = 0;
  for (let j = 0; j < 4; j++) if ((lib.predictions[2 * j + 1]! > lib.predictions[2 * j]! ? 1 : 0) === p.labelsEval[j]) correct++;
  assert.equal(lib.value, correct / 4);
  // solve on an sgd kernel with the asym solver names the formula
  await assert.rejects(cli(['solve', '--kernels', out, '--solver', 'asym']), (e: unknown) => e instanceof LmtuneError && /asymmetric-signgd kernel; .* holds sgd/.test(e.message));
  // --grid without dev kernels
  await assert.rejects(cli(['solve', '--kernels', out, '--grid']), (e: unknown) => e instanceof LmtuneError && /no tensor 'labels_dev'/.test(e.message) && /--dev FILE/.test(e.hint ?? ''));
  // a meta.json from another computation is caught
  const mixed = join(tmp, 'mixed');
  await cli(base(mixed, ['--formula', 'signgd']));
  writeFileSync(join(mixed, 'meta.json'), readFileSync(join(out, 'meta.json')));
  await assert.rejects(cli(['solve', '--kernels', mixed]), (e: unknown) => e instanceof LmtuneError && /holds signgd kernels of model .* but .*meta\.json says sgd/.test(e.message));
  // a finished folder is not overwritten
  await assert.rejects(cli(base(out, ['--formula', 'sgd'])), /already holds finished kernels/);
});

test('an interrupted computation resumes from its finished blocks to the same kernels; other flags are refused', async () => {
  const task = loadTaskFile(TASK);
  const model = await loadTransformer(MODEL, { threads: 1 });
  const sets = { train: { examples: loadExamples(task, TRAIN).slice(0, 4), file: TRAIN }, eval: { examples: loadExamples(task, DEV).slice(0, 3), file: DEV } };
  const req = { model, task, sets, formula: 'asymmetric-signgd' as const, binary: true, batch: 4, memBytes: 8 * 4 * 400_000, threads: 1 };
  const whole = await computeKernelSets({ ...req, out: join(tmp, 'whole') });
  assert.ok(whole.meta.blocks >= 3);
  const out = join(tmp, 'resumed');
  await assert.rejects(
    computeKernelSets({ ...req, out, onProgress: (p) => { if (p.block === 2) throw new Error('killed'); } }),
    /killed/,
  );
  assert.ok(existsSync(join(out, PARTIAL_FILE)));
  await assert.rejects(computeKernelSets({ ...req, formula: 'signgd', binary: true, out }), /belongs to a different computation/);
  let firstBlock = -1;
  await computeKernelSets({ ...req, out, onProgress: (p) => { if (firstBlock < 0) firstBlock = p.block; } });
  assert.equal(firstBlock, 2, 'resumed at the first unfinished block');
  assert.ok(!existsSync(join(out, PARTIAL_FILE)));
  assert.deepEqual(readFileSync(join(out, KERNEL_FILE)), readFileSync(join(tmp, 'whole', KERNEL_FILE)));
});

test('bad input: multi-token label words, labels outside the task, a folder lmtune did not make, asym without --binary', async () => {
  // the builtin SST-2 verbalizer: " terrible" is two tokens in the embedded vocabulary
  await assert.rejects(
    cli(['compute', '--model', MODEL, '--task', 'sst2', '--train', TRAIN, '--limit-train', '2', '--formula', 'sgd', '--out', join(tmp, 'x')]),
    (e: unknown) => e instanceof LmtuneError && /label word "terrible" is 2 tokens/.test(e.message),
  );
  const bad = join(tmp, 'bad.jsonl');
  writeFileSync(bad, '{"sentence": "fine", "label": 1}\n{"sentence": "odd", "label": 7}\n');
  await assert.rejects(cli(base(join(tmp, 'y'), ['--formula', 'sgd', '--eval', bad])), (e: unknown) => e instanceof LmtuneError && e.message.includes(`${bad}:2`));
  writeFileSync(join(tmp, 'note.txt'), 'x');
  await assert.rejects(cli(base(tmp, ['--formula', 'sgd'])), /not empty and was not made by lmtune/);
  await assert.rejects(cli(base(join(tmp, 'z'), ['--formula', 'asymmetric-signgd'])), /needs --binary/);
  await assert.rejects(cli(base(join(tmp, 'w'), ['--formula', 'ntk'])), /--formula must be one of sgd, signgd, asymmetric-signgd/);
});
