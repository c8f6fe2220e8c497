/**
 * Random kill tests: a long job runs in a child process (the real CLI), is SIGKILLed at a random moment
 * (drawn from a seed, anywhere in the job's run time, not at a named fault point), then continued until
 * it finishes; its outputs must equal an uninterrupted run's byte for byte.
 *
 * Jobs: `train` on the tiny random GPT-2 (Adam + LoRA, Adam full, MeZO full, MeZO + LoRA, and the Quad
 * objective on text), continued with `--resume`; `select run` (LESS) and `kernel compute` (eNTK) on the
 * embedded model, continued by running the same command into the same folder (both resume from their last finished shard/block);
 * `pretrain` on a small corpus, which has no --resume: running it again into its folder must give the
 * same model (a killed pretrain leaves nothing that changes a rerun). Data-parallel MeZO runs its ranks
 * as separate processes against a throwaway redis-server; the kill takes every rank or one of them, and
 * the same command on every rank continues the run.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../util/rng.ts';
import { SHARED_DATA } from '../tasks/test-fixtures.ts';
import { startLocalRedis, type LocalRedis } from '../distributed/redis-server.ts';

const CLI = new URL('../../bin/lmtune.js', import.meta.url).pathname;
const ROOT = new URL('../../', import.meta.url).pathname;
const MODEL = join(SHARED_DATA, 'models/tiny-random-gpt2');
const EMBEDDED = join(ROOT, 'assets/tiny-english-lm');
const SST2 = join(SHARED_DATA, 'sst2/glue_train.jsonl');

export interface KillJob {
  name: string;
  /** writes the job's inputs under `root` (once per job) */
  prepare: (root: string) => void;
  /** the command line of a fresh run into `out` */
  args: (root: string, out: string) => string[];
  /** the command line that continues a killed run in `out`; null: the run had finished (nothing to continue) */
  resume: (root: string, out: string) => string[] | null;
  /** files compared byte for byte with the uninterrupted run */
  outputs: string[];
  /**
   * data-parallel: the job is this many rank processes (`--data-parallel URL --world N --rank r` added to
   * `args` and `resume`) meeting in a throwaway redis-server (src/distributed/redis-server.ts). At the
   * drawn moment either every rank or one drawn rank is SIGKILLed; the others then stop on their own
   * (the dead rank's heartbeat expires), as after a lost machine
   */
  ranks?: number;
}

const LOGS = ['log.jsonl', 'eval.jsonl', 'checkpoint/state.json', 'checkpoint/trainable.safetensors'];

function trainJob(name: string, flags: string[], outputs: string[]): KillJob {
  const args = (root: string, out: string): string[] => ['train', '--model', MODEL, '--task', 'sst2', '--data', join(root, 'sst2.jsonl'), '--num-dev', '16', '--max-steps', '12', '--batch-size', '4', '--save-every', '1', '--eval-every', '4', '--seed', '3', ...flags, '--out', out];
  return {
    name,
    prepare: (root) => writeFileSync(join(root, 'sst2.jsonl'), readFileSync(SST2, 'utf8').split('\n').slice(0, 80).join('\n') + '\n'),
    args,
    // killed before config.json existed: nothing to resume, start it again (same folder); killed after
    // a run that finished (summary.json, the last file a run writes) is resumed too: `--resume` must succeed
    // at once and change nothing, which the byte comparison then checks
    resume: (root, out) => (existsSync(join(out, 'config.json')) ? ['train', '--resume', out] : args(root, out)),
    outputs,
  };
}

/** the first `n` non-blank lines of `from` into `to`, every `every`-th */
function sample(from: string, to: string, every: number, offset: number, n: number): void {
  const lines = readFileSync(from, 'utf8').split('\n').filter((l, i) => l.trim() && i % every === offset);
  writeFileSync(to, lines.slice(0, n).join('\n') + '\n');
}

const SELECT: KillJob = {
  name: 'select run',
  prepare: (root) => {
    sample(join(SHARED_DATA, 'instruct-pool/pool.jsonl'), join(root, 'pool.jsonl'), 500, 7, 40);
    sample(join(SHARED_DATA, 'instruct-pool/targets/trec_target.jsonl'), join(root, 'target.jsonl'), 4, 0, 8);
  },
  args: (root, out) => ['select', 'run', '--model', EMBEDDED, '--pool', join(root, 'pool.jsonl'), '--target', join(root, 'target.jsonl'), '--truncation', 'left', '--warmup-percentage', '0.2', '--warmup-epochs', '2', '--warmup-batch-size', '4', '--warmup-lr', '1e-3', '--proj-dim', '64', '--shard-rows', '8', '--grad-batch-size', '8', '--percentage', '0.25', '--threads', '1', '--no-progress', '--out', out],
  // a run killed before select.json exists starts again; afterwards --out alone continues it
  resume: (root, out) => (existsSync(join(out, 'select.json')) ? ['select', 'run', '--out', out, '--no-progress'] : SELECT.args(root, out)),
  outputs: ['selected.jsonl', 'scores.csv'],
};

