// What a run was, in words: the reproduce command parses back (through the CLI's own flag parser) into
// the very config the run stored, for runs that exercise every group of options; the facts name the
// method and the data sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTrainConfig } from '../cli/train.ts';
import { stableStringify } from '../node/fsx.ts';
import { methodName, runFacts, runKind, trainCommand } from './describe.ts';

/** splits a command line written by trainCommand (bare words and single-quoted words) */
function shellSplit(cmd: string): string[] {
  const out: string[] = [];
  for (const m of cmd.matchAll(/'((?:[^']|'\\'')*)'|(\S+)/g)) out.push(m[1] !== undefined ? m[1].replace(/'\\''/g, "'") : m[2]!);
  return out;
}

/** `--lora-r 8` → { loraR: '8' }; a flag followed by another flag is a boolean */
function flagsOf(words: string[]): Record<string, string | boolean> {
  const f: Record<string, string | boolean> = {};
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    assert.ok(w.startsWith('--'), `expected a flag at ${w}`);
    const key = w.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const next = words[i + 1];
    if (next === undefined || next.startsWith('--')) f[key] = true;
    else {
      f[key] = next;
      i++;
    }
  }
  return f;
}

const BASE = { model: '/m/tiny model', task: 'sst2', data: '/d/train.jsonl' };

const CASES: Record<string, string | boolean>[] = [
  { ...BASE },
  { ...BASE, optimizer: 'mezo', peft: 'lora', lr: '5e-3', zoEps: '0.02', zoSamples: '2', zoDist: 'rademacher', zoRule: 'momentum', momentum: '0.8', loraR: '4', loraAlpha: '8', loraTargets: 'c_attn,c_proj', maxSteps: '2000', batchSize: '64', evalEvery: '250', seed: '0' },
  { ...BASE, optimizer: 'sgdm', nesterov: true, momentumForm: 'ema', svag: '4', clip: '1.5', warmup: '10', weightDecay: '0.01', trainable: "ln_|it's", dev: '/d/dev.jsonl', numTrain: '500', devLimit: '100', objective: 'lm' },
  { ...BASE, optimizer: 'rmsprop', momentum: '0.95', eps: '1e-6', epsMode: 'inside', schedule: 'cosine', gradAccum: '4', maxLength: '128', threads: '2' },
  { ...BASE, optimizer: 'adamw', peft: 'prefix', prefixSlots: '10', prefixInit: 'random', beta1: '0.8', beta2: '0.99', zoEps: '0.5' },
  { ...BASE, task: 'chat', skipInvalid: true, truncation: 'left', maxLength: '64' },
];

test('trainCommand parses back into the same config, for every group of options', () => {
  for (const flags of CASES) {
    const cfg = buildTrainConfig(flags);
    const cmd = trainCommand(cfg, 'runs/x y');
    assert.ok(cmd.startsWith('lmtune train '), cmd);
    const words = shellSplit(cmd).slice(2);
    const parsed = flagsOf(words);
    assert.equal(parsed.out, 'runs/x y');
    delete parsed.out;
    assert.equal(stableStringify(buildTrainConfig(parsed)), stableStringify(cfg), cmd);
  }
});

test('methodName, runKind and the facts say what the run was', () => {
  const mezo = buildTrainConfig(CASES[1]!);
  assert.equal(methodName(mezo), 'MeZO (ZO-momentum) · LoRA r=4 α=8');
  assert.equal(runKind(mezo), 'mezo');
  const svag = buildTrainConfig(CASES[2]!);
  assert.equal(methodName(svag), 'sgdm · full (only /ln_|it\'s/) · SVAG ℓ=4');
  assert.equal(runKind(svag), 'svag');
  const facts = Object.fromEntries(runFacts(mezo, { sizes: { train: 1000, dev: 64 }, seconds: 150 }).map((f) => [f.label, f.value]));
  assert.equal(facts.data, '1000 train / 64 dev examples; /d/train.jsonl');
  assert.equal(facts.time, '2.5 min');
  assert.match(facts.optimizer!, /^lr 0\.005, ε 0\.02, 2 rademacher perturbations per step$/);
  assert.equal(facts.schedule, 'constant; 2000 steps of 64');
  // without recorded sizes the facts say how the data was drawn
  const drawn = Object.fromEntries(runFacts(buildTrainConfig(CASES[0]!)).map((f) => [f.label, f.value]));
  assert.equal(drawn.data, 'all remaining rows train / 64 dev drawn from the data examples; /d/train.jsonl');
  assert.equal(drawn.time, undefined);
});
