import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { describeCheckpoint } from '../models/checkpoint.ts';
import { register, renderInfo } from './info.ts';

const M = '/work/shared/data/models';

/** Runs `lmtune info …` through commander and returns what it wrote to stdout. */
async function runInfo(args: string[]): Promise<string> {
  const program = new Command();
  program.exitOverride();
  register(program);
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['node', 'lmtune', 'info', ...args]);
  } finally {
    process.stdout.write = orig;
  }
  return out;
}

test('info on the two real tiny GPT-2 checkpoints: parameter counts from the MANIFEST', async () => {
  for (const [dir, params, vocab] of [['tiny-random-gpt2', 111_968, 1000], ['gpt2-fullvocab-n_embd2', 102_640, 50257]] as const) {
    const info = await describeCheckpoint(join(M, dir));
    assert.equal(info.family, 'gpt2');
    assert.equal(info.parameters, params);
    assert.equal(info.expectedParameters, params);
    assert.deepEqual(info.dtypes, { F32: params });
    assert.equal(info.tensorCheck, 'ok');
    assert.ok(!('error' in info.tokenizer));
    assert.equal('vocabSize' in info.tokenizer && info.tokenizer.vocabSize, vocab);
    const json = JSON.parse(await runInfo([join(M, dir), '--json']));
    assert.equal(json.parameters, params);
    assert.equal(json.architectures[0], 'GPT2LMHeadModel');
    const table = await runInfo([join(M, dir)]);
    assert.match(table, new RegExp(`parameters\\s+${params.toLocaleString('en-US')} stored`));
  }
  const tiny = await describeCheckpoint(join(M, 'tiny-random-gpt2'));
  assert.equal(tiny.config.intermediateSize, 128);
  assert.equal(tiny.config.numLayers, 5);
  // the config's bos 98 vs the tokenizer's 0 is reported, not "fixed"
  assert.ok(tiny.notes.some((n) => n.includes('bos_token_id 98') && n.includes('(0)')));
  assert.match(renderInfo(tiny), /bos \/ eos\s+<\|endoftext\|> \(0\)/);
});

test('info reports a shape mismatch in the table and fails on an unreadable folder', async () => {
  const d = mkdtempSync(join(tmpdir(), 'lmtune-info-'));
  after(() => rmSync(d, { recursive: true, force: true }));
  copyFileSync(join(M, 'tiny-random-gpt2', 'model.safetensors'), join(d, 'model.safetensors'));
  writeFileSync(join(d, 'config.json'), JSON.stringify({ model_type: 'gpt2', n_embd: 32, n_layer: 5, n_head: 4, n_positions: 256, vocab_size: 1000 }));
  const info = await describeCheckpoint(d);
  assert.match(info.tensorCheck, /transformer\.wpe\.weight': expected shape \[256, 32\], found \[512, 32\]/);
  assert.ok('error' in info.tokenizer);
  await assert.rejects(runInfo([join(d, 'nope')]), (e: unknown) => e instanceof LmtuneError && e.code === 'CHECKPOINT');
});
