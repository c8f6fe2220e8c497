/** `npm run bench -- <engine|forward|train|mezo|less> [--threads N]`: prints one JSON object per benchmark. */
import { benchEngine } from './engine.ts';
import { benchForward, benchMezo, benchTrain } from './models.ts';
import { benchLess } from './less.ts';

const args = process.argv.slice(2);
const which = args.filter((a) => !a.startsWith('--'));
const tIdx = args.indexOf('--threads');
const threads = tIdx >= 0 ? Number(args[tIdx + 1]) : 2;
const all: Record<string, (threads: number) => Promise<Record<string, unknown>>> = {
  engine: benchEngine,
  forward: benchForward,
  train: benchTrain,
  mezo: benchMezo,
  less: benchLess,
};
const names = which.length ? which : Object.keys(all);
for (const n of names) {
  const f = all[n];
  if (!f) {
    process.stderr.write(`unknown benchmark '${n}'; choose from ${Object.keys(all).join(', ')}\n`);
    process.exit(2);
  }
  process.stdout.write(JSON.stringify(await f(threads)) + '\n');
}
