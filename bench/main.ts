/** `npm run bench -- <engine|forward|train|mezo|less|less-select|web|distributed> [--threads N]`: prints one JSON object per benchmark. */
import { benchEngine } from './engine.ts';
import { benchForward, benchMezo, benchTrain } from './models.ts';
import { benchLess } from './less.ts';
import { benchLessSelect } from './less-select.ts';
import { benchWeb } from './web.ts';
import { benchDistributed } from './distributed.ts';

const args = process.argv.slice(2);
const tIdx = args.indexOf('--threads');
// the value after --threads is not a benchmark's name
const which = args.filter((a, i) => !a.startsWith('--') && !(tIdx >= 0 && i === tIdx + 1));
const threads = tIdx >= 0 ? Number(args[tIdx + 1]) : 2;
const all: Record<string, (threads: number) => Promise<Record<string, unknown>>> = {
  engine: benchEngine,
  forward: benchForward,
  train: benchTrain,
  mezo: benchMezo,
  less: benchLess,
  'less-select': benchLessSelect,
  web: benchWeb,
  distributed: benchDistributed,
};
// less-select writes a 16 GB datastore on its first run: only when named
const names = which.length ? which : Object.keys(all).filter((n) => n !== 'less-select');
for (const n of names) {
  const f = all[n];
  if (!f) {
    process.stderr.write(`unknown benchmark '${n}'; choose from ${Object.keys(all).join(', ')}\n`);
    process.exit(2);
  }
  process.stdout.write(JSON.stringify(await f(threads)) + '\n');
}
