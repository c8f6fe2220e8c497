/**
 * Tokenizers from a Hugging Face folder, through `@huggingface/tokenizers` (a JS port of the Rust library
 * that reads tokenizer.json).
 *
 * What a folder may hold, in the order tried:
 *  - `tokenizer.json` (+ optional tokenizer_config.json / special_tokens_map.json). Old serializations are
 *    accepted: a BPE `model` without `"type"` (roberta-base) and merges as "a b" strings (old gpt2).
 *  - GPT-2-style `vocab.json` + `merges.txt` only: an equivalent tokenizer.json (ByteLevel pre-tokenizer
 *    and decoder, BPE model) is built in memory.
 *
 * Special tokens: the text is always encoded without them, then the family's template is applied when
 * `encode(text, { addSpecialTokens: true })` — GPT-2 / GPT-NeoX: none; OPT: `</s>` (id 2) prepended;
 * Llama: BOS when `add_bos_token` (LlamaTokenizer's default true), EOS when `add_eos_token`; RoBERTa:
 * `<s> … </s>`. Without a family, the template is read off tokenizer.json's post-processor.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { LmtuneError } from '../util/errors.ts';
import { readText, type Folder } from '../util/folder.ts';
import { asFolder, requireHost } from '../util/host.ts';
import type { TextTokenizer } from './api.ts';
import { detectFamily, type ModelFamily } from './config.ts';
import type { SpecialDefaults, SpecialKey, SpecialTemplate } from './family.ts';
import { families, familyOf } from './families/index.ts';

export type { SpecialTemplate } from './family.ts';

export interface SpecialTokenFacts {
  token: string;
  id: number;
}

/** Everything `lmtune info` reports about a tokenizer. */
export interface TokenizerFacts {
  source: 'tokenizer.json' | 'vocab.json+merges.txt';
  family: ModelFamily | null;
  vocabSize: number;
  bos: SpecialTokenFacts | null;
  eos: SpecialTokenFacts | null;
  pad: SpecialTokenFacts | null;
  mask: SpecialTokenFacts | null;
  unk: SpecialTokenFacts | null;
  /** e.g. "<s> $text </s>" */
  template: string;
  templateRule: string;
  addedTokens: number;
}

type Json = Record<string, unknown>;

function tokErr(message: string, hint?: string): LmtuneError {
  return new LmtuneError('TOKENIZER', message, hint);
}

