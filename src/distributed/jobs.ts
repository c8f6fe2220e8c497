/**
 * The job contract shared by coordinators and workers: one BullMQ queue per job kind, every job an
 * envelope (kind, model fingerprint, code version, payload), and a registry of kinds. A worker runs a
 * job only when the model it would load and the code it runs are the ones the coordinator assumed;
 * anything else would merge results computed by different models or code without anyone noticing.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import type { LanguageModel } from '../models/api.ts';

/** Bumped when a job payload or result changes shape; part of the code version a worker checks. */
export const JOB_PROTOCOL = 1;

function packageVersion(): string {
  const raw = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return raw.version ?? '0.0.0';
}

/** "lmtune@<package version>/jobs-<protocol>": coordinator and worker must agree on it. */
export const CODE_VERSION = `lmtune@${packageVersion()}/jobs-${JOB_PROTOCOL}`;

export interface ModelRef {
  /** checkpoint folder as the worker sees it (a shared path in a cluster) */
  readonly dir: string;
  /** sha256 of the folder's files (see fingerprintModelDir) */
  readonly fingerprint: string;
}

export interface JobEnvelope<P = unknown> {
  readonly kind: string;
  readonly model: ModelRef;
  readonly codeVersion: string;
  readonly payload: P;
}

export interface JobContext {
  /** the envelope's model, loaded on first use and cached by fingerprint (kinds that load their own never call it) */
  model(): Promise<LanguageModel>;
  /** the envelope's model folder, already checked against the job's fingerprint */
  readonly modelDir: string;
  /** fraction done in [0, 1] of this job */
  progress(fraction: number): Promise<void>;
  log(line: string): void;
}

/**
 * Thrown by a kind's `run` when this worker must not run the job at all (its copy of the data, configuration
 * or datastore differs from the coordinator's): the job fails at once, without retries, with the reason.
 */
export class JobRefused extends Error {
  override readonly name = 'JobRefused';
}

/** One kind of work: how to check its payload (it crossed a network) and how to run it. */
export interface JobKind<P, R> {
  readonly name: string;
  parsePayload(raw: unknown): P;
  run(ctx: JobContext, payload: P): Promise<R>;
}

// the registry is keyed by name; kinds register themselves from their own modules
const kinds = new Map<string, JobKind<unknown, unknown>>();

export function registerJobKind<P, R>(kind: JobKind<P, R>): void {
  if (!/^[a-z][a-z0-9-]*$/.test(kind.name)) throw new LmtuneError('CONFIG', `job kind name ${JSON.stringify(kind.name)} must be lower-case words joined by -`);
  kinds.set(kind.name, kind as JobKind<unknown, unknown>);
}

export function getJobKind(name: string): JobKind<unknown, unknown> {
  const k = kinds.get(name);
  if (!k) throw new LmtuneError('CONFIG', `unknown job kind ${JSON.stringify(name)}; known: ${[...kinds.keys()].join(', ') || '(none)'}`);
  return k;
}

export function jobKindNames(): string[] {
  return [...kinds.keys()].sort();
}

/** BullMQ queue of a kind (keys live under the "bull:" prefix). */
export function queueName(kind: string): string {
  return `lmtune-${kind}`;
}

/** Checks `redis://HOST:PORT[/DB]` and returns BullMQ/ioredis connection options. */
export function connectionFromUrl(url: string, flag = '--queue'): { url: string; maxRetriesPerRequest: null; db: number } {
  const m = /^redis:\/\/([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})(?:\/(\d{1,2}))?\/?$/.exec(url.trim());
  if (!m) throw new LmtuneError('CONFIG', `${flag} must look like redis://HOST:PORT[/DB], got ${JSON.stringify(url)}`, 'start Redis with: redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly yes (the queue then survives a Redis restart; docs/distributed.md)');
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new LmtuneError('CONFIG', `${flag}: port ${port} is out of range`);
  // maxRetriesPerRequest null: BullMQ workers block on Redis and must not give up on a slow reply
  return { url: url.trim(), maxRetriesPerRequest: null, db: m[3] !== undefined ? Number(m[3]) : 0 };
}

/**
 * sha256 over the checkpoint folder's regular files (names and bytes, sorted by name, not recursive):
 * two machines holding the same checkpoint agree on it whatever the paths and timestamps.
 */
export function fingerprintModelDir(dir: string): string {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => statSync(join(dir, n)).isFile()).sort();
  } catch (e) {
    throw new LmtuneError('CHECKPOINT', `${dir}: cannot read the model folder (${(e as Error).message})`);
  }
  if (names.length === 0) throw new LmtuneError('CHECKPOINT', `${dir}: the model folder holds no files`);
  const h = createHash('sha256');
  for (const n of names) {
    h.update(`${n}\0`);
    h.update(readFileSync(join(dir, n)));
    h.update('\0');
  }
  return h.digest('hex');
}

/** Why a worker must refuse this envelope, or undefined when it may run it. */
export function mismatchReason(job: JobEnvelope, local: { codeVersion: string; fingerprint: string | undefined }): string | undefined {
  if (job.codeVersion !== local.codeVersion) return `code version mismatch: the job was made by ${job.codeVersion}, this worker runs ${local.codeVersion}`;
  if (local.fingerprint !== undefined && job.model.fingerprint !== local.fingerprint) {
    return `model fingerprint mismatch for ${job.model.dir}: the job expects ${job.model.fingerprint.slice(0, 16)}…, this worker's copy is ${local.fingerprint.slice(0, 16)}…`;
  }
  return undefined;
}
