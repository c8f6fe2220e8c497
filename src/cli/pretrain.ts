/** `lmtune pretrain`: train the small default LM from scratch on the shared plain-English text. */
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { pretrain } from '../pretrain/pretrain.ts';
import { fmtEta, num, oneOf, ProgressLine } from './flags.ts';
import { loadQuadPhi } from '../pretrain/quad.ts';

export function register(program: Command): void {
  program
    .command('pretrain')
    .description('pretrain a small GPT-2-style LM (with its own byte-level BPE vocabulary) on tiny-shakespeare, WikiText-2 valid and SST-2 training sentences')
    .option('--out <dir>', 'output model folder', 'assets/tiny-english-lm')
    .option('--shared <dir>', 'the shared data folder', '../shared/data')
    .option('--vocab-size <n>', 'BPE vocabulary size', '4096')
    .option('--layers <n>', 'transformer layers', '4')
    .option('--dim <n>', 'hidden width', '128')
    .option('--heads <n>', 'attention heads', '4')
    .option('--seq <n>', 'context length', '64')
    .option('--batch <n>', 'windows per step', '32')
    .option('--steps <n>', 'optimizer steps', '2000')
    .option('--lr <x>', 'peak AdamW learning rate (warmup, then cosine to lr/10)', '3e-3')
    .option('--warmup <n>', 'warmup steps', '100')
    .option('--weight-decay <x>', 'decoupled weight decay', '0.1')
    .option('--seed <n>', 'seed', '0')
    .option('--threads <n>', 'compute threads (default: all cores)')
    .option('--objective <name>', 'xent (next-token cross-entropy) or quad (Saunshi et al.\'s Quad: −hᵀφ_w + ½‖Φh‖², extra linear layer h = A·f)', 'xent')
    .option('--quad-phi-from <dir>', 'quad: fix Φ to this model\'s output embedding (same vocabulary); learned when absent')
    .action(async (o: Record<string, string>) => {
      const objective = oneOf('--objective', o.objective!, ['xent', 'quad'] as const);
      if (o.quadPhiFrom !== undefined && objective !== 'quad') throw new LmtuneError('CONFIG', '--quad-phi-from applies to --objective quad');
      const quadFixedPhi = o.quadPhiFrom !== undefined ? await loadQuadPhi(o.quadPhiFrom) : undefined;
      const steps = num('--steps', o.steps, { int: true, min: 1 });
      const progress = new ProgressLine();
      const t0 = performance.now();
      const s = await pretrain(
        {
          out: o.out!,
          shared: o.shared!,
          vocabSize: num('--vocab-size', o.vocabSize, { int: true, min: 257 }),
          layers: num('--layers', o.layers, { int: true, min: 1 }),
          dim: num('--dim', o.dim, { int: true, min: 8 }),
          heads: num('--heads', o.heads, { int: true, min: 1 }),
          seq: num('--seq', o.seq, { int: true, min: 8 }),
          batch: num('--batch', o.batch, { int: true, min: 1 }),
          steps,
          lr: num('--lr', o.lr, { min: 0 }),
          warmup: num('--warmup', o.warmup, { int: true, min: 0 }),
          weightDecay: num('--weight-decay', o.weightDecay, { min: 0 }),
          seed: num('--seed', o.seed, { int: true, min: 0 }),
          ...(o.threads ? { threads: num('--threads', o.threads, { int: true, min: 1 }) } : {}),
          objective,
          ...(quadFixedPhi ? { quadFixedPhi } : {}),
        },
        {
          onMessage: (m) => process.stderr.write(`${m}\n`),
          onStep: (step, total, loss, sps) => progress.update(`step ${step}/${total}  loss ${loss.toFixed(3)}  ${sps.toFixed(2)} steps/s  ETA ${fmtEta((total - step) / sps)}`, step, total),
        },
      );
      process.stdout.write(`pretrained ${s.params} parameters on ${s.tokens} tokens in ${((performance.now() - t0) / 1000).toFixed(0)} s: train loss ${s.trainLoss.toFixed(3)}, held-out loss ${s.heldOutLoss.toFixed(3)} → ${o.out}\n`);
    });
}
