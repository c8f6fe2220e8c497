// The run options schema (src/train/options.ts over src/optim/options.ts): its defaults against the values
// docs/training.md and PyTorch give, a stored config.json read back unchanged for every optimizer × PEFT
// mode, commander's defaults equal to the schema's, and messages that name the flag, the --config key or
// the config.json key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LmtuneError } from '../util/errors.ts';
import { OPTIMIZERS, optimizerOptionsSchema, scalingConfig } from '../optim/options.ts';
import { TRAIN_FLAG_KEYS, TRAIN_FLAGS, trainConfigFromOptions, type TrainConfig, type TrainFlag } from './options.ts';
import { validateRunConfig } from './validate.ts';

const BASE = { model: '/m', task: 'sst2', data: '/d.jsonl' };

const isConfig = (re: RegExp) => (e: unknown) => e instanceof LmtuneError && e.code === 'CONFIG' && re.test(e.message);
const isCheckpoint = (re: RegExp) => (e: unknown) => e instanceof LmtuneError && e.code === 'CHECKPOINT' && re.test(e.message);

test('defaults: the whole config of a bare run, written out by hand', () => {
  const expected: TrainConfig = {
    version: 1,
    model: '/m',
    task: 'sst2',
    data: '/d.jsonl',
    dev: null,
    numTrain: null,
    numDev: 64,
    devLimit: 500,
    optimizer: { name: 'adam', lr: 1e-5, weightDecay: 0, momentum: 0.9, momentumForm: 'pytorch', nesterov: false, beta1: 0.9, beta2: 0.999, eps: 1e-8, epsMode: 'outside', zoEps: 1e-3, zoSamples: 1, zoDistribution: 'gaussian', zoRule: 'sgd', zoObjective: 'ce' },
    schedule: 'linear',
    warmupSteps: 0,
    maxSteps: 100,
    batchSize: 8,
    gradAccum: 1,
    clipNorm: null,
    evalEvery: 20,
    saveEvery: 10,
    seed: 42,
    peft: { kind: 'full' },
    objective: 'auto',
    svag: 1,
    maxLength: null,
    threads: null,
  };
  assert.deepEqual(trainConfigFromOptions(BASE), expected);
});

test('defaults that depend on the optimizer, the PEFT mode and the run length', () => {
  const lr = Object.fromEntries(OPTIMIZERS.map((o) => [o, trainConfigFromOptions({ ...BASE, optimizer: o }).optimizer.lr]));
  assert.deepEqual(lr, { sgd: 1e-3, sgdm: 1e-3, rmsprop: 1e-4, adam: 1e-5, adamw: 1e-5, mezo: 1e-6 });
  // RMSprop's α is PyTorch's 0.99; SGDM's β 0.9
  assert.equal(trainConfigFromOptions({ ...BASE, optimizer: 'rmsprop' }).optimizer.momentum, 0.99);
  assert.equal(trainConfigFromOptions({ ...BASE, optimizer: 'sgdm' }).optimizer.momentum, 0.9);
  assert.equal(trainConfigFromOptions({ ...BASE, optimizer: 'mezo' }).schedule, 'constant');
  // MeZO's ε by PEFT mode (MeZO paper, Table 16)
  const zoEps = Object.fromEntries((['full', 'lora', 'prefix'] as const).map((p) => [p, trainConfigFromOptions({ ...BASE, optimizer: 'mezo', peft: p }).optimizer.zoEps]));
  assert.deepEqual(zoEps, { full: 1e-3, lora: 1e-2, prefix: 1e-1 });
  assert.deepEqual(trainConfigFromOptions({ ...BASE, peft: 'lora' }).peft, { kind: 'lora', rank: 8, alpha: 16, dropout: 0, targets: [] });
  assert.deepEqual(trainConfigFromOptions({ ...BASE, peft: 'prefix', prefixInit: 'random' }).peft, { kind: 'prefix', slots: 5, initByRealActivations: false });
  const c = trainConfigFromOptions({ ...BASE, maxSteps: '7' });
  assert.deepEqual([c.evalEvery, c.saveEvery], [1, 1]);
  assert.equal(trainConfigFromOptions({ ...BASE, clip: '0' }).clipNorm, null);
  // the optimizer union alone: each variant's own defaults
  const rms = optimizerOptionsSchema.parse({ name: 'rmsprop', zoEps: 1e-3 });
  assert.deepEqual([rms.lr, rms.momentum, rms.beta2], [1e-4, 0.99, 0.999]);
});

test("commander's defaults are the schema's: giving each one changes nothing", () => {
  for (const optimizer of OPTIMIZERS) {
    for (const peft of ['full', 'lora', 'prefix']) {
      const bare = trainConfigFromOptions({ ...BASE, optimizer, peft });
      for (const k of TRAIN_FLAG_KEYS) {
        const d = (TRAIN_FLAGS[k] as TrainFlag).default;
        if (d === undefined || k === 'optimizer' || k === 'peft') continue;
        assert.deepEqual(trainConfigFromOptions({ ...BASE, optimizer, peft, [k]: d }), bare, `${optimizer} ${peft} ${TRAIN_FLAGS[k].flags} ${d}`);
      }
    }
  }
});