function readJsonFile(dir: Folder, name: string): Json {
  const path = dir.path(name);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readText(dir, name));
  } catch (e) {
    throw tokErr(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw tokErr(`${path}: not a JSON object`);
  return parsed as Json;
}

function readOptionalJson(dir: Folder, name: string): Json {
  return dir.exists(name) ? readJsonFile(dir, name) : {};
}

/** A special-token entry is a string, an AddedToken object `{content}`, or null. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

const SPECIAL_KEYS: readonly SpecialKey[] = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'mask_token', 'cls_token', 'sep_token'];

/** Without a family, guess the naming convention from which tokens the vocabulary has. */
function guessSpecials(has: (t: string) => boolean): SpecialDefaults {
  if (has('<|endoftext|>')) return familyOf('gpt2').specials;
  if (has('<mask>')) return familyOf('roberta').specials;
  if (has('<bos>') && has('<eos>')) return familyOf('gemma').specials;
  if (has('<s>')) return familyOf('llama').specials;
  return {};
}

/** tokenizer_config.json wins, then special_tokens_map.json, then the family default; explicit null is "none". */
function resolveSpecial(key: SpecialKey, tc: Json, stm: Json, defaults: SpecialDefaults): string | null {
  if (key in tc) return tokenString(tc[key]);
  if (key in stm) return tokenString(stm[key]);
  return defaults[key] ?? null;
}

function familyFromTokenizerClass(tc: Json): ModelFamily | undefined {
  const cls = typeof tc.tokenizer_class === 'string' ? tc.tokenizer_class : '';
  return families.find((f) => f.tokenizerClass?.test(cls))?.name;
}

/** The prefix/suffix special ids of a tokenizer.json post-processor (TemplateProcessing's `single`). */
function templateFromPostProcessor(pp: unknown, file: string): { prefix: number[]; suffix: number[] } {
  const none = { prefix: [], suffix: [] };
  if (!pp || typeof pp !== 'object') return none;
  const p = pp as Json;
  switch (p.type) {
    case 'RobertaProcessing':
    case 'BertProcessing': {
      const cls = p.cls as [string, number] | undefined;
      const sep = p.sep as [string, number] | undefined;
      if (!Array.isArray(cls) || !Array.isArray(sep)) throw tokErr(`${file}: ${p.type} post-processor without cls/sep`);
      return { prefix: [cls[1]], suffix: [sep[1]] };
    }
    case 'TemplateProcessing': {
      const items = Array.isArray(p.single) ? p.single : [];
      const specials = (p.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
      const prefix: number[] = [];
      const suffix: number[] = [];
      let seenSequence = false;
      for (const it of items as unknown[]) {
        let special: string | null = null;
        if (typeof it === 'string') {
          if (it.startsWith('$')) seenSequence = true;
          else special = it.replace(/:\d+$/, '');
        } else if (it && typeof it === 'object') {
          const o = it as Json;
          if (o.Sequence) seenSequence = true;
          else if (o.SpecialToken) special = String((o.SpecialToken as Json).id);
        }
        if (special === null) continue;
        const ids = specials[special]?.ids;
        if (!Array.isArray(ids)) throw tokErr(`${file}: TemplateProcessing names special token '${special}' but does not list its ids`);
        (seenSequence ? suffix : prefix).push(...ids);
      }
      return { prefix, suffix };
    }
    case 'Sequence': {
      const out = { prefix: [] as number[], suffix: [] as number[] };
      for (const sub of Array.isArray(p.processors) ? p.processors : []) {
        const t = templateFromPostProcessor(sub, file);
        out.prefix.push(...t.prefix);
        out.suffix.push(...t.suffix);
      }
      return out;
    }
    default:
      return none; // ByteLevel and friends add no tokens
  }
}

/** Reads merges.txt: an optional "#version" line, then one "a b" pair per line. */
function readMerges(dir: Folder, name: string): [string, string][] {
  const path = dir.path(name);
  const lines = readText(dir, name).split('\n');
  const merges: [string, string][] = [];
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line === '' || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') throw tokErr(`${path}:${i + 1}: expected two tokens separated by one space, got ${JSON.stringify(line)}`);
    merges.push([parts[0], parts[1]]);
  });
  return merges;
}

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** A GPT-2-style byte-level BPE tokenizer.json built from vocab.json + merges.txt, as transformers converts it. */
function tokenizerJsonFromVocabMerges(dir: Folder, vocab: Json, tc: Json, specials: SpecialDefaults, family: ModelFamily | undefined): Json {
  const vocabPath = dir.path('vocab.json');
  for (const [k, v] of Object.entries(vocab)) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw tokErr(`${vocabPath}: token ${JSON.stringify(k)} has id ${JSON.stringify(v)}, expected a non-negative integer`);
  }
  const merges = readMerges(dir, 'merges.txt');
  const added: AddedTokenJson[] = [];
  const atd = tc.added_tokens_decoder;
  if (atd && typeof atd === 'object') {
    for (const [id, t] of Object.entries(atd as Record<string, Json>)) {
      if (typeof t?.content !== 'string') continue;
      added.push({
        id: Number(id),
        content: t.content,
        single_word: t.single_word === true,
        lstrip: t.lstrip === true,
        rstrip: t.rstrip === true,
        normalized: t.normalized === true,
        special: t.special !== false,
      });
    }
  } else {
    // the slow tokenizers treat their special tokens as unsplittable; RoBERTa's <mask> eats the space before it
    const seen = new Set<string>();
    for (const t of Object.values(specials)) {
      if (!t || seen.has(t) || typeof vocab[t] !== 'number') continue;
      seen.add(t);
      const lstrip = family !== undefined && familyOf(family).maskLstrip === true && t === specials.mask_token;
      added.push({ id: vocab[t] as number, content: t, single_word: false, lstrip, rstrip: false, normalized: false, special: true });
    }
  }
  added.sort((a, b) => a.id - b.id);
  const addPrefixSpace = tc.add_prefix_space === true;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** Fills in what old serializations leave out, so the library reads them as the Rust library does. */
function patchTokenizerJson(tj: Json, file: string): Json {
  const out: Json = { ...tj };
  for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) if (!(k in out)) out[k] = null;
  if (!Array.isArray(out.added_tokens)) out.added_tokens = [];
  const model = out.model;
  if (!model || typeof model !== 'object') throw tokErr(`${file}: no "model" section`);
  const m = { ...(model as Json) };
  // roberta-base's tokenizer.json predates the "type" tag; a model with merges is BPE
  if (m.type === undefined && Array.isArray(m.merges)) m.type = 'BPE';
  out.model = m;
  return out;
}

