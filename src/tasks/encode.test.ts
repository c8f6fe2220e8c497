/**
 * Token-level encoding checked against independent token lists: the real GPT-2 and RoBERTa tokenizers of
 * ../../shared/data/models (expected ids looked up by token string in vocab.json), and a toy tokenizer
 * with an OPT-style BOS. Checks: option length = len(tok(prompt+cand)) − len(tok(prompt)), the split into
 * prompt/continuation, ICL joining, left truncation keeping the BOS, LM-BFF part-wise masked encoding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { LanguageModel } from '../models/api.ts';
import { getBuiltinTask } from './builtin.ts';
import { parseTaskFile } from './custom-task.ts';
import { encodeCausal, encodeForMaskedLM, encodeForTraining, optionLength, specialPrefix, type ChoiceEncoding, type GenerationEncoding } from './encode.ts';
import { hfTokenizer, SHARED_MODELS, ToyTokenizer } from './test-fixtures.ts';
import type { Example, Task } from './task.ts';

const gpt2 = hfTokenizer('gpt2-fullvocab-n_embd2');
const roberta = hfTokenizer('roberta-base-tokenizer', { bos: '<s>', eos: '</s>', mask: '<mask>', pad: '<pad>' });
const skip = gpt2 === null || roberta === null ? 'shared tokenizers not available' : false;

function ex(task: Task, value: Record<string, unknown>): Example {
  return task.parse({ file: 't.jsonl', line: 1, value })[0]!;
}

test('SST-2 on GPT-2: prompt = "a fine film It was", answers are the single tokens Ġterrible / Ġgreat', { skip }, () => {
  const v = gpt2!.vocab;
  const t = getBuiltinTask('sst2');
  const enc = encodeCausal(t, ex(t, { sentence: 'a fine film', label: 1 }), gpt2!) as ChoiceEncoding;
  const prompt = ['a', 'Ġfine', 'Ġfilm', 'ĠIt', 'Ġwas'].map((s) => v[s]!);
  assert.deepEqual(enc.candidates, [
    { prompt, continuation: [v['Ġterrible']!] },
    { prompt, continuation: [v['Ġgreat']!] },
  ]);
  assert.equal(enc.label, 1);
  assert.equal(optionLength(gpt2!, [], 'a fine film It was', 'a fine film It was great'), 1);
});

test('RTE on GPT-2: the answer follows "?\\n" with no space (Yes / No tokens)', { skip }, () => {
  const v = gpt2!.vocab;
  const t = getBuiltinTask('rte');
  const enc = encodeCausal(t, ex(t, { premise: 'It rained.', hypothesis: 'It is wet.', label: 'entailment' }), gpt2!) as ChoiceEncoding;
  assert.deepEqual(enc.candidates.map((c) => c.continuation), [[v['Yes']!], [v['No']!]]);
  assert.deepEqual(enc.candidates[0]!.prompt.slice(-2), [v['?']!, v['Ċ']!]);
  assert.deepEqual(enc.candidates[0]!.prompt, gpt2!.encode('It rained.\nDoes this mean that "It is wet." is true? Yes or No?\n'));
});

test('COPA on GPT-2: the trailing space of "so " joins the answer (6 option tokens)', { skip }, () => {
  const v = gpt2!.vocab;
  const t = getBuiltinTask('copa');
  const e = ex(t, { premise: 'The man turned on the tap.', choice1: 'The toilet filled with water.', choice2: 'Water flowed.', question: 'effect', label: 0 });
  const enc = encodeCausal(t, e, gpt2!) as ChoiceEncoding;
  assert.deepEqual(enc.candidates[0]!.continuation, ['Ġthe', 'Ġtoilet', 'Ġfilled', 'Ġwith', 'Ġwater', '.'].map((s) => v[s]!));
  assert.deepEqual(enc.candidates[0]!.prompt, gpt2!.encode('The man turned on the tap so'));
  assert.equal(enc.candidates[1]!.continuation.length, gpt2!.encode(' water flowed.').length);
});

test('ICL on GPT-2: demonstrations verbalized with their gold answers and joined by "\\n\\n"', { skip }, () => {
  const v = gpt2!.vocab;
  const t = getBuiltinTask('sst2');
  const demos = [ex(t, { sentence: 'good movie ', label: 1 }), ex(t, { sentence: 'bad movie', label: 0 })];
  const enc = encodeCausal(t, ex(t, { sentence: 'a fine film', label: 0 }), gpt2!, { demos }) as ChoiceEncoding;
  const text = 'good movie It was great\n\nbad movie It was terrible\n\na fine film It was';
  assert.deepEqual(enc.candidates[1]!.prompt, gpt2!.encode(text));
  assert.deepEqual(enc.candidates[1]!.continuation, [v['Ġgreat']!]);
});

test('SQuAD on GPT-2: the generation prompt ends at "Answer:", the target is " Paris\\n"', { skip }, () => {
  const v = gpt2!.vocab;
  const t = getBuiltinTask('squad');
  const e = ex(t, { title: 'France', context: 'Paris is the capital.', question: 'What is the capital?', answers: ['Paris'] });
  const enc = encodeCausal(t, e, gpt2!) as GenerationEncoding;
  assert.deepEqual(enc.prompt, gpt2!.encode('Title: France\nContext: Paris is the capital.\nQuestion: What is the capital?\nAnswer:'));
  assert.deepEqual(enc.target.continuation, [v['ĠParis']!, v['Ċ']!]);
  assert.deepEqual(enc.target.prompt, enc.prompt);
  assert.deepEqual(enc.answers, ['Paris']);
});

test('OPT-style BOS: kept in front, cancels in the option length, survives left truncation', () => {
  const tok = new ToyTokenizer(['a', ' fine', ' film', ' It', ' was', ' great', ' terrible'], { addBos: true });
  assert.deepEqual(specialPrefix(tok), [0]);
  const t = getBuiltinTask('sst2');
  const e = ex(t, { sentence: 'a fine film', label: 1 });
  const full = encodeCausal(t, e, tok) as ChoiceEncoding;
  const id = (s: string) => tok.id(s);
  assert.deepEqual(full.candidates[1], { prompt: [0, id('a'), id(' fine'), id(' film'), id(' It'), id(' was')], continuation: [id(' great')] });
  // max length 4: BOS + the last 3 tokens (" It", " was", " great")
  const cut = encodeCausal(t, e, tok, { maxLength: 4 }) as ChoiceEncoding;
  assert.deepEqual(cut.candidates[1], { prompt: [0, id(' It'), id(' was')], continuation: [id(' great')] });
});

test('calibration sequences: the content-free prompt " It was" (SST-2) scored without demonstrations', () => {
  const tok = new ToyTokenizer(['a', ' It', ' was', ' great', ' terrible', 'It']);
  const t = getBuiltinTask('sst2');
  const e = ex(t, { sentence: 'a', label: 0 });
  const enc = encodeCausal(t, e, tok, { calibrate: true, demos: [ex(t, { sentence: 'a', label: 1 })] }) as ChoiceEncoding;
  // reference: encode_sfc(" It was").strip(' ') = "It was"; verbalize_sfc = "It was great"
  assert.deepEqual(enc.calibration![1], { prompt: [tok.id('It'), tok.id(' was')], continuation: [tok.id(' great')] });
  // RTE's calibration prompt is empty: the BOS token stands in as the context
  const rte = getBuiltinTask('rte');
  const tok2 = new ToyTokenizer(['Yes', 'No', 'p', 'h', '\n', ' ', '"', '?', ',', '.']);
  const r = encodeCausal(rte, ex(rte, { premise: 'p', hypothesis: 'h', label: 0 }), tok2, { calibrate: true }) as ChoiceEncoding;
  assert.deepEqual(r.calibration![0], { prompt: [tok2.bosId!], continuation: [tok2.id('Yes')] });
});

test('an answer that adds no token is a DATA error naming the example', () => {
  const task = parseTaskFile('name: t\nprompt: "{t}"\nanswer: "{label_word}"\nlabels: [c, d]\n', 'task.yaml');
  const tok = new ToyTokenizer([' ab', ' abc', ' abd', 'x', 'c', 'd']);
  const e = task.parse({ file: 'd.jsonl', line: 4, value: { t: 'x ab', label: 0 } })[0]!;
  assert.throws(() => encodeCausal(task, e, tok), (err: Error & { code?: string }) => err.code === 'DATA' && err.message.startsWith('d.jsonl:4: the answer adds 0 tokens'));
});

test('masked SST-2 on RoBERTa: parts tokenized separately, mask position, label words Ġterrible / Ġgreat', { skip }, () => {
  const v = roberta!.vocab;
  const t = getBuiltinTask('sst2');
  const enc = encodeForMaskedLM(t, ex(t, { sentence: 'a fine film', label: 1 }), roberta!);
  assert.deepEqual(enc.input, [0, v['a']!, v['Ġfine']!, v['Ġfilm']!, v['ĠIt']!, v['Ġwas']!, 50264, v['.']!, 2]);
  assert.equal(enc.maskPos, 6);
  assert.deepEqual(enc.labelWordIds, [v['Ġterrible']!, v['Ġgreat']!]);
});

test('masked MNLI on RoBERTa: "<s>{premise minus last char}?<mask>, {hypothesis lower-cased}</s>"', { skip }, () => {
  const v = roberta!.vocab;
  const t = getBuiltinTask('mnli');
  const enc = encodeForMaskedLM(t, ex(t, { sentence1: 'The cat sat.', sentence2: 'A dog ran.', gold_label: 'neutral' }), roberta!);
  const expected = [0, v['The']!, v['Ġcat']!, v['Ġsat']!, v['?']!, 50264, v[',']!, v['Ġa']!, v['Ġdog']!, v['Ġran']!, v['.']!, 2];
  assert.deepEqual(enc.input, expected);
  assert.equal(enc.maskPos, 5);
  assert.equal(enc.label, 2);
});

test('masked limits: SST-5 cuts sentence 0 to 110 tokens; a mask cut off by max length is a DATA error', { skip }, () => {
  const t = getBuiltinTask('sst5');
  const sentence = Array.from({ length: 120 }, () => 'good').join(' ');
  const enc = encodeForMaskedLM(t, ex(t, { text: sentence, label: 3 }), roberta!);
  // <s> + 110 sentence tokens + ĠIt Ġwas + <mask> + . + </s>
  assert.equal(enc.input.length, 1 + 110 + 2 + 1 + 1 + 1);
  assert.equal(enc.maskPos, 113);
  const mr = getBuiltinTask('cr');
  assert.throws(() => encodeForMaskedLM(mr, ex(mr, { text: sentence, label: 1 }), roberta!, { maxLength: 50 }), (e: Error & { code?: string }) => e.code === 'DATA');
});

test('a label word that is not one token is a TOKENIZER error', { skip }, () => {
  const task = parseTaskFile('name: t\nmasked_prompt: "{text} It was{mask}."\nlabels: {"0": "zzqxj", "1": "great"}\n', 'task.yaml');
  const e = task.parse({ file: 'd.jsonl', line: 1, value: { text: 'ok', label: '1' } })[0]!;
  assert.throws(() => encodeForMaskedLM(task, e, roberta!), (err: Error & { code?: string }) => err.code === 'TOKENIZER' && /" zzqxj" is \d tokens/.test(err.message));
});

test('training encodings: candidates for classification, the correct answer tokens for COPA and SQuAD', () => {
  const tok = new ToyTokenizer(['a', ' It', ' was', ' great', ' terrible', 'P', ' so', ' x', ' y', '.', 'Answer:', ' Z', '\n']);
  const lm = { kind: 'causal' as const, tokenizer: tok };
  const sst2 = getBuiltinTask('sst2');
  const cls = encodeForTraining(sst2, ex(sst2, { sentence: 'a', label: 1 }), lm);
  assert.equal(cls.kind, 'candidates');
  if (cls.kind === 'candidates') {
    assert.equal(cls.label, 1);
    assert.deepEqual(cls.candidates.map((c) => c.continuation), [[tok.id(' terrible')], [tok.id(' great')]]);
  }
  const copa = getBuiltinTask('copa');
  const mc = encodeForTraining(copa, ex(copa, { premise: 'P.', choice1: 'X.', choice2: 'Y.', question: 'effect', label: 1 }), lm);
  assert.deepEqual(mc, { kind: 'answer', sequence: { prompt: [tok.id('P'), tok.id(' so')], continuation: [tok.id(' y'), tok.id('.')] } });
  const squad = getBuiltinTask('squad');
  const gen = encodeForTraining(squad, ex(squad, { title: 't', context: 'c', question: 'q', answers: ['Z'] }), lm);
  assert.equal(gen.kind, 'answer');
  if (gen.kind === 'answer') assert.deepEqual(gen.sequence.continuation, [tok.id(' Z'), tok.id('\n')]);
});

const loaderPath = new URL('../heads/model.ts', import.meta.url);
const loaderSkip = skip || (!existsSync(loaderPath) ? 'src/heads/model.ts not there yet' : false);

test("lmtune's own GPT-2 tokenizer (loadModel) encodes the OPT prompts as @huggingface/tokenizers does", { skip: loaderSkip }, async () => {
  const mod = (await import(loaderPath.href)) as { loadModel: (dir: string) => Promise<LanguageModel> };
  const model = await mod.loadModel(join(SHARED_MODELS, 'gpt2-fullvocab-n_embd2'));
  const rows: [string, Record<string, unknown>][] = [
    ['sst2', { sentence: "it 's a charming and often affecting journey . ", label: 1 }],
    ['rte', { premise: 'No Weapons of Mass Destruction Found in Iraq Yet.', hypothesis: 'Weapons of Mass Destruction Found in Iraq.', label: 'not_entailment' }],
    ['copa', { premise: 'My body cast a shadow over the grass.', choice1: 'The sun was rising.', choice2: 'The grass was cut.', question: 'cause', label: 0 }],
  ];
  for (const [name, row] of rows) {
    const t = getBuiltinTask(name);
    const e = ex(t, row);
    assert.deepEqual(encodeCausal(t, e, model.tokenizer), encodeCausal(t, e, gpt2!), name);
  }
});