test('a stored config.json reads back unchanged, for every optimizer and PEFT mode', () => {
  for (const optimizer of OPTIMIZERS) {
    for (const peft of ['full', 'lora', 'prefix']) {
      const cfg = trainConfigFromOptions({ ...BASE, optimizer, peft, ...(optimizer === 'mezo' ? { zoMethod: 'fzoo' } : {}), ...(peft === 'full' ? { trainable: 'ln_' } : {}), loraTargets: 'c_attn,c_proj' });
      const back = validateRunConfig(JSON.parse(JSON.stringify(cfg)), 'runs/x/config.json');
      assert.deepEqual(back, cfg, `${optimizer} ${peft}`);
    }
  }
  // keys the schema does not know pass through
  const cfg = trainConfigFromOptions(BASE);
  assert.equal((validateRunConfig({ ...cfg, futureOption: 3 }, 'c.json') as unknown as { futureOption: number }).futureOption, 3);
});

test('flag messages name the flag and show the value as typed', () => {
  assert.throws(() => trainConfigFromOptions({ ...BASE, lr: '-1' }), isConfig(/^--lr must be >= 0, got -1$/));
  assert.throws(() => trainConfigFromOptions({ ...BASE, lr: 'fast' }), isConfig(/^--lr expects a number, got "fast"$/));
  assert.throws(() => trainConfigFromOptions({ ...BASE, batchSize: '2.5' }), isConfig(/^--batch-size must be an integer, got 2\.5$/));
  assert.throws(() => trainConfigFromOptions({ ...BASE, optimizer: 'lion' }), isConfig(/^--optimizer must be one of sgd, sgdm, rmsprop, adam, adamw, mezo; got 'lion'$/));
  assert.throws(() => trainConfigFromOptions({ ...BASE, warmup: '200' }), isConfig(/^--warmup must be <= 100, got 200$/));
  assert.throws(() => trainConfigFromOptions({ ...BASE, zoMethod: 'fzoo' }), isConfig(/^--zo-method applies to --optimizer mezo, not adam$/));
  assert.throws(() => trainConfigFromOptions({ ...BASE, model: '' }), isConfig(/^--model is required$/));
  assert.throws(() => trainConfigFromOptions({ ...BASE, trainable: '(' }), isConfig(/^--trainable: '\(' is not a valid regular expression$/));
  assert.throws(() => trainConfigFromOptions({ ...BASE, nesterov: 'yes' }), isConfig(/^--nesterov must be true or false, got yes$/));
  // every problem at once, in the schema's order
  assert.throws(() => trainConfigFromOptions({ ...BASE, lr: 'x', seed: '-1' }), isConfig(/^--lr expects a number, got "x"; --seed must be >= 0, got -1$/));
  // a --config file's key, named by the caller
  assert.throws(() => trainConfigFromOptions({ ...BASE, lr: '-1' }, (k) => `run.yaml: "${k}"`), isConfig(/^run\.yaml: "lr" must be >= 0, got -1$/));
});

test("config.json messages name the file and the key's path", () => {
  const cfg = trainConfigFromOptions(BASE);
  const bad = (edit: (c: Record<string, unknown> & { optimizer: Record<string, unknown>; peft: Record<string, unknown> }) => void): unknown => {
    const c = JSON.parse(JSON.stringify(cfg)) as Record<string, unknown> & { optimizer: Record<string, unknown>; peft: Record<string, unknown> };
    edit(c);
    return c;
  };
  const f = 'runs/x/config.json';
  assert.throws(() => validateRunConfig(bad((c) => (c.optimizer.lr = -1)), f), isCheckpoint(/^runs\/x\/config\.json: "optimizer\.lr" is -1, expected a finite number in \[0, Infinity\]$/));
  assert.throws(() => validateRunConfig(bad((c) => (c.optimizer.name = 'lion')), f), isCheckpoint(/"optimizer\.name" is "lion", expected one of sgd, sgdm, rmsprop, adam, adamw, mezo$/));
  assert.throws(() => validateRunConfig(bad((c) => delete c.optimizer.beta2), f), isCheckpoint(/"optimizer\.beta2" is missing, expected a finite number in \[0, 1\]$/));
  assert.throws(() => validateRunConfig(bad((c) => (c.optimizer.zoMethod = 'fzoo')), f), isCheckpoint(/"optimizer\.zoMethod" is "fzoo", expected no value \(applies to --optimizer mezo, not adam\)$/));
  assert.throws(() => validateRunConfig(bad((c) => (c.peft.kind = 'ia3')), f), isCheckpoint(/"peft\.kind" is "ia3", expected one of full, lora, prefix$/));
  assert.throws(() => validateRunConfig(bad((c) => (c.warmupSteps = 101)), f), isCheckpoint(/"warmupSteps" is 101, expected an integer in \[0, 100\]$/));
  assert.throws(() => validateRunConfig(bad((c) => (c.batchSize = '4')), f), isCheckpoint(/"batchSize" is "4", expected an integer in \[1, 16777216\]$/));
  assert.throws(() => validateRunConfig(bad((c) => (c.optimizer = 'adam' as unknown as Record<string, unknown>)), f), isCheckpoint(/"optimizer" is "adam", expected an object$/));
  assert.throws(() => validateRunConfig(bad((c) => (c.version = 2)), f), isCheckpoint(/"version" is 2, expected 1$/));
});

test("scalingConfig speaks the scaling rules' vocabulary", () => {
  const c = trainConfigFromOptions({ ...BASE, optimizer: 'rmsprop', epsMode: 'inside', eps: '1e-6' });
  assert.deepEqual(scalingConfig(c.optimizer, 8), { optimizer: 'rmsprop', lr: 1e-4, batch: 8, beta2: 0.99, eps: 1e-6, epsPlacement: 'insideSqrt', weightDecay: 0 });
  const a = trainConfigFromOptions({ ...BASE, optimizer: 'adamw' });
  assert.equal((scalingConfig(a.optimizer, 8) as { epsPlacement: string; wdMode: string }).epsPlacement, 'outsideSqrt');
});