const KERNEL: KillJob = {
  name: 'kernel compute',
  prepare: () => {},
  // layer 0 only, in blocks of 1 MiB of Jacobian: a dozen blocks, each saved as it finishes
  args: (_root, out) => ['kernel', 'compute', '--model', EMBEDDED, '--task', join(ROOT, 'src/kernel/tasks/sst2-single-token.yaml'), '--train', join(ROOT, 'assets/demo/sst2-train.jsonl'), '--limit-train', '6', '--eval', join(ROOT, 'assets/demo/sst2-dev.jsonl'), '--limit-eval', '4', '--batch', '4', '--formula', 'sgd', '--params', '\\.h\\.0\\.', '--mem-mb', '1', '--out', out],
  // "a rerun with the same flags resumes"
  resume: (root, out) => KERNEL.args(root, out),
  outputs: ['kernels.safetensors'],
};

const PRETRAIN: KillJob = {
  name: 'pretrain',
  prepare: (root) => {
    // a small corpus in the shared folder's layout
    const s = join(root, 'shared');
    for (const [dir, file, n] of [['tinyshakespeare', 'input.txt', 400], ['wikitext2', 'valid.txt', 200], ['sst2', 'glue_train.jsonl', 200], ['sst2', 'stsa.binary.train.jsonl', 200]] as const) {
      mkdirSync(join(s, dir), { recursive: true });
      writeFileSync(join(s, dir, file), readFileSync(join(SHARED_DATA, dir, file), 'utf8').split('\n').slice(0, n).join('\n') + '\n');
    }
  },
  args: (root, out) => ['pretrain', '--shared', join(root, 'shared'), '--vocab-size', '300', '--layers', '1', '--dim', '16', '--heads', '2', '--seq', '16', '--batch', '4', '--steps', '40', '--warmup', '4', '--threads', '1', '--out', out],
  resume: (root, out) => PRETRAIN.args(root, out),
  outputs: ['model.safetensors', 'config.json', 'vocab.json', 'merges.txt', 'pretrain_log.jsonl'],
};

/** the first `n` lines of `from`, from line `start` (0-based), into `to` */
function lines(from: string, to: string, start: number, n: number): void {
  writeFileSync(to, readFileSync(from, 'utf8').split('\n').slice(start, start + n).join('\n') + '\n');
}

// `train --objective quad` from the tiny GPT-2 (a cross-entropy checkpoint: A = I, Φ = its head, learned),
// on blank-line-separated text; checkpoints every 3 steps and evaluations every 4 do not line up, so a
// resume replays steps, evaluations and best/ writes between checkpoints
const QUAD: KillJob = {
  name: 'train quad',
  prepare: (root) => {
    lines(join(SHARED_DATA, 'tinyshakespeare/input.txt'), join(root, 'train.txt'), 0, 300);
    lines(join(SHARED_DATA, 'tinyshakespeare/input.txt'), join(root, 'dev.txt'), 300, 60);
  },
  args: (root, out) => ['train', '--model', MODEL, '--objective', 'quad', '--data', join(root, 'train.txt'), '--dev', join(root, 'dev.txt'), '--optimizer', 'adamw', '--lr', '1e-2', '--max-steps', '12', '--batch-size', '4', '--max-length', '32', '--save-every', '3', '--eval-every', '4', '--seed', '3', '--threads', '1', '--out', out],
  // as a task run: before config.json there is nothing to resume; a finished run's --resume changes nothing
  resume: (root, out) => (existsSync(join(out, 'config.json')) ? ['train', '--resume', out] : QUAD.args(root, out)),
  outputs: ['final/model.safetensors', 'final/quad.safetensors', 'best/model.safetensors', 'best/quad.safetensors', 'checkpoint/optimizer.safetensors', ...LOGS],
};

