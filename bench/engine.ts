/**
 * `npm run bench -- engine`: sgemm throughput and one GPT-2-small block (d=768, 12 heads, 8×128 tokens)
 * forward and forward+backward, side by side with the same block in PyTorch in the same run.
 */
import { Graph, compileOrt, grad, nn, type Value } from '../src/engine/index.ts';
import { Rng } from '../src/util/rng.ts';
import { peakRssMb, ratio, timeMs, torchBaseline } from './harness.ts';

function randn(n: number, scale: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

export async function benchEngine(threads: number): Promise<Record<string, unknown>> {
  const rng = new Rng(0);
  // sgemm 1024x768 @ 768x3072
  const g0 = new Graph('sgemm');
  const a = g0.param('a', [1024, 768]);
  const b = g0.param('b', [768, 3072]);
  const mm = await compileOrt({ c: a.matmul(b) }, { threads });
  const fa = { a: randn(1024 * 768, 1, rng), b: randn(768 * 3072, 1, rng) };
  const out = new Float32Array(1024 * 3072);
  const mmMs = await timeMs(() => mm.run(fa, { c: out }), 10);
  const sgemm = (2 * 1024 * 768 * 3072) / (mmMs * 1e6);

  // GPT-2 block
  const B = 8;
  const T = 128;
  const D = 768;
  const H = 12;
  const g = new Graph('block');
  const x = g.param('x', [B, T, D]);
  const P = (n: string, s: number[]): Value => g.param(n, s);
  const ln1w = P('ln1.w', [D]);
  const ln1b = P('ln1.b', [D]);
  const wqkv = P('attn.w', [D, 3 * D]);
  const bqkv = P('attn.b', [3 * D]);
  const wo = P('proj.w', [D, D]);
  const bo = P('proj.b', [D]);
  const ln2w = P('ln2.w', [D]);
  const ln2b = P('ln2.b', [D]);
  const wfc = P('fc.w', [D, 4 * D]);
  const bfc = P('fc.b', [4 * D]);
  const wp = P('mlp.w', [4 * D, D]);
  const bp = P('mlp.b', [D]);
  const bias = g.input('bias', [1, 1, T, T]);
  const a1 = nn.layerNorm(x, ln1w, ln1b, 1e-5);
  const qkv = a1.matmul(wqkv).add(bqkv);
  const q = nn.splitHeads(qkv.slice(-1, 0, D), H);
  const k = nn.splitHeads(qkv.slice(-1, D, 2 * D), H);
  const v = nn.splitHeads(qkv.slice(-1, 2 * D, 3 * D), H);
  let h = x.add(nn.mergeHeads(nn.attention(q, k, v, bias, 1 / Math.sqrt(D / H))).matmul(wo).add(bo));
  h = h.add(nn.layerNorm(h, ln2w, ln2b, 1e-5).matmul(wfc).add(bfc).gelu('tanh').matmul(wp).add(bp));
  const loss = h.square().mean();
  const params = [x, ln1w, ln1b, wqkv, bqkv, wo, bo, ln2w, ln2b, wfc, bfc, wp, bp];
  const grads = grad(loss, params);
  const gOut: Record<string, Value> = { loss };
  grads.forEach((gv, i) => (gOut[`g${i}`] = gv));
  const fwd = await compileOrt({ y: h }, { threads });
  const fb = await compileOrt(gOut, { threads });
  const feeds: Record<string, Float32Array> = {};
  for (const p of params) feeds[p.name] = p.name.startsWith('ln') && p.name.endsWith('.w') ? new Float32Array(p.size).fill(1) : randn(p.size, p === x ? 1 : 0.02, rng);
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = -1e9;
  feeds.bias = mask;
  const yBuf = new Float32Array(B * T * D);
  const fwdMs = await timeMs(() => fwd.run(feeds, { y: yBuf }), 5);
  const fbMs = await timeMs(() => fb.run(feeds), 5);
  const result: Record<string, unknown> = {
    bench: 'engine',
    threads,
    sgemm_gflops: Math.round(sgemm * 10) / 10,
    block_fwd_ms: Math.round(fwdMs * 10) / 10,
    block_fwdbwd_ms: Math.round(fbMs * 10) / 10,
    peak_rss_mb: Math.round(peakRssMb()),
  };
  const torch = torchBaseline('block', [], threads);
  if (torch) {
    result.torch = torch;
    result.speedup_fwd_vs_torch = ratio(torch.block_fwd_ms, fwdMs);
    result.speedup_fwdbwd_vs_torch = ratio(torch.block_fwdbwd_ms, fbMs);
  }
  return result;
}
