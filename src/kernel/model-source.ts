/**
 * Per-example Jacobians of a prompted transformer, f_c(x) = the raw logit of label word c
 *   - causal LMs: at the position that predicts the label word (the last prompt token), the word's token;
 *   - masked LMs: at the mask of the LM-BFF template,
 * for one parameter block at a time, through `TransformerModel.runHead`: one graph computes f [B, C] and,
 * for each class, the engine's batched per-example gradients of Σ_b f_c(x_b) (one backward per class per
 * batch, never per example).
 *
 * Embedding tables cannot carry a per-example axis through the engine's gather rule, so a table's
 * per-example gradient is rebuilt here from the cotangents of its uses, which do carry one:
 *   - a lookup by batched ids/positions: the cotangent of the looked-up rows [B, T, H], scattered by id;
 *   - a lookup by a fixed id list (RoBERTa's label-word decoder rows): per-example cotangent [B, K, H];
 *   - a tied LM head y = x·Wᵀ on [B, R, H] rows: ∂/∂W = Σ_r ct[b, r]ᵀ x[b, r];
 *   - a row slice (RoBERTa's token-type row), reshaped and broadcast: the engine's per-example gradient of
 *     the reshaped value, put back at its rows.
 * A tied table is one parameter, counted once, with all its uses summed.
 */
import { LmtuneError } from '../util/errors.ts';
import { grad, type Feeds, type Value } from '../engine/index.ts';
import { packBatch, roundUp } from '../models/batch.ts';
import type { TransformerModel } from '../heads/model.ts';
import { encodeCausal, encodeForMaskedLM, type ChoiceEncoding, type Example, type Task } from '../tasks/index.ts';
import type { JacobianBatch, JacobianSource } from './accumulate.ts';

/** One example as the kernel sees it: the tokens and the row whose logits give f. */
export interface KernelInput {
  ids: number[];
  /** position of the row that scores the label words */
  pos: number;
  label: number;
}

export interface EncodedSet {
  inputs: KernelInput[];
}

export interface KernelEncoding {
  /** one token id per class */
  labelIds: number[];
  /** the label words as scored (with their leading space) */
  labelWords: string[];
  template: string;
  sets: Record<string, KernelInput[]>;
}

/** Encode every set for the kernel; label words must be single tokens and the same across examples. */
export function encodeForKernel(task: Task, model: TransformerModel, sets: Record<string, readonly Example[]>): KernelEncoding {
  if (task.kind !== 'classification') throw new LmtuneError('UNSUPPORTED', `the eNTK needs a classification task; ${task.name} is ${task.kind}`);
  const tok = model.tokenizer;
  if (!tok) throw new LmtuneError('TOKENIZER', `${model.dir ?? 'model'}: the kernel needs a tokenizer`);
  const C = task.labelNames.length;
  let labelIds: number[] | null = null;
  const out: Record<string, KernelInput[]> = {};
  const words = model.kind === 'masked' ? (task.masked?.labelWords ?? []) : task.labelWords;
  for (const [name, exs] of Object.entries(sets)) {
    out[name] = exs.map((ex) => {
      if (ex.label < 0 || ex.label >= C) throw new LmtuneError('DATA', `${ex.id}: label ${ex.label} is outside task ${task.name}'s ${C} classes`);
      if (model.kind === 'masked') {
        const enc = encodeForMaskedLM(task, ex, tok, { maxLength: Math.min(task.masked?.maxLength ?? model.maxPositions, model.maxPositions) });
        labelIds ??= enc.labelWordIds;
        return { ids: enc.input, pos: enc.maskPos, label: ex.label };
      }
      const enc = encodeCausal(task, ex, tok, { maxLength: model.maxPositions }) as ChoiceEncoding;
      const ids = enc.candidates.map((cand, c) => {
        if (cand.continuation.length !== 1) {
          throw new LmtuneError('TOKENIZER', `label word ${JSON.stringify(words[c] ?? `class ${c}`)} is ${cand.continuation.length} tokens after the prompt of ${ex.id}; the kernel needs single-token label words`, 'choose label words that are one token with their leading space (e.g. " great")');
        }
        return cand.continuation[0]!;
      });
      const prompt = enc.candidates[0]!.prompt;
      enc.candidates.forEach((cand, c) => {
        if (cand.prompt.length !== prompt.length || cand.prompt.some((t, i) => t !== prompt[i])) {
          throw new LmtuneError('TOKENIZER', `${ex.id}: label word ${JSON.stringify(words[c])} changes how the prompt is tokenized`, 'the kernel scores all label words at one position; pick words that start a new token');
        }
      });
      if (labelIds && ids.some((t, c) => t !== labelIds![c])) {
        const c = ids.findIndex((t, i) => t !== labelIds![i]);
        throw new LmtuneError('TOKENIZER', `${ex.id}: label word ${JSON.stringify(words[c])} is token ${ids[c]} here but ${labelIds[c]} elsewhere`);
      }
      labelIds ??= ids;
      return { ids: prompt, pos: prompt.length - 1, label: ex.label };
    });
  }
  if (!labelIds) throw new LmtuneError('DATA', 'no examples to compute a kernel on');
  const template = model.kind === 'masked' ? (task.masked?.source ?? '') : `${task.provenance} (causal template)`;
  return { labelIds, labelWords: words.map((w) => ` ${w}`), template, sets: out };
}

