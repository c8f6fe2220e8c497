/**
 * A table of small graphs exercising every primitive (with broadcasting), shared by the VJP finite-
 * difference test and the ort-vs-ref agreement test. Each case names its parameters (differentiated)
 * and integer inputs; values are drawn from a seeded stream so failures reproduce.
 */
import { Rng } from '../util/rng.ts';
import { Graph, type Value, nn } from './index.ts';
import { numel } from './types.ts';

export interface Case {
  name: string;
  build(g: Graph): { out: Value; params: Value[] };
  /** custom initializer for params (default: normal(0, 1)) */
  init?: (name: string, n: number, rng: Rng) => Float64Array;
  /** integer inputs */
  ints?: Record<string, number[]>;
  /** tolerance override for float32 agreement */
  tol32?: number;
}

const positive = (_: string, n: number, rng: Rng): Float64Array => Float64Array.from({ length: n }, () => 0.5 + rng.uniform() * 2);
/** values spread apart so max/relu are away from their kinks */
const spread = (_: string, n: number, rng: Rng): Float64Array => {
  const p = rng.permutation(n);
  return Float64Array.from(p, (i) => (i - n / 2 + 0.5) * 0.37 + 0.05 * rng.uniform());
};

const u = (name: string, shape: number[], f: (x: Value) => Value, init?: Case['init']): Case => ({
  name,
  build(g) {
    const x = g.param('x', shape);
    return { out: f(x), params: [x] };
  },
  ...(init ? { init } : {}),
});

const b = (name: string, sa: number[], sb: number[], f: (a: Value, b: Value) => Value, init?: Case['init']): Case => ({
  name,
  build(g) {
    const a = g.param('a', sa);
    const c = g.param('b', sb);
    return { out: f(a, c), params: [a, c] };
  },
  ...(init ? { init } : {}),
});

