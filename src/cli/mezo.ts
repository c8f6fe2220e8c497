/**
 * `lmtune mezo replay`: rebuild a MeZO run's weights from its initial checkpoint and trajectory.jsonl,
 * bit for bit, without evaluating a single loss (each step regenerates z from the logged seed).
 */
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { loadTransformer } from '../models/index.ts';
import { replayTrajectory } from '../optim/trajectory.ts';
import { readTrajectory } from '../node/trajectory-file.ts';
import { saveModelFolder } from '../train/loop.ts';
import { num, ProgressLine } from './flags.ts';
import { checkOutputFolder } from '../node/outputs.ts';

export async function replayRun(modelDir: string, trajectoryPath: string, outDir: string, steps?: number, onStep?: (done: number, total: number) => void): Promise<{ steps: number }> {
  // before any work: --out must be new, empty, or an earlier replay's output (never a run or its initial/)
  checkOutputFolder(outDir, { kind: 'model', role: 'replay' }, '--out');
  const model = await loadTransformer(modelDir, {});
  const traj = readTrajectory(trajectoryPath);
  const to = steps ?? traj.records.length;
  if (to > traj.records.length) throw new LmtuneError('CONFIG', `--steps ${to}: the trajectory holds ${traj.records.length} steps`);
  const params = model.trainableParams();
  await replayTrajectory(params, traj, { to, onStep: (s) => onStep?.(s + 1, to) });
  saveModelFolder(model, outDir, 'replay', '--out');
  return { steps: to };
}

export function register(program: Command): void {
  const mezo = program.command('mezo').description('MeZO utilities (train with `lmtune train --optimizer mezo`)');
  mezo
    .command('replay')
    .description('rebuild the weights of a MeZO run from its initial checkpoint and trajectory, bit for bit')
    .requiredOption('--model <dir>', "the run's initial weights: the --model it trained (full) or RUN_DIR/initial (LoRA/prefix)")
    .requiredOption('--trajectory <file>', 'RUN_DIR/trajectory.jsonl')
    .requiredOption('--out <dir>', 'where to write the rebuilt model folder')
    .option('--steps <n>', 'replay only the first n steps')
    .action(async (o: { model: string; trajectory: string; out: string; steps?: string }) => {
      const progress = new ProgressLine();
      const r = await replayRun(o.model, o.trajectory, o.out, o.steps ? num('--steps', o.steps, { int: true, min: 0 }) : undefined, (d, t) => progress.update(`replayed ${d}/${t} steps`, d, t));
      process.stdout.write(`replayed ${r.steps} steps → ${o.out}\n`);
    });
}
