// `lmtune scale`: the acceptance command gives the spec's square-root-rule numbers (§2.4 worked
// example) as one JSON object; impossible requests throw LmtuneError with the reason; `scale simulate`
// writes a self-contained report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { register } from './scale.ts';

/** Runs `lmtune <args>` through commander with stdout captured. */
async function run(args: string[]): Promise<string> {
  const program = new Command();
  program.name('lmtune').exitOverride();
  register(program);
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array): boolean => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['node', 'lmtune', ...args]);
  } finally {
    process.stdout.write = write;
  }
  return out;
}

const acceptance = ['scale', '--optimizer', 'adam', '--lr', '1e-3', '--beta1', '0.9', '--beta2', '0.999', '--eps', '1e-8', '--batch', '256', '--to-batch', '1024'];

test('acceptance: adam 1e-3/0.9/0.999/1e-8 at B=256 → 1024 prints one JSON object with lr 2e-3, beta1 0.6, beta2 0.996, eps 5e-9, batch 1024', async () => {
  const out = await run([...acceptance, '--json']);
  assert.equal(out.trim().split('\n').length, 1);
  const r = JSON.parse(out) as { config: Record<string, number>; invariants: Record<string, { before: number; after: number }>; warnings: string[] };
  assert.equal(r.config.lr, 2e-3);
  assert.equal(r.config.beta1, 0.6);
  assert.equal(r.config.beta2, 0.996);
  assert.equal(r.config.eps, 5e-9);
  assert.equal(r.config.batch, 1024);
  for (const [name, v] of Object.entries(r.invariants)) assert.ok(Math.abs(v.after / v.before - 1) < 1e-9, name);
  assert.ok(Array.isArray(r.warnings));
});

test('the table form names the rule and both columns', async () => {
  const out = await run(acceptance);
  assert.match(out, /square-root scaling rule/);
  assert.match(out, /beta1\s+0\.9\s+0\.6/);
  assert.match(out, /SDE invariants/);
});

test('every optimizer translates: sgd (linear), sgdm (η_eff reported), rmsprop, adamw (√κ weight decay)', async () => {
  const sgd = JSON.parse(await run(['scale', '--optimizer', 'sgd', '--lr', '0.1', '--batch', '128', '--to-batch', '512', '--steps', '1000', '--json']));
  assert.deepEqual([sgd.config.lr, sgd.config.batch, sgd.config.steps, sgd.rule], [0.4, 512, 250, 'linear']);
  const sgdm = JSON.parse(await run(['scale', '--optimizer', 'sgdm', '--lr', '0.1', '--momentum', '0.9', '--batch', '128', '--to-batch', '256', '--json']));
  assert.deepEqual([sgdm.config.lr, sgdm.config.momentum, sgdm.sgdEquivalent.config.lr], [0.2, 0.9, 2]);
  const rms = JSON.parse(await run(['scale', '--optimizer', 'rmsprop', '--lr', '0.01', '--alpha', '0.99', '--eps', '1e-8', '--batch', '64', '--to-batch', '256', '--json']));
  assert.deepEqual([rms.config.lr, rms.config.beta2, rms.config.eps], [0.02, 0.96, 5e-9]);
  const adamw = JSON.parse(await run(['scale', '--optimizer', 'adamw', '--lr', '1e-3', '--weight-decay', '0.1', '--batch', '64', '--to-batch', '256', '--json']));
  assert.equal(adamw.config.weightDecay, 0.2);
  const svag = JSON.parse(await run(['scale', '--optimizer', 'sgd', '--lr', '0.8', '--batch', '128', '--svag', '4', '--json']));
  assert.deepEqual([svag.config.lr, svag.config.batch, svag.config.svagAmplification, svag.epochsMultiplier], [0.2, 128, 4, 8]);
});

test('impossible requests throw LmtuneError with the reason', async () => {
  const cases: [string[], RegExp][] = [
    [[...acceptance.slice(0, -1), '4096'], /beta1.*-0\.6/],
    [['scale', '--optimizer', 'adam', '--lr', '1e-3', '--batch', '0', '--to-batch', '8'], /--batch/],
    [['scale', '--optimizer', 'adam', '--lr', '1e-3', '--batch', '8'], /missing --to-batch/],
    [['scale', '--lr', '1e-3', '--batch', '8', '--to-batch', '16'], /missing --optimizer/],
    [['scale', '--optimizer', 'sgdm', '--lr', '0.1', '--batch', '8', '--to-batch', '16'], /missing --momentum/],
    [['scale', '--optimizer', 'sgd', '--lr', '0.1', '--eps', '1e-8', '--batch', '8', '--to-batch', '16'], /--eps does not apply/],
    [['scale', '--optimizer', 'adam', '--lr', 'fast', '--batch', '8', '--to-batch', '16'], /--lr expects a number/],
    [['scale', '--optimizer', 'adam', '--lr', '1e-3', '--batch', '8', '--to-batch', '-16'], /--to-batch/],
    [['scale', '--optimizer', 'lion', '--lr', '1e-3', '--batch', '8', '--to-batch', '16'], /--optimizer must be one of/],
  ];
  for (const [args, re] of cases) {
    await assert.rejects(run(args), (e: unknown) => e instanceof LmtuneError && re.test(e.message), args.join(' '));
  }
});

test('scale simulate writes an HTML report and prints a JSON summary whose SGD numbers match the closed form', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-scale-'));
  try {
    const file = join(dir, 'nqm.html');
    const out = await run(['scale', 'simulate', '--optimizer', 'sgd', '--lr', '0.1', '--batch', '8', '--time', '3', '--svag', '1,2', '--replicas', '400', '--substeps', '4', '--out', file, '--json']);
    const r = JSON.parse(out) as { sdeStationaryVariance: number; runs: { label: string; stationaryVariance: number | null }[] };
    assert.equal(r.sdeStationaryVariance, 0.1 / 16);
    assert.equal(r.runs[0]!.stationaryVariance, Number((0.1 / (8 * 1.9)).toPrecision(15)));
    const html = readFileSync(file, 'utf8');
    assert.ok(html.startsWith('<!DOCTYPE html>'));
    assert.equal((html.match(/<svg /g) ?? []).length, 3);
    await assert.rejects(run(['scale', 'simulate', '--optimizer', 'sgd', '--lr', '0.1', '--batch', '8', '--time', '3']), /missing --out/);
    await assert.rejects(run(['scale', '--optimizer', 'sgd', '--lr', '0.1', '--batch', '8', '--to-batch', '16', '--out', file]), /--out does not apply/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
