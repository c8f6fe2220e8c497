/**
 * Perturbation speed: ns per element for one MeZO pass, with rng.ts's fillGaussian (Philox + Box-Muller)
 * measured in the same run as the baseline. Prints one JSON object.
 *   node --import tsx bench/perturb.ts [--elements N]
 * (A --threads T variant ran the passes on worker threads; it was slower here and removed: docs/optim.md.)
 */
import { fillGaussian } from '../src/util/rng.ts';
import { LocalPassRunner, MezoOptimizer } from '../src/optim/mezo.ts';
import type { NamedParam } from '../src/optim/types.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const total = arg('--elements', 1 << 23);
const GPT2_SMALL = 124_439_808;

// GPT-2-like mix of tensor sizes: a few big matrices and small vectors
function makeParams(n: number): NamedParam[] {
  const out: NamedParam[] = [];
  let left = n;
  let k = 0;
  while (left > 0) {
    const size = Math.min(left, k % 4 === 3 ? 768 : 589_824);
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = ((i * 2654435761) % 1000) / 25000 - 0.02;
    out.push({ name: `t${k}.weight`, data });
    left -= size;
    k++;
  }
  return out;
}

async function time(reps: number, f: () => Promise<void> | void): Promise<number> {
  await f();
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    await f();
    best = Math.min(best, Number(process.hrtime.bigint() - t0));
  }
  return best;
}

const baseN = 1 << 20;
const base = new Float32Array(baseN);
const baselineNs = (await time(2, () => fillGaussian(base, 1, 0, 0, 1))) / baseN;

const params = makeParams(total);
const runner = new LocalPassRunner();
const ctx = { xs: params.map((p) => p.data), wds: params.map(() => 0), slots: params.map(() => []) };
const res: Record<string, number | string> = { elements: total, baseline_fillGaussian_ns_per_elem: +baselineNs.toFixed(2) };
for (const dist of ['gaussian', 'rademacher'] as const) {
  const ns = (await time(3, () => runner.run({ kind: 'add', seed: 7, dist, scale: 1e-3 }, ctx))) / total;
  res[`add_${dist}_ns_per_elem`] = +ns.toFixed(2);
}
const opt = new MezoOptimizer(params, { eps: 1e-3 });
let calls = 0;
const stepNs = await time(2, async () => {
  await opt.step(11 + calls++, async () => 1 + calls * 1e-4, 1e-6);
});
res.mezo_step_ns_per_elem = +(stepNs / total).toFixed(2);
res.gpt2_small_step_perturbation_s = +((stepNs / total) * GPT2_SMALL * 1e-9).toFixed(3);
res.gpt2_small_elements = GPT2_SMALL;
console.log(JSON.stringify(res));
