/**
 * The element-wise passes of MeZO over tiles of parameters. One definition serves the training step
 * and the replay of a trajectory, so both perform the same float operations
 * in the same order and the results agree bit for bit.
 *
 * Per element (θ float32, z float64, every arithmetic in float64, ⌊·⌉ = round to float32):
 *   add pass (scale s):      θ ← ⌊θ + s·z⌉                        s = +ε, −2ε (= −2·ε), +ε
 *   update pass:             q = ⌊θ + ε·z_{n−1}⌉                 the last restore, fused
 *                            ĝ = ((c_0·z_0 + c_1·z_1) + …) + c_{n−1}·z_{n−1},  c_j = g_j/n
 *                            θ ← rule(q, ĝ)                      sgd: ⌊q − lr·(ĝ + wd·q)⌉
 *   replay (update pass with replay = true) first re-does, per sample j, θ ← ⌊⌊⌊θ + ε·z_j⌉ − 2ε·z_j⌉ + ε·z_j⌉
 *   (for j = n−1 without the last restore, which the update performs), exactly what training did.
 */
import { adamKernel, type AdamCoefs } from './adam.ts';
import { momentumKernel, type MomentumCoefs } from './sgd-momentum.ts';
import { sgdKernel } from './sgd.ts';
import { TILE, tileFiller, zKey, type ZDistribution } from './zstream.ts';

export interface AddOp {
  kind: 'add';
  seed: number;
  dist: ZDistribution;
  scale: number;
}

export type RuleOp = { kind: 'sgd' } | { kind: 'momentum'; coefs: MomentumCoefs } | { kind: 'adam'; coefs: AdamCoefs; decoupled: boolean };

export interface UpdateOp {
  kind: 'update';
  seeds: number[];
  /** c_j = g_j / n */
  coefs: number[];
  dist: ZDistribution;
  eps: number;
  lr: number;
  /** re-do the ±ε perturbations of every sample first (trajectory replay) */
  replay: boolean;
  rule: RuleOp;
  /** per-parameter step count before this update (momentum's first step, Adam's bias correction) */
  steps: number[];
}

export type PassOp = AddOp | UpdateOp;

/** What a pass works on: the parameters, their effective weight decay and their rule state slots. */
export interface PassContext {
  xs: Float32Array[];
  wds: number[];
  slots: Float32Array[][];
}

/** Tiles [t0, t1) of parameter p. */
export interface Segment {
  p: number;
  t0: number;
  t1: number;
}

export function tilesOf(length: number): number {
  return Math.ceil(length / TILE);
}

/** All tiles of all parameters, cut into `parts` contiguous runs of (nearly) equal tile counts. */
export function partition(lengths: readonly number[], parts: number): Segment[][] {
  const total = lengths.reduce((s, n) => s + tilesOf(n), 0);
  const out: Segment[][] = [];
  let p = 0;
  let t = 0;
  for (let k = 0; k < parts; k++) {
    let want = Math.floor((total * (k + 1)) / parts) - Math.floor((total * k) / parts);
    const segs: Segment[] = [];
    while (want > 0 && p < lengths.length) {
      const nt = tilesOf(lengths[p]!);
      const take = Math.min(want, nt - t);
      if (take > 0) segs.push({ p, t0: t, t1: t + take });
      t += take;
      want -= take;
      if (t >= nt) {
        p++;
        t = 0;
      }
    }
    out.push(segs);
  }
  return out;
}

/** Reusable per-thread scratch: one tile per sample plus ĝ. */
export class Scratch {
  private bufs: Float64Array[] = [];
  get(k: number): Float64Array[] {
    while (this.bufs.length < k) this.bufs.push(new Float64Array(TILE));
    return this.bufs;
  }
}

export function runPass(op: PassOp, ctx: PassContext, segs: readonly Segment[], scratch: Scratch): void {
  if (op.kind === 'add') runAdd(op, ctx, segs, scratch.get(1)[0]!);
  else runUpdate(op, ctx, segs, scratch.get(op.seeds.length + 1));
}

function runAdd(op: AddOp, ctx: PassContext, segs: readonly Segment[], z: Float64Array): void {
  const [k0, k1] = zKey(op.seed);
  const fill = tileFiller(op.dist);
  const s = op.scale;
  for (const seg of segs) {
    const x = ctx.xs[seg.p]!;
    for (let tile = seg.t0; tile < seg.t1; tile++) {
      const start = tile * TILE;
      const len = Math.min(TILE, x.length - start);
      fill(k0, k1, seg.p, tile, z, 0, len);
      for (let i = 0; i < len; i++) x[start + i] = x[start + i]! + s * z[i]!;
    }
  }
}

