/**
 * Writes the SST-2 subset embedded for `npm run demo` (assets/demo/): 1000 training sentences from
 * stsa.binary.train and 400 held-out sentences from stsa.binary.test (SST's sentence-level test split;
 * no overlap with the GLUE training phrases the default model was pretrained on). Seeded, reproducible:
 *   node --import tsx scripts/make-demo-data.ts ../shared/data
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from '../src/util/rng.ts';

const shared = process.argv[2] ?? '../shared/data';
function sample(file: string, n: number, seed: number): string[] {
  const rows = readFileSync(join(shared, file), 'utf8').split('\n').filter((l) => l.trim());
  // balanced: n/2 of each label
  const byLabel = [0, 1].map((y) => rows.filter((r) => (JSON.parse(r) as { label: number }).label === y));
  const rng = new Rng(seed);
  const out = byLabel.flatMap((rs) => rng.shuffle(rs).slice(0, n / 2));
  return rng.shuffle(out).map((r) => {
    const { label, text } = JSON.parse(r) as { label: number; text: string };
    return JSON.stringify({ sentence: text, label });
  });
}
mkdirSync('assets/demo', { recursive: true });
writeFileSync('assets/demo/sst2-train.jsonl', sample('sst2/stsa.binary.train.jsonl', 1000, 1).join('\n') + '\n');
writeFileSync('assets/demo/sst2-dev.jsonl', sample('sst2/stsa.binary.test.jsonl', 400, 2).join('\n') + '\n');
