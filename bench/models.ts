/**
 * Model-level benchmarks on a GPT-2-small-shaped model (random weights; 124M parameters, vocab 50257,
 * 12 layers, d=768) at batch 16 × 128 tokens, each measured in its own child process so peak RSS is
 * the measured mode's alone, side by side with the PyTorch reference script in the same run:
 *   forward  language-model loss over all positions (tokens/s)
 *   mezo     one MeZO step (perturb, 2 forward passes, fused restore+update), the reference's zo_step/zo_update
 *   train    one full fine-tuning AdamW step (backprop through every weight) as `lmtune train` takes it
 *            (train/stepper.ts), with the same run's sgemm rate and the step's matmul work: the time the
 *            step would take at that rate (`sgemm_limit_ms`) is the bound it is compared with
 */
import { spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Rng } from '../src/util/rng.ts';
import { packBatch } from '../src/models/batch.ts';
import { padTargets, type LossRequest } from '../src/heads/objective.ts';
import { MezoOptimizer } from '../src/optim/mezo.ts';
import { compileOrt, Graph } from '../src/engine/index.ts';
import { trainConfigFromOptions } from '../src/train/options.ts';
import { makeStepper } from '../src/train/stepper.ts';
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
    // the step of `lmtune train --optimizer adamw --weight-decay 0.01`: gradients written by onnxruntime
    // into the accumulator's buffers, their global norm (logged), the AdamW update in place
    const cfg = trainConfigFromOptions({ model: '(bench)', task: 'lm', data: '(bench)', optimizer: 'adamw', lr: '1e-5', weightDecay: '0.01', batchSize: String(SHAPE.batch) });
    const stepper = makeStepper(cfg, model, '(unused: first-order steps write no files)');
    let step = 0;
    // CPU time of the timed steps only (the warm-up compiles the graph)
    let cpu: NodeJS.CpuUsage | undefined;
    out.adam_step_ms = await timeMs(() => {
      if (step === 1) cpu = process.cpuUsage();
      return stepper.step(() => req, step++, 1e-5);
    }, 2);
    const used = process.cpuUsage(cpu);
    out.sys_s_per_step = used.system / 1e6 / (step - 1);
    out.user_s_per_step = used.user / 1e6 / (step - 1);
    out.peak_rss_mb = peakRssMb();
    out.sgemm_gflops = await sgemmGflops(threads);
  } else throw new Error(`unknown mode ${mode}`);
  out.peak_rss_mb ??= peakRssMb();
  return out;
}

/** the same-run sgemm rate (GFLOP/s): 1024×768 · 768×3072, weights as inputs, output bound */
async function sgemmGflops(threads: number): Promise<number> {
  const g = new Graph('sgemm');
  const mm = await compileOrt({ c: g.param('a', [1024, 768]).matmul(g.param('b', [768, 3072])) }, { threads });
  const feeds = { a: new Float32Array(1024 * 768).fill(0.5), b: new Float32Array(768 * 3072).fill(0.25) };
  const c = new Float32Array(1024 * 3072);
  const ms = await timeMs(() => mm.run(feeds, { c }), 10);
  return (2 * 1024 * 768 * 3072) / (ms * 1e6);
}

/**
 * Matmul work of one training step (GFLOP): per layer the four projections (3d, d, 4d, 4d outputs) over
 * B·T tokens and the two attention products, the tied head over the B·(T − 1) target rows; the backward
 * pass does twice the forward's (a product each for the input and the weight gradient).
 */
export function trainStepGflop(s: typeof SHAPE = SHAPE): number {
  const N = s.batch * s.seq;
  const perLayer = 2 * N * s.d * (3 * s.d + s.d + 4 * s.d + 4 * s.d) + 2 * (2 * s.batch * s.seq * s.seq * s.d);
  const head = 2 * s.batch * (s.seq - 1) * s.d * s.vocab;
  return (3 * (s.layers * perLayer + head)) / 1e9;
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
  const load = loadavg()[0]!;
  const a = child('train', threads);
  const gflop = trainStepGflop();
  const limit = a.sgemm_gflops ? (gflop / a.sgemm_gflops) * 1000 : undefined;
  const res: Record<string, unknown> = {
    bench: 'train',
    threads,
    shape: SHAPE,
    adam_step_ms: round(a.adam_step_ms),
    adam_peak_rss_mb: round(a.peak_rss_mb),
    sys_s_per_step: round(a.sys_s_per_step),
    user_s_per_step: round(a.user_s_per_step),
    matmul_gflop: round(gflop),
    sgemm_gflops: round(a.sgemm_gflops),
    sgemm_limit_ms: round(limit),
    sgemm_limit_over_step: ratio(limit, a.adam_step_ms),
  };
  const t = torchBaseline('adam', torchArgs, threads);
  if (t) {
    res.torch = t;
    res.speedup_vs_torch = ratio(t.adam_step_ms, a.adam_step_ms);
    res.rss_over_torch = ratio(a.peak_rss_mb, t.peak_rss_mb);
  }
  res.load_avg = [load, loadavg()[0]!].map((x) => Math.round(x * 100) / 100);
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