function runUpdate(op: UpdateOp, ctx: PassContext, segs: readonly Segment[], bufs: Float64Array[]): void {
  const n = op.seeds.length;
  const keys = op.seeds.map((s) => zKey(s));
  const fill = tileFiller(op.dist);
  const plus = op.eps;
  const minus = -2 * op.eps;
  const gh = bufs[n]!;
  const zl = bufs[n - 1]!;
  const c0 = op.coefs[0]!;
  const lr = op.lr;
  const rule = op.rule;
  const fusedSgd = n === 1 && rule.kind === 'sgd';
  for (const seg of segs) {
    const p = seg.p;
    const x = ctx.xs[p]!;
    const wd = ctx.wds[p]!;
    const slots = ctx.slots[p]!;
    const t = op.steps[p]!;
    if (fusedSgd) {
      updateSgdSingle(x, keys[0]![0], keys[0]![1], fill, p, seg, zl, plus, minus, c0, lr, wd, op.replay);
      continue;
    }
    for (let tile = seg.t0; tile < seg.t1; tile++) {
      const start = tile * TILE;
      const len = Math.min(TILE, x.length - start);
      for (let j = 0; j < n; j++) fill(keys[j]![0], keys[j]![1], p, tile, bufs[j]!, 0, len);
      if (op.replay) {
        for (let j = 0; j < n; j++) {
          const z = bufs[j]!;
          const last = j === n - 1;
          for (let i = 0; i < len; i++) {
            const a = Math.fround(x[start + i]! + plus * z[i]!);
            const b = Math.fround(a + minus * z[i]!);
            x[start + i] = last ? b : b + plus * z[i]!;
          }
        }
      }
      // the last restore, then ĝ
      for (let i = 0; i < len; i++) {
        x[start + i] = x[start + i]! + plus * zl[i]!;
        gh[i] = c0 * bufs[0]![i]!;
      }
      for (let j = 1; j < n; j++) {
        const z = bufs[j]!;
        const c = op.coefs[j]!;
        for (let i = 0; i < len; i++) gh[i] = gh[i]! + c * z[i]!;
      }
      if (rule.kind === 'sgd') sgdKernel(x, start, gh, 0, len, lr, wd);
      else if (rule.kind === 'momentum') momentumKernel(x, slots[0]!, start, gh, 0, len, lr, wd, rule.coefs, t === 0);
      else adamKernel(x, slots[0]!, slots[1]!, start, gh, 0, len, lr, t + 1, rule.decoupled ? 0 : wd, rule.decoupled ? 1 - lr * wd : 1, rule.coefs);
    }
  }
}

/**
 * The common case (n = 1, ZO-SGD) in one loop per tile; the same float operations as the general path:
 * q = ⌊θ + ε·z⌉, ĝ = c·z, θ ← ⌊q − lr·(ĝ + wd·q)⌉ (sgdKernel), after the replayed perturbations.
 */
function updateSgdSingle(
  x: Float32Array,
  k0: number,
  k1: number,
  fill: (k0: number, k1: number, stream: number, tile: number, out: Float64Array, off: number, len: number) => void,
  p: number,
  seg: Segment,
  z: Float64Array,
  plus: number,
  minus: number,
  c: number,
  lr: number,
  wd: number,
  replay: boolean,
): void {
  for (let tile = seg.t0; tile < seg.t1; tile++) {
    const start = tile * TILE;
    const len = Math.min(TILE, x.length - start);
    fill(k0, k1, p, tile, z, 0, len);
    if (replay) {
      for (let i = 0; i < len; i++) {
        const zi = z[i]!;
        const a = Math.fround(x[start + i]! + plus * zi);
        const b = Math.fround(a + minus * zi);
        const q = Math.fround(b + plus * zi);
        x[start + i] = q - lr * (c * zi + wd * q);
      }
    } else {
      for (let i = 0; i < len; i++) {
        const zi = z[i]!;
        const q = Math.fround(x[start + i]! + plus * zi);
        x[start + i] = q - lr * (c * zi + wd * q);
      }
    }
  }
}