/** `--params`: every weight, LoRA adapters, biases (BitFit), or a name regex. */
export function selectParams(model: TransformerModel, spec: string): string[] {
  if (spec === 'lora') {
    const names = model.adapters?.names() ?? [];
    if (!names.length || model.peft?.kind !== 'lora') throw new LmtuneError('CONFIG', '--params lora: no LoRA adapters are attached', 'attach them first (kernel compute does this for --params lora)');
    return names;
  }
  const all = model.allParamNames();
  if (spec === 'all') return all;
  const re = spec === 'bitfit' ? /(^|\.)bias$|_bias$/ : safeRegex(spec);
  const names = all.filter((n) => re.test(n));
  if (!names.length) throw new LmtuneError('CONFIG', `--params ${spec} matches no parameter of this ${model.cfg.family} model`, `names look like ${all[0]}`);
  return names;
}

function safeRegex(s: string): RegExp {
  try {
    return new RegExp(s);
  } catch (e) {
    throw new LmtuneError('CONFIG', `--params ${JSON.stringify(s)} is not a regular expression (${(e as Error).message})`);
  }
}

/** consecutive parameters grouped so each block has at most `maxElements` (a larger tensor is its own block) */
export function groupBlocks(sizes: readonly number[], maxElements: number): number[][] {
  const blocks: number[][] = [];
  let cur: number[] = [];
  let n = 0;
  sizes.forEach((s, i) => {
    if (cur.length && n + s > maxElements) {
      blocks.push(cur);
      cur = [];
      n = 0;
    }
    cur.push(i);
    n += s;
  });
  if (cur.length) blocks.push(cur);
  return blocks;
}

type Use =
  | { kind: 'lookup'; ct: string; index: string } // ct [B, T, H], index [B·T]
  | { kind: 'fixed'; ct: string; index: string } // per-example ct [B, K, H], index [K]
  | { kind: 'head'; ct: string; rows: string } // ct [B, R, V], rows [B, R, H]
  | { kind: 'slice'; ct: string; start: number }; // rows [start, …) sliced along axis 0 (then reshaped): per-example ct

interface ParamPlan {
  name: string;
  size: number;
  cols: number;
  uses: Use[] | null; // null: the engine's per-example gradient
}

/**
 * How a head graph's outputs map to gradient rows, recorded when runHead builds (and caches) the graph,
 * per model and head key, so every source over the same model finds the plan of a cached graph.
 */
const PLANS = new WeakMap<TransformerModel, Map<string, ParamPlan[]>>();
function plansOf(m: TransformerModel): Map<string, ParamPlan[]> {
  let p = PLANS.get(m);
  if (!p) {
    p = new Map();
    PLANS.set(m, p);
  }
  return p;
}

export interface ModelSourceOptions {
  params: readonly string[];
  /** elements per parameter block (bounded memory: N·C·block floats are held) */
  blockElements: number;
  /** rows per graph call */
  batch: number;
}

/** A `JacobianSource` over a transformer and encoded sets. */
export class ModelJacobianSource implements JacobianSource {
  readonly classes: number;
  readonly sizes: Record<string, number>;
  readonly blocks: number[];
  readonly paramCount: number;
  private readonly blockParams: string[][];
  private readonly seq: number;

  constructor(
    private readonly model: TransformerModel,
    private readonly enc: KernelEncoding,
    private readonly opts: ModelSourceOptions,
  ) {
    this.classes = enc.labelIds.length;
    this.sizes = Object.fromEntries(Object.entries(enc.sets).map(([k, v]) => [k, v.length]));
    const sizes = opts.params.map((n) => {
      const t = model.adapters?.has(n) ? model.adapters.get(n) : model.weights.get(n);
      return t.data.length;
    });
    this.paramCount = sizes.reduce((a, b) => a + b, 0);
    const groups = groupBlocks(sizes, Math.max(1, opts.blockElements));
    this.blockParams = groups.map((g) => g.map((i) => opts.params[i]!));
    this.blocks = groups.map((g) => g.reduce((a, i) => a + sizes[i]!, 0));
    const longest = Math.max(...Object.values(enc.sets).flatMap((s) => s.map((x) => x.ids.length)));
    if (longest > model.maxPositions) throw new LmtuneError('DATA', `an input of ${longest} tokens does not fit the model's ${model.maxPositions} positions`);
    this.seq = Math.min(roundUp(longest, 16), Math.max(longest, model.maxPositions));
  }

