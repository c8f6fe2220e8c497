/**
 * Writes the data embedded in assets/demo/.
 *
 * `npm run demo`'s TREC subset (trec-train.jsonl, trec-dev.jsonl; task file trec-task.yaml): the HUM, LOC
 * and NUM questions of TREC.train.all (TREC has no test file) of at most TREC_MAX_WORDS words, one row
 * per distinct question, shuffled with a fixed seed; the first TREC_DEV_SIZE are the dev set and the
 * training set is TREC_TRAIN_PER_CLASS per class from the rest, so no question is on both sides.
 *
 * The SST-2 subset that the previous demo used and many tests still read, all of it *short* text (at
 * most MAX_WORDS words):
 * - sst2-train.jsonl: TRAIN_SIZE GLUE SST-2 training phrases of 3 to MAX_TRAIN_WORDS words, balanced by label;
 * - sst2-dev.jsonl: every stsa.binary.test sentence (SST's sentence-level test split) of at most MAX_WORDS
 *   words, minus the few that also occur verbatim in the training text the model was pretrained on.
 * Short because a 1.3M-parameter model reads the sentiment of a short text from its last positions and
 * loses it in a long one (docs/training.md, "The demo"). Deterministic:
 *   node --import tsx scripts/make-demo-data.ts ../shared/data
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../src/util/rng.ts';

const MAX_WORDS = 12;
const TRAIN_SIZE = 1000;
/** training phrases are shorter still: their sentiment sits closer to the position the model reads */
const MAX_TRAIN_WORDS = 10;

const shared = process.argv[2] ?? '../shared/data';

interface Row {
  sentence: string;
  label: number;
}

function rows(file: string, textField: string): Row[] {
  return readFileSync(join(shared, file), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const r = JSON.parse(l) as Record<string, string | number>;
      return { sentence: String(r[textField]).trim(), label: Number(r['label']) };
    });
}

const words = (s: string) => s.split(/\s+/).length;
const toJsonl = (rs: readonly Row[]) => rs.map((r) => JSON.stringify(r)).join('\n') + '\n';

const trainText = new Set([...rows('sst2/glue_train.jsonl', 'sentence'), ...rows('sst2/stsa.binary.train.jsonl', 'text')].map((r) => r.sentence));
const dev = rows('sst2/stsa.binary.test.jsonl', 'text').filter((r) => words(r.sentence) <= MAX_WORDS && !trainText.has(r.sentence));
const devText = new Set(dev.map((r) => r.sentence));

const phrases = rows('sst2/glue_train.jsonl', 'sentence').filter((r) => words(r.sentence) >= 3 && words(r.sentence) <= MAX_TRAIN_WORDS && !devText.has(r.sentence));
const rng = new Rng(1);
const train = rng.shuffle([0, 1].flatMap((y) => rng.shuffle(phrases.filter((r) => r.label === y)).slice(0, TRAIN_SIZE / 2)));

mkdirSync('assets/demo', { recursive: true });
writeFileSync('assets/demo/sst2-train.jsonl', toJsonl(train));
writeFileSync('assets/demo/sst2-dev.jsonl', toJsonl(dev));
process.stdout.write(`assets/demo: ${train.length} training phrases, ${dev.length} dev sentences (${dev.filter((r) => r.label === 1).length} positive)\n`);

// ---- TREC question type (the demo's task; see the header) ----------------------------------------

/** the three types whose cue words a small LM has seen most: Who, Where, How many / When */
const TREC_LABELS = [3, 4, 5]; // HUM, LOC, NUM
const TREC_DEV_SIZE = 1000;
const TREC_TRAIN_PER_CLASS = 250;
/** the model has 64 positions; a question of at most this many words fits with the prompt around it */
const TREC_MAX_WORDS = 20;
const trecAll = readFileSync(join(shared, 'trec/TREC.train.all.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l) as { text: string; label: number })
  .map((r) => ({ text: r.text.trim(), label: r.label }))
  .filter((r) => words(r.text) <= TREC_MAX_WORDS && TREC_LABELS.includes(r.label));
// one row per distinct question (the file repeats some, a few with two labels: those are dropped), so a
// question can never be on both sides of the split
const byText = new Map<string, Set<number>>();
for (const r of trecAll) byText.set(r.text, (byText.get(r.text) ?? new Set()).add(r.label));
const trecUnique = [...byText].filter(([, ls]) => ls.size === 1).map(([text, ls]) => ({ text, label: [...ls][0]! }));
const trecRng = new Rng(2);
const trecShuffled = trecRng.shuffle(trecUnique);
const trecDev = trecShuffled.slice(0, TREC_DEV_SIZE);
const trecPool = trecShuffled.slice(TREC_DEV_SIZE);
const trecTrain = trecRng.shuffle(TREC_LABELS.flatMap((y) => trecPool.filter((r) => r.label === y).slice(0, TREC_TRAIN_PER_CLASS)));
writeFileSync('assets/demo/trec-train.jsonl', toJsonl(trecTrain as unknown as Row[]));
writeFileSync('assets/demo/trec-dev.jsonl', toJsonl(trecDev as unknown as Row[]));
const count = (rs: readonly { label: number }[]) => TREC_LABELS.map((y) => rs.filter((r) => r.label === y).length).join('/');
process.stdout.write(`assets/demo: ${trecTrain.length} TREC training questions (${count(trecTrain)}), ${trecDev.length} dev questions (${count(trecDev)}; HUM/LOC/NUM)\n`);
