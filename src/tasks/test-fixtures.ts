/**
 * Small, fully specified stand-ins for tokenizers and models, used by the task tests so that every
 * expected score can be worked out by hand:
 * - ToyTokenizer: longest-match over a fixed list of token strings (optionally prepending a BOS, like OPT);
 * - BigramLM: a causal LM whose next-token logits depend only on the previous token (a sparse table,
 *   logit 0 elsewhere), with greedy generation;
 * - FakeMaskedLM: label-word logits from a user function of the input ids;
 * - hfTokenizer: the real tokenizer of a shared checkpoint folder through @huggingface/tokenizers.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import type { CausalLM, ContinuationRequest, GenerateOptions, MaskedLM, TextTokenizer } from '../models/api.ts';

export class ToyTokenizer implements TextTokenizer {
  readonly vocab: string[];
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null = null;
  readonly maskId: number | null;
  private readonly ids = new Map<string, number>();
  private readonly addBos: boolean;

  /** `tokens` become ids 0..n-1 after the specials: '<s>' (0), '</s>' (1), '<mask>' (2), '<unk>' (3). */
  constructor(tokens: readonly string[], opts: { addBos?: boolean } = {}) {
    this.vocab = ['<s>', '</s>', '<mask>', '<unk>', ...tokens];
    this.vocab.forEach((t, i) => this.ids.set(t, i));
    this.bosId = 0;
    this.eosId = 1;
    this.maskId = 2;
    this.addBos = opts.addBos ?? false;
  }
  get vocabSize(): number {
    return this.vocab.length;
  }
  id(token: string): number {
    const i = this.ids.get(token);
    if (i === undefined) throw new Error(`toy tokenizer: no token ${JSON.stringify(token)}`);
    return i;
  }
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[] {
    const out: number[] = opts?.addSpecialTokens && this.addBos ? [0] : [];
    let i = 0;
    while (i < text.length) {
      let best = '';
      for (const t of this.vocab.slice(4)) if (t.length > best.length && text.startsWith(t, i)) best = t;
      if (best === '') {
        out.push(3);
        i++;
      } else {
        out.push(this.ids.get(best)!);
        i += best.length;
      }
    }
    return out;
  }
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string {
    return ids
      .filter((i) => !(opts?.skipSpecialTokens && i < 4))
      .map((i) => this.vocab[i]!)
      .join('');
  }
  tokenToId(token: string): number | null {
    return this.ids.get(token) ?? null;
  }
}

/** log p(next | prev) = logit(prev, next) − log Σ_v exp(logit(prev, v)), logits 0 unless set. */
export class BigramLM implements CausalLM {
  readonly kind = 'causal' as const;
  readonly maxPositions: number;
  readonly requests: ContinuationRequest[] = [];
  readonly prompts: number[][] = [];
  private readonly table = new Map<number, Map<number, number>>();

  constructor(
    readonly tokenizer: ToyTokenizer,
    opts: { maxPositions?: number } = {},
  ) {
    this.maxPositions = opts.maxPositions ?? 1024;
  }
  /** sets logit(prev → next) by token strings */
  set(prev: string, next: string, logit: number): this {
    const p = this.tokenizer.id(prev);
    const row = this.table.get(p) ?? new Map<number, number>();
    row.set(this.tokenizer.id(next), logit);
    this.table.set(p, row);
    return this;
  }
  logprob(prev: number, next: number): number {
    const row = this.table.get(prev);
    const v = this.tokenizer.vocabSize;
    let z = v - (row?.size ?? 0);
    for (const l of row?.values() ?? []) z += Math.exp(l);
    return (row?.get(next) ?? 0) - Math.log(z);
  }
  async continuationLogprobs(reqs: readonly ContinuationRequest[]): Promise<Float64Array[]> {
    this.requests.push(...reqs);
    return reqs.map((r) => {
      const out = new Float64Array(r.continuation.length);
      let prev = r.prompt[r.prompt.length - 1]!;
      r.continuation.forEach((t, i) => {
        out[i] = this.logprob(prev, t);
        prev = t;
      });
      return out;
    });
  }
  async generate(prompt: readonly number[], opts: GenerateOptions): Promise<string> {
    this.prompts.push([...prompt]);
    const out: number[] = [];
    let prev = prompt[prompt.length - 1]!;
    for (let s = 0; s < opts.maxNewTokens; s++) {
      let best = 0;
      for (let v = 1; v < this.tokenizer.vocabSize; v++) if (this.logprob(prev, v) > this.logprob(prev, best)) best = v;
      if (best === this.tokenizer.eosId) break;
      out.push(best);
      prev = best;
      const text = this.tokenizer.decode(out);
      const cut = (opts.stop ?? []).map((x) => text.indexOf(x)).filter((i) => i >= 0);
      if (cut.length) return text.slice(0, Math.min(...cut));
    }
    return this.tokenizer.decode(out, { skipSpecialTokens: true });
  }
}

export class FakeMaskedLM implements MaskedLM {
  readonly kind = 'masked' as const;
  readonly inputs: number[][] = [];
  constructor(
    readonly tokenizer: TextTokenizer,
    private readonly logit: (input: readonly number[], candidateId: number) => number,
    readonly maxPositions = 512,
  ) {}
  async maskLogits(inputs: readonly (readonly number[])[], candidateIds: readonly number[]): Promise<Float64Array[]> {
    this.inputs.push(...inputs.map((x) => [...x]));
    return inputs.map((x) => Float64Array.from(candidateIds.map((c) => this.logit(x, c))));
  }
}

/** ../shared beside the checkout (as CI lays it out), else the development machine's /work/shared */
const SHARED_BESIDE = new URL('../../../shared/data', import.meta.url).pathname;
export const SHARED_DATA = existsSync(SHARED_BESIDE) ? SHARED_BESIDE : '/work/shared/data';
export const SHARED_MODELS = join(SHARED_DATA, 'models');

/** A shared tokenizer folder through @huggingface/tokenizers, or null when the folder is absent. */
export function hfTokenizer(dir: string, specials: { bos?: string; eos?: string; mask?: string; pad?: string } = {}): (TextTokenizer & { vocab: Record<string, number> }) | null {
  const path = join(SHARED_MODELS, dir);
  if (!existsSync(join(path, 'tokenizer.json'))) return null;
  const json = JSON.parse(readFileSync(join(path, 'tokenizer.json'), 'utf8')) as object;
  const cfgPath = join(path, 'tokenizer_config.json');
  const cfg = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as object) : {};
  const t = new Tokenizer(json, cfg);
  const vocab = JSON.parse(readFileSync(join(path, 'vocab.json'), 'utf8')) as Record<string, number>;
  const id = (s: string | undefined) => (s === undefined ? null : (t.token_to_id(s) ?? null));
  return {
    vocab,
    vocabSize: Object.keys(vocab).length,
    bosId: id(specials.bos),
    eosId: id(specials.eos),
    padId: id(specials.pad),
    maskId: id(specials.mask),
    encode: (text, opts) => t.encode(text, { add_special_tokens: opts?.addSpecialTokens ?? false }).ids,
    decode: (ids, opts) => t.decode([...ids], { skip_special_tokens: opts?.skipSpecialTokens ?? false }),
    tokenToId: (tok) => t.token_to_id(tok) ?? null,
  };
}