  /** the parameter names of block b, in flat order */
  paramsOfBlock(b: number): readonly string[] {
    return this.blockParams[b]!;
  }

  paramAt(block: number, column: number): string {
    let rest = column;
    for (const name of this.blockParams[block] ?? []) {
      const n = this.model.tensor(name).length;
      if (rest < n) return `${name}[${rest}]`;
      rest -= n;
    }
    return `column ${column}`;
  }

  async jacobian(set: string, start: number, count: number, block: number): Promise<JacobianBatch> {
    const inputs = this.enc.sets[set]?.slice(start, start + count);
    if (!inputs || inputs.length !== count) throw new LmtuneError('DATA', `kernel: examples [${start}, ${start + count}) of ${set} do not exist`);
    const B = this.opts.batch;
    const C = this.classes;
    const m = this.model;
    const batch = packBatch(inputs.map((x) => x.ids), { side: 'right', padId: m.padId(), batch: B, seq: this.seq });
    const T = batch.seq;
    // padding rows read their own row: pointing them at row 0 would add their output to example 0's gradients
    const index = BigInt64Array.from({ length: B }, (_, b) => BigInt(b * T));
    inputs.forEach((x, b) => (index[b] = BigInt(b * T + x.pos)));
    const names = this.blockParams[block]!;
    const key = `entk|${names.join(',')}|${this.enc.labelIds.join(',')}|${B}`;
    const build = (h: Parameters<Parameters<TransformerModel['runHead']>[2]>[0]): Record<string, Value> => {
      const { g } = h;
      const H = h.hidden.shape[2]!;
      const rows = h.rows(g.input('kernel_index', [B], 'i64')).reshape([B, 1, H]);
      const cands = g.input('kernel_cands', [C], 'i64');
      let F: Value;
      if (m.kind === 'masked') F = h.candidateLogits(rows, cands).reshape([B, C]);
      else {
        const logits = h.logits(rows);
        const V = logits.shape[2]!;
        F = g.apply1('gather', [logits.reshape([B, V]).transpose([1, 0]), cands]).transpose([1, 0]);
      }
      const outputs: Record<string, Value> = { f: F };
      const plans: ParamPlan[] = [];
      plansOf(m).set(key, plans);
      const pv = h.ctx.paramValues();
      const wrt: Value[] = [];
      const perEx: Value[] = [];
      const keys: string[] = [];
      for (const name of names) {
        const v = pv.get(name);
        if (!v) throw new LmtuneError('GRAPH', `parameter '${name}' is not used by the ${m.cfg.family} forward pass`);
        const consumers = g.nodes.filter((n) => n.inputs.includes(v));
        const size = v.size;
        const cols = v.rank >= 2 ? v.shape[v.rank - 1]! : 1;
        const isRowSlice = (n: (typeof consumers)[number]) => (n.prim.name === 'slice' && (n.attrs as { axis: number }).axis === 0) || n.prim.name === 'reshape';
        const special = (n: (typeof consumers)[number]) => (n.prim.name === 'gather' && n.inputs[0] === v) || isRowSlice(n);
        if (!consumers.some(special)) {
          plans.push({ name, size, cols, uses: null });
          wrt.push(v);
          perEx.push(v);
          keys.push(`p:${name}`);
          continue;
        }
        const uses: Use[] = [];
        consumers.forEach((n, k) => {
          const tag = `${name}#${k}`;
          const out = n.outputs[0]!;
          if (n.prim.name === 'gather' && n.inputs[0] === v) {
            const idx = n.inputs[1]!;
            outputs[`i:${tag}`] = idx.reshape([-1]);
            wrt.push(out);
            if (idx.rank === 1) perEx.push(out);
            keys.push(`u:${tag}`);
            uses.push({ kind: idx.rank === 1 ? 'fixed' : 'lookup', ct: `u:${tag}`, index: `i:${tag}` });
          } else if (n.prim.name === 'matmul' && n.inputs[1] === v && n.inputs[0]!.rank === 3 && (n.attrs as { transB?: boolean }).transB && !(n.attrs as { transA?: boolean }).transA) {
            outputs[`x:${tag}`] = n.inputs[0]!;
            wrt.push(out);
            keys.push(`u:${tag}`);
            uses.push({ kind: 'head', ct: `u:${tag}`, rows: `x:${tag}` });
          } else if (isRowSlice(n)) {
            // RoBERTa's token-type row: follow reshapes to the value batched ops consume
            let last = out;
            for (;;) {
              const next = g.nodes.filter((q) => q.inputs.includes(last));
              if (next.length !== 1 || next[0]!.prim.name !== 'reshape') break;
              last = next[0]!.outputs[0]!;
            }
            wrt.push(last);
            perEx.push(last);
            keys.push(`u:${tag}`);
            uses.push({ kind: 'slice', ct: `u:${tag}`, start: n.prim.name === 'slice' ? (n.attrs as { start: number }).start : 0 });
          } else {
            throw new LmtuneError('UNSUPPORTED', `per-example gradients of '${name}' through its use by ${n.prim.name} are not supported`, 'exclude it with --params (a name regex)');
          }
        });
        plans.push({ name, size, cols, uses });
      }
      for (let c = 0; c < C; c++) {
        const gs = grad(F.slice(1, c, c + 1).sum(), wrt, { perExample: perEx });
        gs.forEach((gv, i) => (outputs[`${c}|${keys[i]}`] = gv));
      }
      return outputs;
    };
    const feeds: Feeds = { kernel_index: index, kernel_cands: BigInt64Array.from(this.enc.labelIds, (x) => BigInt(x)) };
    const out = await m.runHead(key, batch, build, feeds);
    const plans = plansOf(m).get(key);
    if (!plans) throw new LmtuneError('RUNTIME', `internal: no gradient plan for parameter block ${block}`);
    const P = this.blocks[block]!;
    const rowsOut = new Float32Array(count * C * P);
    const fOut = new Float64Array(count * C);
    const f = out.f!.data as Float32Array;
    for (let e = 0; e < count; e++) for (let c = 0; c < C; c++) fOut[e * C + c] = f[e * C + c]!;
    const num = (k: string): Float32Array => {
      const t = out[k];
      if (!t) throw new LmtuneError('RUNTIME', `kernel graph output '${k}' is missing`);
      return t.data as Float32Array;
    };
    const idxOf = (k: string): number[] => Array.from(out[k]!.data as ArrayLike<number | bigint>, (x) => Number(x));
    for (let c = 0; c < C; c++) {
      let off = 0;
      for (const p of plans) {
        if (!p.uses) {
          const d = num(`${c}|p:${p.name}`);
          for (let e = 0; e < count; e++) rowsOut.set(d.subarray(e * p.size, (e + 1) * p.size), (e * C + c) * P + off);
        } else {
          for (const u of p.uses) {
            const ct = num(`${c}|${u.ct}`);
            const H = p.cols;
            if (u.kind === 'lookup') {
              const ix = idxOf(u.index);
              for (let e = 0; e < count; e++) {
                const row = (e * C + c) * P + off;
                for (let t = 0; t < T; t++) {
                  if (batch.mask[e * T + t] !== 1) continue;
                  const r = ix[e * T + t]!;
                  const src = (e * T + t) * H;
                  for (let k = 0; k < H; k++) rowsOut[row + r * H + k] = rowsOut[row + r * H + k]! + ct[src + k]!;
                }
              }
            } else if (u.kind === 'fixed') {
              const ix = idxOf(u.index);
              const K = ix.length;
              for (let e = 0; e < count; e++) {
                const row = (e * C + c) * P + off;
                for (let q = 0; q < K; q++) {
                  const src = (e * K + q) * H;
                  for (let k = 0; k < H; k++) rowsOut[row + ix[q]! * H + k] = rowsOut[row + ix[q]! * H + k]! + ct[src + k]!;
                }
              }
            } else if (u.kind === 'slice') {
              const per = ct.length / B;
              for (let e = 0; e < count; e++) {
                const row = (e * C + c) * P + off + u.start * H;
                for (let k = 0; k < per; k++) rowsOut[row + k] = rowsOut[row + k]! + ct[e * per + k]!;
              }
            } else {
              const x = num(u.rows);
              const V = p.size / H;
              const R = x.length / (B * H);
              for (let e = 0; e < count; e++) {
                const row = (e * C + c) * P + off;
                for (let r = 0; r < R; r++) {
                  for (let v = 0; v < V; v++) {
                    const w = ct[(e * R + r) * V + v]!;
                    if (w === 0) continue;
                    const xo = (e * R + r) * H;
                    for (let k = 0; k < H; k++) rowsOut[row + v * H + k] = rowsOut[row + v * H + k]! + w * x[xo + k]!;
                  }
                }
              }
            }
          }
        }
        off += p.size;
      }
    }
    return { rows: rowsOut, f: fOut };
  }
}