export const CASES: Case[] = [
  u('neg', [3, 4], (x) => x.neg()),
  u('exp', [3, 4], (x) => x.exp()),
  u('log', [3, 4], (x) => x.log(), positive),
  u('sqrt', [3, 4], (x) => x.sqrt(), positive),
  u('rsqrt', [3, 4], (x) => x.rsqrt(), positive),
  u('reciprocal', [3, 4], (x) => x.reciprocal(), positive),
  u('pow3', [3, 4], (x) => x.pow(3)),
  u('pow_half', [3, 4], (x) => x.pow(0.5), positive),
  u('square', [3, 4], (x) => x.pow(2)),
  u('tanh', [3, 4], (x) => x.tanh()),
  u('erf', [3, 4], (x) => x.erf()),
  u('sigmoid', [3, 4], (x) => x.sigmoid()),
  u('relu', [3, 4], (x) => x.relu(), spread),
  u('silu', [3, 4], (x) => x.silu()),
  u('gelu_erf', [3, 4], (x) => x.gelu('none')),
  u('gelu_tanh', [3, 4], (x) => x.gelu('tanh')),
  b('add_bcast', [2, 3, 4], [4], (a, c) => a.add(c)),
  b('sub_bcast', [2, 1, 4], [3, 1], (a, c) => a.sub(c)),
  b('mul_bcast', [3, 1], [1, 4], (a, c) => a.mul(c)),
  b('div_bcast', [2, 3], [3], (a, c) => a.div(c), positive),
  b('where_lt', [3, 4], [4], (a, c) => a.graph.where(a.lt(c), a.mul(c), a.exp()), spread),
  u('sum_axes', [2, 3, 4], (x) => x.sum([0, 2])),
  u('sum_keep', [2, 3, 4], (x) => x.sum(1, true)),
  u('sum_all', [2, 3], (x) => x.sum()),
  u('mean', [2, 3, 4], (x) => x.mean([1, 2], true)),
  u('max', [2, 3, 4], (x) => x.max(2), spread),
  u('softmax_last', [2, 3, 5], (x) => x.softmax(-1)),
  u('softmax_mid', [2, 3, 5], (x) => x.softmax(1)),
  u('log_softmax', [2, 3, 5], (x) => x.logSoftmax(-1)),
  u('logsumexp', [2, 3, 5], (x) => x.logsumexp(2)),
  u('reshape', [2, 3, 4], (x) => x.reshape([4, 6]).mul(x.reshape([4, 6]))),
  u('transpose', [2, 3, 4], (x) => x.transpose([2, 0, 1]).exp()),
  u('slice', [2, 5, 3], (x) => x.slice(1, 1, 4).exp()),
  b('concat', [2, 3], [2, 2], (a, c) => a.graph.concat([a, c.exp(), a], 1)),
  u('expand', [3, 1], (x) => x.expand([2, 3, 4]).mul(x.expand([2, 3, 4]))),
  u('unsqueeze_squeeze', [3, 4], (x) => x.unsqueeze(1).exp().squeeze(1)),
  u('cast_roundtrip', [3, 4], (x) => x.cast('f32').tanh()),
  b('matmul_2d', [3, 4], [4, 5], (a, c) => a.matmul(c)),
  b('matmul_tA', [4, 3], [4, 5], (a, c) => a.matmul(c, { transA: true })),
  b('matmul_tB', [3, 4], [5, 4], (a, c) => a.matmul(c, { transB: true })),
  b('matmul_tAB', [4, 3], [5, 4], (a, c) => a.matmul(c, { transA: true, transB: true })),
  b('matmul_batched', [2, 3, 4], [2, 4, 5], (a, c) => a.matmul(c)),
  b('matmul_weight', [2, 3, 4], [4, 5], (a, c) => a.matmul(c)),
  b('matmul_weight_tB', [2, 3, 4], [5, 4], (a, c) => a.matmul(c, { transB: true })),
  b('matmul_bcast_batch', [2, 1, 3, 4], [3, 5, 4], (a, c) => a.matmul(c, { transB: true })),
  b('matmul_batched_tA', [2, 4, 3], [2, 4, 5], (a, c) => a.matmul(c, { transA: true })),
  {
    name: 'layer_norm',
    build(g) {
      const x = g.param('x', [2, 3, 6]);
      const w = g.param('w', [6]);
      const bb = g.param('bias', [6]);
      return { out: nn.layerNorm(x, w, bb, 1e-5), params: [x, w, bb] };
    },
  },
  {
    name: 'rms_norm',
    build(g) {
      const x = g.param('x', [2, 3, 6]);
      const w = g.param('w', [6]);
      return { out: nn.rmsNorm(x, w, 1e-6), params: [x, w] };
    },
  },
  {
    name: 'gather_embedding',
    ints: { ids: [1, 4, 1, 0, 2, 4] },
    build(g) {
      const table = g.param('table', [5, 3]);
      const ids = g.input('ids', [2, 3], 'i64');
      return { out: table.graph.apply1('gather', [table, ids]).tanh(), params: [table] };
    },
  },
  {
    name: 'scatter_add',
    ints: { ids: [1, 3, 1, 0] },
    build(g) {
      const upd = g.param('upd', [4, 2]);
      const ids = g.input('ids', [4], 'i64');
      return { out: g.apply1('scatter_add', [ids, upd], { rows: 5 }).mul(g.apply1('scatter_add', [ids, upd], { rows: 5 })), params: [upd] };
    },
  },
  {
    name: 'cross_entropy_ignore',
    ints: { labels: [2, -100, 0, 4, 1] },
    build(g) {
      const logits = g.param('logits', [5, 6]);
      const labels = g.input('labels', [5], 'i64');
      return { out: nn.crossEntropy(logits, labels, 4), params: [logits] };
    },
  },
  {
    name: 'cross_entropy_logp_output',
    ints: { labels: [2, 0, 3] },
    build(g) {
      const logits = g.param('logits', [3, 4]);
      const labels = g.input('labels', [3], 'i64');
      const [nll, logp] = g.apply('cross_entropy', [logits, labels], { ignoreIndex: -100 });
      return { out: nll!.sum().add(logp!.mul(logp!).sum()), params: [logits] };
    },
  },
  {
    name: 'rotary_partial',
    build(g) {
      const x = g.param('x', [1, 2, 3, 6]);
      const pos = [0, 1, 2];
      const rot = 4;
      const cos: number[] = [];
      const sin: number[] = [];
      for (const p of pos) for (let i = 0; i < rot; i++) {
        const f = p / Math.pow(10000, (2 * (i % (rot / 2))) / rot);
        cos.push(Math.cos(f));
        sin.push(Math.sin(f));
      }
      const c = g.constant(cos, [1, 1, 3, rot]);
      const s = g.constant(sin, [1, 1, 3, rot]);
      return { out: nn.applyRotary(x, c, s, rot), params: [x] };
    },
  },
  {
    name: 'attention_causal',
    build(g) {
      const q = g.param('q', [2, 2, 3, 4]);
      const k = g.param('k', [2, 2, 3, 4]);
      const v = g.param('v', [2, 2, 3, 4]);
      const bias: number[] = [];
      for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) bias.push(j <= i ? 0 : -1e9);
      const mask = g.constant(bias, [1, 1, 3, 3]);
      return { out: nn.attention(q, k, v, mask, 0.5), params: [q, k, v] };
    },
  },
];

export function initFeeds(c: Case, params: Value[], seed = 7): Record<string, Float64Array | number[]> {
  const rng = new Rng(seed);
  const feeds: Record<string, Float64Array | number[]> = {};
  for (const p of params) {
    const n = numel(p.shape);
    feeds[p.name] = c.init ? c.init(p.name, n, rng) : Float64Array.from({ length: n }, () => rng.normal());
  }
  for (const [k, v] of Object.entries(c.ints ?? {})) feeds[k] = v;
  return feeds;
}

/** a fixed random projection turning any output into a scalar loss with a non-trivial cotangent */
export function projectedLoss(g: Graph, out: Value, seed = 99): Value {
  const rng = new Rng(seed);
  const r = g.constant(Float64Array.from({ length: out.size }, () => rng.normal()), out.shape);
  return out.mul(r).sum();
}
