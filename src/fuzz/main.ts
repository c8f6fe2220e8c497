/**
 * `npm run fuzz -- kill ["job name"] [--runs N] [--seed S]`: random kill tests (kill.ts), 20 per job.
 * `npm run fuzz -- [target] [--runs N] [--seed S] [--time-limit MS]`: runs every target (or one) and
 * prints a table of cases, clear errors, crashes (no clear error) and hangs, then each failure's seed,
 * fast-check path and shrunk input. Each target runs in a worker thread watched from here, so a case
 * stuck in a synchronous loop is reported as a hang (with its input) instead of stopping the run.
 * Exit status 1 when anything failed.
 */
import '../node/host.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { KILL_JOBS, killJob, type KillReport } from './kill.ts';
import { TARGETS } from './targets.ts';
import type { FuzzReport } from './runner.ts';

interface Args {
  targets: string[];
  runs: number;
  seed: number;
  timeLimitMs: number;
}

function parseArgs(argv: string[], kill = false): Args {
  const a: Args = { targets: [], runs: kill ? 20 : 1000, seed: 1, timeLimitMs: 5000 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i]!;
    const next = (): number => {
      const n = Number(argv[++i]);
      if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${v} needs a non-negative integer, got ${argv[i]}`);
      return n;
    };
    if (v === '--runs') a.runs = next();
    else if (v === '--seed') a.seed = next();
    else if (v === '--time-limit') a.timeLimitMs = next();
    else if (v.startsWith('--')) throw new Error(`unknown option ${v} (known: --runs, --seed, --time-limit)`);
    else a.targets.push(v);
  }
  const names = kill ? KILL_JOBS.map((j) => j.name) : TARGETS.map((t) => t.name);
  for (const t of a.targets) if (!names.includes(t)) throw new Error(`unknown ${kill ? 'job' : 'target'} ${t} (known: ${names.join(', ')}${kill ? '' : ', kill'})`);
  if (!a.targets.length && !kill) a.targets = names;
  return a;
}

function bootstrap(): string {
  const api = import.meta.resolve('tsx/esm/api');
  const target = new URL('./worker.ts', import.meta.url).href;
  return `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
}

type Msg = { kind: 'case'; index: number; input: string } | { kind: 'done'; report: FuzzReport } | { kind: 'error'; message: string };

/** one worker from case `startAt`; resolves with its report, or with the case that hung */
function runWorker(target: string, a: Args, startAt: number): Promise<{ report: FuzzReport } | { hungAt: number; input: string }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(bootstrap(), { eval: true, workerData: { target, runs: a.runs, seed: a.seed, timeLimitMs: a.timeLimitMs, startAt } });
    let current = { index: startAt, input: '' };
    let timer: NodeJS.Timeout | null = null;
    const arm = (): void => {
      if (timer) clearTimeout(timer);
      // twice the per-case limit (slow cases are counted by the worker itself), plus shrinking slack
      timer = setTimeout(() => {
        void w.terminate();
        resolve({ hungAt: current.index, input: current.input });
      }, 2 * a.timeLimitMs + 10_000);
    };
    arm();
    w.on('message', (m: Msg) => {
      if (m.kind === 'case') {
        current = { index: m.index, input: m.input };
        arm();
      } else if (m.kind === 'done') {
        if (timer) clearTimeout(timer);
        void w.terminate();
        resolve({ report: m.report });
      } else {
        if (timer) clearTimeout(timer);
        reject(new Error(m.message));
      }
    });
    w.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
  });
}

