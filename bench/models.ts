/**
 * Model-level benchmarks on a GPT-2-small-shaped model (random weights; 124M parameters, vocab 50257,
 * 12 layers, d=768) at batch 16 × 128 tokens, each measured in its own child process so peak RSS is
 * the measured mode's alone, side by side with the PyTorch reference script in the same run:
 *   forward  language-model loss over all positions (tokens/s)
 *   mezo     one MeZO step (perturb, 2 forward passes, fused restore+update), the reference's zo_step/zo_update
 *   train    one full fine-tuning AdamW step (backprop through every weight)
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Rng } from '../src/util/rng.ts';
import { packBatch } from '../src/models/batch.ts';
import { padTargets, type LossRequest } from '../src/models/model.ts';
import { MezoOptimizer } from '../src/optim/mezo.ts';
import { Adam } from '../src/optim/adam.ts';
import { gpt2Small, peakRssMb, ratio, timeMs, torchBaseline } from './harness.ts';

const SHAPE = { layers: 12, d: 768, heads: 12, vocab: 50257, batch: 16, seq: 128 };


function lmRequest(): LossRequest {
  const rng = new Rng(1);
  const { batch: B, seq: T, vocab: V } = SHAPE;
  const seqs = Array.from({ length: B }, () => Array.from({ length: T }, () => rng.int(V)));
  const batch = packBatch(seqs, { side: 'right', padId: 0, seq: T, batch: B });
  const index: number[] = [];
  const label: number[] = [];
  seqs.forEach((s, b) => {
    for (let t = 0; t + 1 < T; t++) {
      index.push(b * T + t);
      label.push(s[t + 1]!);
    }
  });
  return { batch, targets: padTargets(index, label, index.length), objective: { kind: 'token', weight: new Float32Array(index.length).fill(1 / index.length) } };
}

/** one mode, in this process */
export async function runMode(mode: string, threads: number): Promise<Record<string, number>> {
  const model = gpt2Small(threads);
  const req = lmRequest();
  const out: Record<string, number> = { params: model.weights.numParams() };
  if (mode === 'forward') {
    const ms = await timeMs(() => model.loss(req), 3);
    out.forward_ms = ms;
    out.tokens_per_s = (SHAPE.batch * SHAPE.seq) / (ms / 1000);
  } else if (mode === 'mezo') {
    const params = model.trainableParams();
    const opt = new MezoOptimizer(params, { eps: 1e-3 });
    let seed = 0;
    out.mezo_step_ms = await timeMs(() => opt.step(seed++, async () => (await model.loss(req)).loss, 1e-6), 2);
  } else if (mode === 'train') {
    const names = model.trainableNames();
    const params = model.trainableParams();
    const opt = new Adam({ weightDecayMode: 'decoupled', weightDecay: 0.01 });
    out.adam_step_ms = await timeMs(async () => {
      const r = await model.loss(req, names);
      opt.step(params, r.grads!, 1e-5);
    }, 2);
  } else throw new Error(`unknown mode ${mode}`);
  out.peak_rss_mb = peakRssMb();
  return out;
}

function child(mode: string, threads: number): Record<string, number> {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', mode, String(threads)], { encoding: 'utf8', maxBuffer: 1 << 20, env: { ...process.env } });
  if (r.status !== 0) throw new Error(`bench child ${mode} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
}

const torchArgs = ['--layers', '12', '--d', '768', '--heads', '12', '--vocab', '50257', '--batch', '16', '--seq', '128', '--reps', '2'];
const round = (x: number | undefined): number | undefined => (x === undefined ? undefined : Math.round(x * 10) / 10);

export async function benchForward(threads: number): Promise<Record<string, unknown>> {
  const f = child('forward', threads);
  const res: Record<string, unknown> = { bench: 'forward', threads, shape: SHAPE, forward_ms: round(f.forward_ms), tokens_per_s: round(f.tokens_per_s), peak_rss_mb: round(f.peak_rss_mb) };
  const t = torchBaseline('forward', torchArgs, threads);
  if (t) {
    res.torch = { ...t, tokens_per_s: typeof t.forward_ms === 'number' ? round((SHAPE.batch * SHAPE.seq) / (t.forward_ms / 1000)) : undefined };
    res.speedup_vs_torch = ratio(t.forward_ms, f.forward_ms);
  }
  return res;
}

export async function benchTrain(threads: number): Promise<Record<string, unknown>> {
  const a = child('train', threads);
  const res: Record<string, unknown> = { bench: 'train', threads, shape: SHAPE, adam_step_ms: round(a.adam_step_ms), adam_peak_rss_mb: round(a.peak_rss_mb) };
  const t = torchBaseline('adam', torchArgs, threads);
  if (t) {
    res.torch = t;
    res.speedup_vs_torch = ratio(t.adam_step_ms, a.adam_step_ms);
  }
  return res;
}

export async function benchMezo(threads: number): Promise<Record<string, unknown>> {
  const m = child('mezo', threads);
  const f = child('forward', threads);
  const a = child('train', threads);
  const res: Record<string, unknown> = {
    bench: 'mezo',
    threads,
    shape: SHAPE,
    mezo_step_ms: round(m.mezo_step_ms),
    mezo_peak_rss_mb: round(m.peak_rss_mb),
    inference_peak_rss_mb: round(f.peak_rss_mb),
    adam_peak_rss_mb: round(a.peak_rss_mb),
    forward_ms: round(f.forward_ms),
    adam_step_ms: round(a.adam_step_ms),
    mezo_rss_over_inference: ratio(m.peak_rss_mb, f.peak_rss_mb),
  };
  const t = torchBaseline('mezo', torchArgs, threads);
  if (t) {
    res.torch = t;
    res['torch.mezo_step_ms'] = t.mezo_step_ms;
    res.speedup_vs_torch = ratio(t.mezo_step_ms, m.mezo_step_ms);
  }
  return res;
}

if (process.argv[2] === '--child') {
  const r = await runMode(process.argv[3]!, Number(process.argv[4]));
  process.stdout.write(JSON.stringify(r) + '\n');
}
