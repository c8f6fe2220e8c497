/**
 * `lmtune zo-bench`: the zeroth-order methods side by side under one fixed protocol (docs/zo.md),
 * printing per method the forward passes to reach the target dev loss, the final accuracy (mean ±
 * std over seeds), the extra memory, the peak RSS and the wall time; `--json` for one JSON object,
 * `--out` for report.html (curves against forward passes) and results.json.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { atomicWrite, stableStringify } from '../node/fsx.ts';
import { isZoMethod, ZO_METHODS } from '../optim/zo/registry.ts';
import { DEFAULT_METHODS, runZoBench, type ZoBenchMethod, type ZoBenchProtocol } from '../zo-bench/bench.ts';
import { markdownTable, zoBenchHtml } from '../zo-bench/report.ts';
import { num } from './flags.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Opts {
  methods: string;
  seeds: string;
  budget: string;
  evalEvery: string;
  kShot: string;
  devN: string;
  target: string;
  batchSize: string;
  eps: string;
  lr?: string;
  threads: string;
  model: string;
  train: string;
  dev: string;
  out?: string;
  json?: boolean;
}

export function buildProtocol(o: Opts): ZoBenchProtocol {
  const names = o.methods === 'all' ? [...ZO_METHODS] : o.methods.split(',').map((s) => s.trim());
  for (const n of names) if (!isZoMethod(n)) throw new LmtuneError('CONFIG', `--methods: unknown ZO method "${n}"`, `known: ${ZO_METHODS.join(', ')}`);
  const lrs = new Map<string, number>();
  for (const kv of (o.lr ?? '').split(',').filter(Boolean)) {
    const [k, v] = kv.split('=');
    if (!k || v === undefined || !isZoMethod(k)) throw new LmtuneError('CONFIG', `--lr: expected method=value pairs, got "${kv}"`);
    lrs.set(k, num('--lr', v, { min: 0 }));
  }
  const methods: ZoBenchMethod[] = names.map((n) => {
    const d = DEFAULT_METHODS.find((m) => m.name === n)!;
    return { ...d, lr: lrs.get(n) ?? d.lr };
  });
  return {
    model: o.model,
    task: 'sst2',
    train: o.train,
    dev: o.dev,
    kShot: num('--k-shot', o.kShot, { int: true, min: 1 }),
    devN: num('--dev-n', o.devN, { int: true, min: 1 }),
    peft: { kind: 'lora', rank: 8, alpha: 16, dropout: 0, targets: [] },
    batchSize: num('--batch-size', o.batchSize, { int: true, min: 1 }),
    eps: num('--eps', o.eps, { min: 0 }),
    seeds: o.seeds.split(',').map((s) => num('--seeds', s, { int: true, min: 0 })),
    budget: num('--budget', o.budget, { int: true, min: 1 }),
    evalEvery: num('--eval-every', o.evalEvery, { int: true, min: 1 }),
    targetDevLoss: num('--target', o.target, { min: 0 }),
    methods,
    threads: num('--threads', o.threads, { int: true, min: 1 }),
  };
}

export function register(program: Command): void {
  program
    .command('zo-bench')
    .description('compare the zeroth-order methods (--zo-method) under one protocol: forward passes to a target, accuracy over seeds, memory, time')
    .option('--methods <list>', `comma-separated, or all: ${ZO_METHODS.join(', ')}`, 'all')
    .option('--seeds <list>', 'seeds (k-shot sample, LoRA init, perturbations)', '0,1,2')
    .option('--budget <n>', 'forward passes per run (evaluation not counted)', '360')
    .option('--eval-every <n>', 'evaluate dev every n forward passes', '120')
    .option('--k-shot <n>', 'training examples per class', '32')
    .option('--dev-n <n>', 'dev examples (the first n of --dev)', '100')
    .option('--target <loss>', 'target dev loss for "passes to target"', '0.8')
    .option('--batch-size <n>', 'examples per forward pass', '16')
    .option('--eps <x>', 'perturbation size ε', '1e-2')
    .option('--lr <list>', 'learning-rate overrides, e.g. sgd=1e-2,fzoo=1e-3 (defaults in docs/zo.md)')
    .option('--threads <n>', 'compute threads', '1')
    .option('--model <dir>', 'model folder', join(ROOT, 'assets', 'tiny-english-lm'))
    .option('--train <file>', 'SST-2 training pool', join(ROOT, 'assets', 'demo', 'sst2-train.jsonl'))
    .option('--dev <file>', 'SST-2 dev examples', join(ROOT, 'assets', 'demo', 'sst2-dev.jsonl'))
    .option('--out <dir>', 'write report.html and results.json here')
    .option('--json', 'print the results as one JSON object')
    .action(async (o: Opts) => {
      const p = buildProtocol(o);
      const r = await runZoBench(p, (e) => {
        if (e.devAccuracy !== undefined) process.stderr.write(`${e.method} seed ${e.seed}: ${e.passes}/${e.budget} passes, dev accuracy ${(100 * e.devAccuracy).toFixed(1)}%\n`);
      });
      if (o.out) {
        mkdirSync(o.out, { recursive: true });
        atomicWrite(join(o.out, 'results.json'), stableStringify(r));
        atomicWrite(join(o.out, 'report.html'), zoBenchHtml(r));
      }
      if (o.json) {
        process.stdout.write(JSON.stringify(r) + '\n');
        return;
      }
      process.stdout.write(`zero-shot dev accuracy ${(100 * r.zeroShot.devAccuracy).toFixed(1)}%, dev loss ${r.zeroShot.devLoss.toFixed(4)}\n` + markdownTable(r) + (o.out ? `report: ${join(o.out, 'report.html')}\n` : ''));
    });
}