// data-parallel MeZO (full), 2 ranks with a batch of 4 (2 rows each), a checkpoint every 2 steps: a kill
// can leave the ranks' newest checkpoints one interval apart, and the rerun goes back to the common one
const DP_MEZO: KillJob = {
  name: 'mezo data-parallel',
  prepare: (root) => writeFileSync(join(root, 'sst2.jsonl'), readFileSync(SST2, 'utf8').split('\n').slice(0, 80).join('\n') + '\n'),
  args: (root, out) => ['train', '--model', MODEL, '--task', 'sst2', '--data', join(root, 'sst2.jsonl'), '--num-dev', '16', '--max-steps', '12', '--batch-size', '4', '--save-every', '2', '--eval-every', '4', '--seed', '3', '--optimizer', 'mezo', '--lr', '1e-3', '--zo-eps', '1e-3', '--dp-timeout', '2', '--out', out],
  // "the same command resumes" (src/distributed/data-parallel.ts), a finished run included
  resume: (root, out) => DP_MEZO.args(root, out),
  outputs: ['final/model.safetensors', 'trajectory.jsonl', 'checkpoints.jsonl', ...LOGS, 'rank-1/trajectory.jsonl', 'rank-1/checkpoints.jsonl', 'rank-1/checkpoint/state.json', 'rank-1/checkpoint/trainable.safetensors'],
  ranks: 2,
};

export const KILL_JOBS: readonly KillJob[] = [
  trainJob('train adam+lora', ['--optimizer', 'adam', '--lr', '1e-2', '--peft', 'lora'], ['final/adapter_model.safetensors', 'best/adapter_model.safetensors', 'checkpoint/optimizer.safetensors', ...LOGS]),
  trainJob('train adam full', ['--optimizer', 'adam', '--lr', '1e-3'], ['final/model.safetensors', 'checkpoint/optimizer.safetensors', ...LOGS]),
  trainJob('mezo full', ['--optimizer', 'mezo', '--lr', '1e-3', '--zo-eps', '1e-3'], ['final/model.safetensors', 'trajectory.jsonl', ...LOGS]),
  trainJob('mezo lora', ['--optimizer', 'mezo', '--lr', '1e-2', '--peft', 'lora'], ['final/adapter_model.safetensors', 'initial/adapter_model.safetensors', 'trajectory.jsonl', ...LOGS]),
  QUAD,
  DP_MEZO,
  SELECT,
  KERNEL,
  PRETRAIN,
];

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
}

function runCli(args: string[], killAfterMs?: number): Promise<Exit> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, LMTUNE_THREADS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = killAfterMs !== undefined ? setTimeout(() => p.kill('SIGKILL'), killAfterMs) : null;
    p.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stderr, ms: performance.now() - t0 });
    });
  });
}

/** a survivor of a one-rank kill that has not stopped this long after it (a bounded wait) is killed too */
const SURVIVOR_GRACE_MS = 30_000;

/**
 * The ranks of a data-parallel job, all at once, meeting at `url`; `victims` (rank numbers) are SIGKILLed
 * after `killAfterMs`. Exit: code 0 when every rank exited 0, SIGKILL when a victim was killed before it
 * finished, the ranks' stderr joined.
 */
