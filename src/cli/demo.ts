/**
 * `lmtune demo` (the README's `npm run demo`): MeZO fine-tuning of the embedded default model — a small
 * GPT-2-style LM lmtune pretrained itself (assets/tiny-english-lm, reproducible with `lmtune pretrain`)
 * — on an embedded SST-2 subset, with the MeZO paper's prompt (`<sentence> It was` → ` great` /
 * ` terrible`). Prints zero-shot vs fine-tuned dev accuracy and where the report is.
 */
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { Command } from 'commander';
import { claimRunFolder, train, type TrainSummary } from '../train/loop.ts';
import { buildTrainConfig } from './train.ts';
import { fmtEta, ProgressLine } from './flags.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DEMO_MODEL = join(ROOT, 'assets', 'tiny-english-lm');
export const DEMO_TRAIN = join(ROOT, 'assets', 'demo', 'sst2-train.jsonl');
export const DEMO_DEV = join(ROOT, 'assets', 'demo', 'sst2-dev.jsonl');

// Batch 64 and a decaying lr: MeZO's projected gradient is one number per step, and with batch 16 or a
// constant lr the run's last steps could undo its progress (docs/training.md, "The demo").
export const DEMO_FLAGS = {
  optimizer: 'mezo',
  peft: 'lora',
  lr: '5e-3',
  schedule: 'linear',
  zoEps: '1e-2',
  maxSteps: '2000',
  batchSize: '64',
  evalEvery: '250',
  saveEvery: '250',
  seed: '0',
  devLimit: '474',
};

function row(label: string, acc: number, loss: number | undefined, note?: string): string {
  return `  ${label.padEnd(34)}${`${(100 * acc).toFixed(1)}%`.padStart(7)}    ${note ?? loss?.toFixed(3) ?? ''}\n`;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('MeZO-fine-tune the embedded default model on an embedded SST-2 subset and show zero-shot vs fine-tuned accuracy')
    .option('--out <dir>', 'run folder', 'runs/demo')
    .option('--steps <n>', 'MeZO steps', DEMO_FLAGS.maxSteps)
    .option('--json', 'print the summary as one JSON object')
    .action(async (o: { out: string; steps: string; json?: boolean }) => {
      const cfg = buildTrainConfig({ ...DEMO_FLAGS, model: DEMO_MODEL, task: 'sst2', data: DEMO_TRAIN, dev: DEMO_DEV, maxSteps: o.steps, evalEvery: String(Math.max(1, Math.round(Number(o.steps) / 8))) });
      process.stderr.write(
        `lmtune demo: MeZO (forward passes only, ${cfg.optimizer.zoSamples} perturbation per step, ε=${cfg.optimizer.zoEps}, lr=${cfg.optimizer.lr} decaying linearly to 0) on LoRA adapters of ${DEMO_MODEL}\n` +
          `  task: short SST-2 texts as next-word prediction ("<sentence> It was" → " great" / " terrible"), ${cfg.maxSteps} steps of ${cfg.batchSize} examples\n`,
      );
      // the demo starts afresh, but only ever deletes a run folder lmtune made
      claimRunFolder(o.out, '--out');
      rmSync(o.out, { recursive: true, force: true });
      const progress = new ProgressLine();
      const s: TrainSummary = await train(cfg, o.out, {
        onStep: (e) => progress.update(`step ${e.step}/${e.maxSteps}  loss ${e.loss.toFixed(4)}  ${e.stepsPerSecond.toFixed(1)} steps/s  ETA ${fmtEta(e.etaSeconds)}`, e.step, e.maxSteps),
        onEval: (e) => process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}  dev accuracy at step ${e.step}: ${(100 * e.value).toFixed(1)}%${e.best ? ' (best so far)' : ''}\n`),
        onMessage: (m) => process.stderr.write(`  ${m}\n`),
      });
      const before = s.initialEval?.value ?? Number.NaN;
      const best = s.best?.value ?? Number.NaN;
      const after = s.finalEval?.value ?? Number.NaN;
      const n = cfg.devLimit;
      // standard error of a difference of two accuracies on the same n examples (upper bound, independent)
      const se = Math.sqrt((before * (1 - before) + after * (1 - after)) / n);
      // the best a sentence-blind model can do on these labels: predict the label frequencies
      const labels = readFileSync(DEMO_DEV, 'utf8').trim().split('\n').slice(0, n).map((l) => (JSON.parse(l) as { label: number }).label);
      const p = labels.filter((y) => y === 1).length / labels.length;
      const priorLoss = -(p * Math.log(p) + (1 - p) * Math.log(1 - p));
      if (o.json) {
        process.stdout.write(
          JSON.stringify({
            zero_shot_accuracy: before,
            final_accuracy: after,
            best_accuracy: best,
            best_step: s.best?.step,
            zero_shot_dev_loss: s.initialEval?.devLoss,
            final_dev_loss: s.finalEval?.devLoss,
            accuracy_change_se: se,
            label_prior_dev_loss: priorLoss,
            steps: s.steps,
            seconds: s.seconds,
            report: join(o.out, 'report.html'),
          }) + '\n',
        );
        return;
      }
      process.stdout.write(
        `\nSST-2 dev, ${n} held-out sentences     accuracy   dev loss (cross-entropy over the label words)\n` +
          row('zero-shot (before MeZO)', before, s.initialEval?.devLoss) +
          row(`after ${s.steps} MeZO steps`, after, s.finalEval?.devLoss) +
          row(`best checkpoint (step ${s.best?.step})`, best, undefined, 'selected on this dev set: optimistic') +
          `  accuracy change ${(100 * (after - before)).toFixed(1)} points (standard error ${(100 * se).toFixed(1)})\n` +
          `  a sentence-blind guess of the label frequencies has dev loss ${priorLoss.toFixed(3)}; below it, the model reads the sentence\n` +
          `time ${s.seconds.toFixed(0)} s; report: ${join(o.out, 'report.html')}; log: ${join(o.out, 'log.jsonl')}\n`,
      );
    });
}
