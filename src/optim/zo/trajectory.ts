/**
 * The trajectory of a run with a registry method (registry.ts) other than the MeZO rules, which keep
 * src/optim/trajectory.ts's format: line 1 a header (format, z generator, method name, settings and the
 * method's config, the trainable tensors' names and sizes), then one line per step
 * `{"step":k,"seed":s,"lr":…,"values":[…]}` — the step seed and the few scalars the method recorded
 * (FZOO's σ and N coefficients, the conservative choice, HiZOO's curvature). Numbers use JavaScript's
 * shortest round-trip formatting, so they read back exactly and `replayZoTrajectory` is bit-exact.
 * The file side (append + fsync, resume) is src/train/zo-trajectory-file.ts. A torn last line is
 * ignored. (No hash chain yet, unlike the MeZO trajectory.)
 */
import { LmtuneError } from '../../util/errors.ts';
import type { ParamList } from '../types.ts';
import { Z_GENERATOR } from '../zstream.ts';
import type { ZoMethod, ZoRecord, ZoSettings } from './method.ts';
import { createZoMethod } from './registry.ts';

export const ZO_TRAJECTORY_FORMAT = 'lmtune-zo-trajectory';

export interface ZoTrajectoryHeader {
  format: typeof ZO_TRAJECTORY_FORMAT;
  version: 1;
  generator: string;
  method: string;
  settings: Omit<ZoSettings, 'decayFilter'>;
  config: Record<string, unknown>;
  params: { name: string; size: number }[];
}

export interface ZoTrajectoryRecord extends ZoRecord {
  step: number;
}

export function zoTrajectoryHeader(m: ZoMethod, settings: ZoSettings): ZoTrajectoryHeader {
  const { decayFilter: _d, ...plain } = settings;
  return { format: ZO_TRAJECTORY_FORMAT, version: 1, generator: Z_GENERATOR, method: m.name, settings: plain, config: m.config(), params: m.params.map((p) => ({ name: p.name, size: p.data.length })) };
}

function num(x: number): string {
  if (!Number.isFinite(x)) throw new LmtuneError('NUMERIC', `zo trajectory: ${x} cannot be logged`);
  return Object.is(x, -0) ? '-0' : String(x);
}

export function formatZoRecord(r: ZoTrajectoryRecord): string {
  return `{"step":${r.step},"seed":${r.seed},"lr":${num(r.lr)},"values":[${r.values.map(num).join(',')}]}\n`;
}

export function formatZoHeader(h: ZoTrajectoryHeader): string {
  return JSON.stringify(h) + '\n';
}

/** Parses a trajectory's text (`path` names it in errors); a torn last line is ignored. */
export function parseZoTrajectory(text: string, path: string): { header: ZoTrajectoryHeader; records: ZoTrajectoryRecord[] } {
  const lines = text.split('\n');
  const complete = lines.slice(0, -1); // the last piece is '' or a torn line
  if (complete.length === 0) throw new LmtuneError('CHECKPOINT', `${path}: no header line`);
  const header = JSON.parse(complete[0]!) as ZoTrajectoryHeader;
  if (header.format !== ZO_TRAJECTORY_FORMAT) throw new LmtuneError('CHECKPOINT', `${path}:1: not an lmtune ZO trajectory (format "${String(header.format)}")`);
  if (header.generator !== Z_GENERATOR) throw new LmtuneError('CHECKPOINT', `${path}:1: z generator "${header.generator}", this lmtune has "${Z_GENERATOR}"`);
  const records = complete.slice(1).map((l, k) => {
    const o = JSON.parse(l) as ZoTrajectoryRecord;
    if (o.step !== k || typeof o.seed !== 'number' || typeof o.lr !== 'number' || !Array.isArray(o.values)) throw new LmtuneError('CHECKPOINT', `${path}:${k + 2}: not step ${k} of a ZO trajectory`);
    return o;
  });
  return { header, records };
}

/** Rebuilds the weights after the logged steps, in place, from the weights before step 0. */
export async function replayZoTrajectory(params: ParamList, t: { header: ZoTrajectoryHeader; records: readonly ZoTrajectoryRecord[] }): Promise<ZoMethod> {
  const h = t.header;
  if (params.length !== h.params.length || params.some((p, i) => p.name !== h.params[i]!.name || p.data.length !== h.params[i]!.size)) {
    throw new LmtuneError('CHECKPOINT', 'zo trajectory: the trainable tensors differ from the logged ones', 'use the same model and --peft settings as the logged run');
  }
  const m = createZoMethod(h.method, params, h.settings, h.config);
  for (const r of t.records) await m.replay(r);
  return m;
}
