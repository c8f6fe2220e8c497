/**
 * The contract between models and everything above them (tasks, training, MeZO, analyses). Tasks and
 * trainers code against these interfaces, never against a particular architecture.
 */

export interface TextTokenizer {
  /** Token ids of `text`. With addSpecialTokens (default false) the family's BOS/EOS template is applied. */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly maskId: number | null;
  /** Id of a single token string (e.g. 'Ġgreat'), or null when it is not in the vocabulary. */
  tokenToId(token: string): number | null;
}

/** A prompt and a continuation, both as token ids; scoring returns one log-prob per continuation token. */
export interface ContinuationRequest {
  prompt: readonly number[];
  continuation: readonly number[];
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** generation stops when the decoded continuation contains any of these */
  stop?: readonly string[];
}

export interface CausalLM {
  readonly kind: 'causal';
  readonly tokenizer: TextTokenizer;
  readonly maxPositions: number;
  /** log p(continuation_t | prompt, continuation_<t) for every continuation token, batched internally. */
  continuationLogprobs(reqs: readonly ContinuationRequest[]): Promise<Float64Array[]>;
  /** Greedy decoding with a key/value cache; returns the decoded continuation, cut before a stop string. */
  generate(prompt: readonly number[], opts: GenerateOptions): Promise<string>;
}

export interface MaskedLM {
  readonly kind: 'masked';
  readonly tokenizer: TextTokenizer;
  readonly maxPositions: number;
  /** logits over the vocabulary at the (single) mask position of each input, restricted to `candidateIds` */
  maskLogits(inputs: readonly (readonly number[])[], candidateIds: readonly number[]): Promise<Float64Array[]>;
}

export type LanguageModel = CausalLM | MaskedLM;
