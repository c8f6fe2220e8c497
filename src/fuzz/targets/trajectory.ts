/**
 * MeZO trajectory.jsonl: a recorded 4-step run, one line edited as JSON (a seed, gradient, lr, step,
 * the header's params or config) or the file damaged as text (a line cut in half, duplicated, CRLF,
 * cut anywhere); read with `readTrajectory` and replayed onto the initial weights as `lmtune mezo replay`
 * does. Besides failing clearly, a replay that succeeds must reproduce the recorded weights: what
 * replays is what was recorded.
 */
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { MezoOptimizer } from '../../optim/mezo.ts';
import { mezoStepSeed } from '../../optim/zstream.ts';
import { replayTrajectory, stepRecord, trajectoryHeader } from '../../optim/trajectory.ts';
import { readTrajectory, TrajectoryWriter } from '../../node/trajectory-file.ts';
import type { NamedParam } from '../../optim/types.ts';
import { applyJsonEdits, applyTextEdit, jsonEdit, textEdit, type Json, type JsonEdit, type TextEdit } from '../mutate.ts';
import type { FuzzTarget } from '../runner.ts';

export interface TrajectoryInput {
  line: number;
  edits: JsonEdit[];
  text: TextEdit;
}

const STEPS = 4;

function initial(): NamedParam[] {
  return [
    { name: 'a.weight', data: Float32Array.from({ length: 5 }, (_, i) => 0.1 * i - 0.2) },
    { name: 'b.bias', data: Float32Array.from({ length: 3 }, (_, i) => 0.05 * i) },
  ];
}

let recorded: { text: string; after: Float32Array[][] } | null = null;
/** the recorded run and its weights after each step (computed once) */
async function record(): Promise<{ text: string; after: Float32Array[][] }> {
  if (recorded) return recorded;
  const dir = mkdtempSync(join(tmpdir(), 'lmtune-fuzz-traj-'));
  try {
    const ps = initial();
    const opt = new MezoOptimizer(ps, { eps: 1e-2, weightDecay: 0.01, distribution: 'gaussian', nSpsa: 1, rule: { kind: 'sgd' } });
    const path = join(dir, 'trajectory.jsonl');
    const w = TrajectoryWriter.create(path, trajectoryHeader(opt));
    const after: Float32Array[][] = [ps.map((p) => p.data.slice())];
    for (let t = 0; t < STEPS; t++) {
      const loss = async () => ps.reduce((s, p) => s + p.data.reduce((q, x, i) => q + Math.sin(3 * x + i) * x, 0), 0);
      const r = await opt.step(mezoStepSeed(7, t), loss, 1e-2);
      w.append(stepRecord(opt, t, r, 1e-2));
      after.push(ps.map((p) => p.data.slice()));
    }
    w.close();
    recorded = { text: readFileSync(path, 'utf8'), after };
    return recorded;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const trajectoryTarget: FuzzTarget<TrajectoryInput> = {
  name: 'trajectory',
  description: 'MeZO trajectory.jsonl through readTrajectory + replayTrajectory (the weights must match the recording)',
  input: fc.record({ line: fc.nat(STEPS), edits: fc.array(jsonEdit, { maxLength: 2, size: 'xsmall' }), text: textEdit }),
  async prepare(i, dir) {
    const rec = await record();
    const lines = rec.text.split('\n');
    if (i.edits.length) {
      const k = i.line % (lines.length - 1);
      lines[k] = JSON.stringify(applyJsonEdits(JSON.parse(lines[k]!) as Json, i.edits));
    }
    const path = join(dir, 'trajectory.jsonl');
    writeFileSync(path, applyTextEdit(Buffer.from(lines.join('\n'), 'utf8'), i.text));
  },
  async run(_i, dir) {
    const rec = await record();
    const path = join(dir, 'trajectory.jsonl');
    const traj = readTrajectory(path);
    const ps = initial();
    await replayTrajectory(ps, traj);
    const want = rec.after[traj.records.length]!;
    ps.forEach((p, j) => {
      if (!p.data.every((x, e) => Object.is(x, want[j]![e]))) throw new Error(`silent garbage: replaying ${traj.records.length} steps gave other weights than the recording for '${p.name}'`);
    });
  },
};
