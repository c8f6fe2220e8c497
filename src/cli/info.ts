/** `lmtune info <dir>`: architecture, parameter count, dtypes, config highlights and tokenizer facts of a checkpoint folder. */
import type { Command } from 'commander';
import { describeCheckpoint, type CheckpointInfo } from '../models/checkpoint.ts';

function fmtInt(n: number): string {
  return n.toLocaleString('en-US');
}

function fmtSpecial(s: { token: string; id: number } | null): string {
  return s ? `${s.token} (${s.id})` : '-';
}

/** The human-readable rendering of `describeCheckpoint`'s result. */
export function renderInfo(info: CheckpointInfo): string {
  const lines: string[] = [];
  const row = (k: string, v: string): void => {
    lines.push(`${k.padEnd(20)} ${v}`);
  };
  row('folder', info.dir);
  row('architecture', `${info.family} (model_type ${info.modelType || '-'}; ${info.architectures.join(', ') || 'no architectures'})`);
  row('parameters', `${fmtInt(info.parameters)} stored, ${fmtInt(info.expectedParameters)} from config.json`);
  row('tensors', `${info.tensorCount} in ${info.layout === 'single' ? 'one file' : `${info.files.length - 1} shards`}`);
  row('dtypes', Object.entries(info.dtypes).map(([d, n]) => `${d}: ${fmtInt(n)}`).join(', '));
  for (const f of info.files) row('  file', `${f.name} (${fmtInt(f.bytes)} bytes)`);
  row('tensor check', info.tensorCheck);
  lines.push('config');
  for (const [k, v] of Object.entries(info.config)) row(`  ${k}`, String(v));
  lines.push('tokenizer');
  const t = info.tokenizer;
  if ('error' in t) {
    row('  error', t.error);
  } else {
    row('  source', t.source);
    row('  vocab size', fmtInt(t.vocabSize));
    row('  bos / eos', `${fmtSpecial(t.bos)} / ${fmtSpecial(t.eos)}`);
    row('  pad / mask / unk', `${fmtSpecial(t.pad)} / ${fmtSpecial(t.mask)} / ${fmtSpecial(t.unk)}`);
    row('  special template', `${t.template}   [${t.templateRule}]`);
    row('  added tokens', String(t.addedTokens));
  }
  for (const n of info.notes) row('note', n);
  return lines.join('\n') + '\n';
}

export function register(program: Command): void {
  program
    .command('info')
    .description('describe a Hugging Face checkpoint folder: architecture, parameters, dtypes, tokenizer')
    .argument('<dir>', 'checkpoint folder (config.json + model.safetensors or a sharded index)')
    .option('--json', 'print one JSON object instead of a table')
    .option('--no-values', 'check the tensors from the headers only (skip reading every weight for NaN/Inf and integer dtypes)')
    .action(async (dir: string, opts: { json?: boolean; values?: boolean }) => {
      const info = await describeCheckpoint(dir, { values: opts.values !== false });
      process.stdout.write(opts.json ? JSON.stringify(info) + '\n' : renderInfo(info));
    });
}