async function fuzzTarget(target: string, a: Args): Promise<FuzzReport> {
  const total: FuzzReport = { target, cases: 0, ok: 0, clear: 0, crashes: 0, hangs: 0, examples: [], failure: null };
  let startAt = 0;
  while (startAt < a.runs) {
    const r = await runWorker(target, a, startAt);
    if ('report' in r) {
      for (const k of ['cases', 'ok', 'clear', 'crashes', 'hangs'] as const) total[k] += r.report[k];
      total.examples.push(...r.report.examples);
      total.failure ??= r.report.failure;
      break;
    }
    if (r.hungAt < 0) {
      // stuck while shrinking a failure: report the input it was trying
      total.hangs++;
      total.failure ??= { kind: 'hang', message: 'stuck while shrinking (worker terminated)', seed: a.seed, path: '', input: r.input };
      break;
    }
    // the worker was stuck in one case: count what it finished, record the hang, go on after it
    total.cases += r.hungAt - startAt + 1;
    total.hangs++;
    total.examples.push({ index: r.hungAt, kind: 'hang', message: 'no answer within the watchdog (stuck)', input: r.input.slice(0, 600) });
    total.failure ??= { kind: 'hang', message: 'stuck (worker terminated)', seed: a.seed, path: `case ${r.hungAt} of fc.sample`, input: r.input };
    startAt = r.hungAt + 1;
  }
  return total;
}

function table(reports: FuzzReport[]): string {
  const rows = [['target', 'cases', 'ok', 'clear error', 'crashes', 'hangs'], ...reports.map((r) => [r.target, r.cases, r.ok, r.clear, r.crashes, r.hangs].map(String))];
  const w = rows[0]!.map((_, j) => Math.max(...rows.map((r) => r[j]!.length)));
  return rows.map((r) => r.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join('  ')).join('\n') + '\n';
}

async function killMain(argv: string[]): Promise<void> {
  const a = parseArgs(argv.filter((x) => x !== 'kill'), true);
  const jobs = a.targets.length ? KILL_JOBS.filter((j) => a.targets.includes(j.name)) : KILL_JOBS;
  const reports: KillReport[] = [];
  for (const job of jobs) {
    const root = mkdtempSync(join(tmpdir(), 'lmtune-kill-'));
    reports.push(await killJob(job, a.runs, a.seed, root, (k, note) => process.stderr.write(`${job.name} run ${k + 1}/${a.runs}: ${note}\n`)));
  }
  const rows = [['job', 'runs', 'killed', 'lost', 'differing'], ...reports.map((r) => [r.job, r.runs, r.kills, r.lost, r.differing].map(String))];
  const w = rows[0]!.map((_, j) => Math.max(...rows.map((r) => r[j]!.length)));
  process.stdout.write(`seed ${a.seed}, ${a.runs} random kills per job\n\n` + rows.map((r) => r.map((c, j) => (j === 0 ? c.padEnd(w[j]!) : c.padStart(w[j]!))).join('  ')).join('\n') + '\n');
  for (const r of reports) for (const p of r.problems) process.stdout.write(`${r.job}: ${p}\n`);
  if (reports.some((r) => r.lost || r.differing)) process.exitCode = 1;
}

const argv = process.argv.slice(2);
if (argv[0] === 'kill') {
  await killMain(argv);
  process.exit();
}
const a = parseArgs(argv);
const reports: FuzzReport[] = [];
for (const t of a.targets) {
  const t0 = performance.now();
  const r = await fuzzTarget(t, a);
  reports.push(r);
  process.stderr.write(`${t}: ${r.cases} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
process.stdout.write(`seed ${a.seed}, ${a.runs} runs per target, ${a.timeLimitMs} ms per case\n\n` + table(reports));
for (const r of reports) {
  for (const e of r.examples) process.stdout.write(`\n${r.target} case ${e.index} (${e.kind}): ${e.message}\n  input: ${e.input}\n`);
  if (r.failure) process.stdout.write(`\n${r.target}: shrunk failure (${r.failure.kind}) — seed ${r.failure.seed}, path "${r.failure.path}"\n  ${r.failure.message.split('\n')[0]}\n  input: ${r.failure.input}\n`);
}
if (reports.some((r) => r.crashes || r.hangs)) process.exitCode = 1;