async function runRanks(args: string[], ranks: number, url: string, kill?: { afterMs: number; victims: number[] }): Promise<Exit> {
  const t0 = performance.now();
  const flags = (r: number): string[] => ['--data-parallel', url, '--world', String(ranks), '--rank', String(r)];
  const all = Array.from({ length: ranks }, (_, r) => {
    const p = spawn(process.execPath, [CLI, ...args, ...flags(r)], { env: { ...process.env, LMTUNE_THREADS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => p.on('close', (code, signal) => resolve({ code, signal, stderr })));
    return { p, done };
  });
  const timers: NodeJS.Timeout[] = [];
  if (kill) {
    timers.push(
      setTimeout(() => {
        for (const r of kill.victims) all[r]!.p.kill('SIGKILL');
        timers.push(
          setTimeout(() => {
            for (const x of all) if (x.p.exitCode === null && x.p.signalCode === null) x.p.kill('SIGKILL');
          }, SURVIVOR_GRACE_MS),
        );
      }, kill.afterMs),
    );
  }
  const exits = await Promise.all(all.map((x) => x.done));
  timers.forEach((t) => clearTimeout(t));
  const killed = exits.some((e) => e.signal === 'SIGKILL');
  return {
    code: exits.every((e) => e.code === 0) ? 0 : (exits.find((e) => e.code !== 0)?.code ?? null),
    signal: killed ? 'SIGKILL' : null,
    stderr: exits.flatMap((e, r) => [...e.stderr.trim().split('\n').map((l) => `rank ${r}: ${l}`), `rank ${r}: ${e.signal ?? `exit ${e.code}`}`]).join('\n'),
    ms: performance.now() - t0,
  };
}

export interface KillReport {
  job: string;
  /** runs started */
  runs: number;
  /** runs that really were killed before finishing */
  kills: number;
  /** runs whose resume failed, or whose outputs differ from the uninterrupted run */
  lost: number;
  differing: number;
  problems: string[];
}

/** the error lines of a failed run (each rank's, for data-parallel jobs), or its last line */
function errorLines(stderr: string): string {
  const lines = stderr.trim().split('\n');
  const errors = lines.filter((l) => /\berror\b/i.test(l));
  return errors.length ? errors.join(' | ') : (lines.pop() ?? '');
}

/** `runs` kills of one job, at moments drawn from `seed`; `root` is a scratch folder (emptied) */
export async function killJob(job: KillJob, runs: number, seed: number, root: string, onRun?: (k: number, note: string) => void): Promise<KillReport> {
  const report: KillReport = { job: job.name, runs: 0, kills: 0, lost: 0, differing: 0, problems: [] };
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  job.prepare(root);
  const redis: LocalRedis | null = job.ranks ? await startLocalRedis() : null;
  try {
    // data-parallel runs one after the other, each in its own Redis database (a killed rank's meeting
    // entry outlives it by a few seconds; it must not meet the next run's ranks)
    const run = (args: string[], db: number, kill?: { afterMs: number; victims: number[] }): Promise<Exit> =>
      redis && job.ranks ? runRanks(args, job.ranks, `${redis.url}/${db}`, kill) : runCli(args, kill?.afterMs);
    const base = join(root, 'base');
    const b = await run(job.args(root, base), 0);
    if (b.code !== 0) throw new Error(`${job.name}: the uninterrupted run failed: ${b.stderr}`);
    const expected = job.outputs.map((f) => readFileSync(join(base, f)));
    const rng = new Rng(`kill/${seed}/${job.name}`);
    for (let k = 0; k < runs; k++) {
      report.runs++;
      const dir = join(root, `run${k}`);
      const db = 1 + (k % 15);
      // anywhere from process start to a little past the uninterrupted run's end
      const at = Math.floor(rng.uniform() * b.ms * 1.1);
      // data-parallel: every rank (a crash of the whole job), or one rank (a lost machine), half the time each
      const victims = job.ranks ? (rng.uniform() < 0.5 ? Array.from({ length: job.ranks }, (_, r) => r) : [Math.floor(rng.uniform() * job.ranks)]) : [0];
      const what = `killed at ${at} ms${job.ranks ? ` (rank${victims.length > 1 ? 's' : ''} ${victims.join(', ')})` : ''}`;
      const first = await run(job.args(root, dir), db, { afterMs: at, victims });
      const killed = first.signal === 'SIGKILL';
      if (killed) report.kills++;
      let ok = first.code === 0;
      // a run that finished before the kill is continued once too, as a retry loop would: the
      // continuation of a finished run must succeed and change no byte (`finishedRun` in src/train/loop.ts)
      const again = ok ? job.resume(root, dir) : null;
      if (again !== null) {
        const r = await run(again, db);
        if (r.code !== 0) {
          report.lost++;
          report.problems.push(`run ${k} (${killed ? what : 'finished first'}): continuing the finished run failed: ${errorLines(r.stderr)}`);
          continue;
        }
      }
      for (let attempt = 0; !ok && attempt < 3; attempt++) {
        const args = job.resume(root, dir);
        if (args === null) {
          ok = true;
          break;
        }
        const r = await run(args, db);
        ok = r.code === 0;
        // a failed attempt is reported even when a later one succeeds: a user would have seen it fail
        if (!ok) report.problems.push(`run ${k} (${what}): resume ${attempt < 2 ? `attempt ${attempt + 1} failed (retried)` : 'failed'}: ${errorLines(r.stderr)}`);
      }
      if (!ok) {
        report.lost++;
        continue;
      }
      const differs = job.outputs.filter((f, i) => !existsSync(join(dir, f)) || !readFileSync(join(dir, f)).equals(expected[i]!));
      if (differs.length) {
        report.differing++;
        report.problems.push(`run ${k} (${what}${killed ? '' : ', finished first'}): ${differs.join(', ')} differ`);
      }
      onRun?.(k, `${killed ? what : 'finished before the kill'}${differs.length ? `, DIFFERS: ${differs.join(', ')}` : ''}`);
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    await redis?.stop();
  }
  rmSync(root, { recursive: true, force: true });
  return report;
}