/** A TextTokenizer over a `@huggingface/tokenizers` Tokenizer with the family's special-token template. */
export class HfTextTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly maskId: number | null;
  readonly unkId: number | null;
  readonly template: SpecialTemplate;
  readonly source: TokenizerFacts['source'];
  readonly family: ModelFamily | null;
  readonly dir: string;
  private readonly tok: Tokenizer;

  constructor(args: {
    tok: Tokenizer;
    dir: string;
    source: TokenizerFacts['source'];
    family: ModelFamily | null;
    specials: Record<'bos' | 'eos' | 'pad' | 'mask' | 'unk', string | null>;
    template: SpecialTemplate;
  }) {
    this.tok = args.tok;
    this.dir = args.dir;
    this.source = args.source;
    this.family = args.family;
    this.template = args.template;
    const vocab = this.tok.model?.vocab ?? [];
    this.vocabSize = vocab.length;
    const id = (t: string | null): number | null => (t === null ? null : this.tokenToId(t));
    this.bosId = id(args.specials.bos);
    this.eosId = id(args.specials.eos);
    this.padId = id(args.specials.pad);
    this.maskId = id(args.specials.mask);
    this.unkId = id(args.specials.unk);
  }

  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[] {
    let ids: number[];
    try {
      ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      // the library checks a component only when it runs: a malformed one fails here, not at load
      throw tokErr(`${this.dir}: the tokenizer failed on ${JSON.stringify(text.slice(0, 40))} (${(e as Error).message}); its tokenizer files are malformed`);
    }
    for (const id of ids) {
      if (id === undefined || id === null) throw tokErr(`${this.dir}: the tokenizer produced a token outside the vocabulary for ${JSON.stringify(text.slice(0, 40))} (no unk token)`);
    }
    if (!opts?.addSpecialTokens) return ids;
    return [...this.template.prefix, ...ids, ...this.template.suffix];
  }

  /** Exact inverse of encode: no "clean up tokenization spaces" (it would turn " ." into "."). */
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string {
    if (ids.length === 0) return '';
    for (const id of ids) {
      if (!Number.isSafeInteger(id) || id < 0 || id >= this.vocabSize || this.idToToken(id) === null) {
        throw tokErr(`${this.dir}: cannot decode token id ${id} (vocabulary has ${this.vocabSize} ids)`);
      }
    }
    try {
      return this.tok.decode([...ids], { skip_special_tokens: opts?.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
    } catch (e) {
      throw tokErr(`${this.dir}: the tokenizer failed to decode ${ids.length} ids (${(e as Error).message}); its tokenizer files are malformed`);
    }
  }

  tokenToId(token: string): number | null {
    return this.tok.token_to_id(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.tok.id_to_token(id) ?? null;
  }

  facts(): TokenizerFacts {
    const f = (id: number | null): SpecialTokenFacts | null => (id === null ? null : { id, token: this.idToToken(id) ?? '' });
    const show = (ids: number[]): string[] => ids.map((i) => this.idToToken(i) ?? `#${i}`);
    return {
      source: this.source,
      family: this.family,
      vocabSize: this.vocabSize,
      bos: f(this.bosId),
      eos: f(this.eosId),
      pad: f(this.padId),
      mask: f(this.maskId),
      unk: f(this.unkId),
      template: [...show(this.template.prefix), '$text', ...show(this.template.suffix)].join(' '),
      templateRule: this.template.rule,
      addedTokens: this.tok.get_added_tokens_decoder().size,
    };
  }
}

function decideTemplate(
  family: ModelFamily | undefined,
  tc: Json,
  postProcessor: unknown,
  file: string,
  ids: { bos: number | null; eos: number | null; cls: number | null; sep: number | null },
): SpecialTemplate {
  const need = (id: number | null, what: string): number => {
    if (id === null) throw tokErr(`${file}: the ${family} template needs a ${what} token, but the tokenizer has none`);
    return id;
  };
  const flags = (dfltBos: boolean, rule: string): SpecialTemplate => {
    const addBos = typeof tc.add_bos_token === 'boolean' ? tc.add_bos_token : dfltBos;
    const addEos = typeof tc.add_eos_token === 'boolean' ? tc.add_eos_token : false;
    return { prefix: addBos ? [need(ids.bos, 'BOS')] : [], suffix: addEos ? [need(ids.eos, 'EOS')] : [], rule: `${rule}: add_bos_token=${addBos}, add_eos_token=${addEos}` };
  };
  const fromFamily = family ? familyOf(family).template({ tc, ids, need, flags }) : null;
  if (fromFamily) return fromFamily;
  const t = templateFromPostProcessor(postProcessor, file);
  return { ...t, rule: 'tokenizer.json post-processor' };
}

/**
 * Loads the tokenizer of a Hugging Face folder. `family` picks the special-token template; when omitted
 * it is read from the folder's config.json (or tokenizer_config's tokenizer_class) if there is one.
 */
export async function loadTokenizer(folder: string | Folder, family?: ModelFamily): Promise<HfTextTokenizer> {
  if (typeof folder === 'string' && !requireHost('loading a tokenizer').exists(folder)) throw tokErr(`${folder}: folder does not exist`);
  const dir = asFolder(folder, 'loading a tokenizer');
  const tc = readOptionalJson(dir, 'tokenizer_config.json');
  const stm = readOptionalJson(dir, 'special_tokens_map.json');
  let fam = family;
  if (fam === undefined && dir.exists('config.json')) {
    try {
      fam = detectFamily(readJsonFile(dir, 'config.json'), dir.path('config.json'));
    } catch {
      fam = undefined; // an unknown architecture still has a usable tokenizer
    }
  }
  fam ??= familyFromTokenizerClass(tc);

  const tjPath = dir.path('tokenizer.json');
  let tj: Json;
  let source: TokenizerFacts['source'];
  let file: string;
  if (dir.exists('tokenizer.json')) {
    tj = patchTokenizerJson(readJsonFile(dir, 'tokenizer.json'), tjPath);
    source = 'tokenizer.json';
    file = tjPath;
  } else if (dir.exists('vocab.json') && dir.exists('merges.txt')) {
    const vocab = readJsonFile(dir, 'vocab.json');
    const defaults = fam ? familyOf(fam).specials : guessSpecials((t) => t in vocab);
    const specials: SpecialDefaults = {};
    for (const k of SPECIAL_KEYS) {
      const s = resolveSpecial(k, tc, stm, defaults);
      if (s !== null) specials[k] = s;
    }
    tj = tokenizerJsonFromVocabMerges(dir, vocab, tc, specials, fam);
    source = 'vocab.json+merges.txt';
    file = dir.path('vocab.json');
  } else if (dir.exists('tokenizer.model')) {
    throw new LmtuneError(
      'UNSUPPORTED',
      `${dir.label}: only a SentencePiece tokenizer.model, which lmtune cannot read`,
      "save a tokenizer.json with transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir)",
    );
  } else {
    throw tokErr(`${dir.label}: no tokenizer.json, and no vocab.json + merges.txt`, 'copy the tokenizer files of the model into this folder');
  }

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tj, tc);
    // every component (normalizer, pre-tokenizer, model, post-processor, decoder) runs once now, so a
    // malformed file is refused at load, naming it, rather than with a TypeError in the middle of a run
    tok.decode(tok.encode('Hello, world 1 é', { add_special_tokens: false }).ids, { skip_special_tokens: false });
  } catch (e) {
    throw tokErr(`${file}: the tokenizer could not be built (${(e as Error).message})`);
  }
  const has = (t: string): boolean => tok.token_to_id(t) !== undefined;
  const defaults = fam ? familyOf(fam).specials : guessSpecials(has);
  const special = (k: SpecialKey): string | null => {
    const s = resolveSpecial(k, tc, stm, defaults);
    return s !== null && has(s) ? s : null;
  };
  const idOf = (s: string | null): number | null => (s === null ? null : (tok.token_to_id(s) ?? null));
  const template = decideTemplate(fam, tc, tj.post_processor, file, {
    bos: idOf(special('bos_token')),
    eos: idOf(special('eos_token')),
    cls: idOf(special('cls_token')),
    sep: idOf(special('sep_token')),
  });
  return new HfTextTokenizer({
    tok,
    dir: dir.label,
    source,
    family: fam ?? null,
    specials: { bos: special('bos_token'), eos: special('eos_token'), pad: special('pad_token'), mask: special('mask_token'), unk: special('unk_token') },
    template,
  });
}
