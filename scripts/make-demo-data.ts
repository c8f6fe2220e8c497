/**
 * Writes the SST-2 subset embedded for `npm run demo` (assets/demo/), all of it *short* text (at most
 * MAX_WORDS words):
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
