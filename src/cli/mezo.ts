/**
 * `lmtune mezo replay`: rebuild a MeZO run's weights from its initial checkpoint and trajectory.jsonl,
 * bit for bit, without evaluating a single loss (each step regenerates z from the logged seed).
 */
import type { Command } from 'commander';
import { LmtuneError } from '../util/errors.ts';
import { loadTransformer } from '../heads/model.ts';
import { replayTrajectory } from '../optim/trajectory.ts';
import { readTrajectory } from '../node/trajectory-file.ts';
import { saveModelFolder } from '../train/loop.ts';
import { num, ProgressLine } from './flags.ts';
import { checkOutputFolder } from '../node/outputs.ts';
import { readZoTrajectory } from '../train/zo-trajectory-file.ts';
import { replayZoTrajectory, ZO_TRAJECTORY_FORMAT } from '../optim/zo/trajectory.ts';
import { readFileSync } from 'node:fs';

/** the `format` of a trajectory's header line: MeZO's (seed + one scalar per step) or the ZO methods' */
function trajectoryFormat(path: string): string | null {
  let first = '';
  try {
    first = readFileSync(path, 'utf8').split('\n', 1)[0] ?? '';
  } catch {
    return null; // readTrajectory names the problem
  }
  try {
    const h = JSON.parse(first) as { format?: unknown };
    return typeof h.format === 'string' ? h.format : null;
  } catch {
    return null;
  }
}

export async function replayRun(modelDir: string, trajectoryPath: string, outDir: string, steps?: number, onStep?: (done: number, total: number) => void): Promise<{ steps: number }> {
  // before any work: --out must be new, empty, or an earlier replay's output (never a run or its initial/)
  checkOutputFolder(outDir, { kind: 'model', role: 'replay' }, '--out');
  const model = await loadTransformer(modelDir, {});
  if (trajectoryFormat(trajectoryPath) === ZO_TRAJECTORY_FORMAT) {
    // a --zo-method run (src/optim/zo/): its records hold what each method's step needs
    const zo = readZoTrajectory(trajectoryPath);
    const to = steps ?? zo.records.length;
    if (to > zo.records.length) throw new LmtuneError('CONFIG', `--steps ${to}: the trajectory holds ${zo.records.length} steps`);
    const params = zo.header.params.map((p) => {
      const data = model.tensor(p.name);
      if (data.length !== p.size) throw new LmtuneError('CHECKPOINT', `${trajectoryPath}: parameter '${p.name}' has ${p.size} values in the trajectory, ${data.length} in ${modelDir}`);
      return { name: p.name, data };
    });
    await replayZoTrajectory(params, { header: zo.header, records: zo.records.slice(0, to) });
    onStep?.(to, to);
    saveModelFolder(model, outDir, 'replay', '--out');
    return { steps: to };
  }
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
