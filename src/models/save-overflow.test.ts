/**
 * f16/bf16 checkpoints never hold an Inf their weights did not (issue 19): a tensor with a finite value
 * outside F16's range (|x| ≥ 65520 rounds to Inf) or BF16's (|x| ≥ 2¹²⁷·511/256) is saved as F32 with a
 * warning naming it, the other tensors keep the asked dtype; a tensor holding NaN/Inf is refused; the
 * serializer itself refuses an overflowing F16/BF16 write before a byte is written. The limits are checked
 * against the encoder at the boundary (the largest value that stays finite, the smallest that does not).
 */
import '../node/host.ts';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { loadCheckpointTensors, saveCheckpoint } from './checkpoint.ts';
import { safetensorsBytes } from './safetensors.ts';

const ROOT = mkdtempSync(join(tmpdir(), 'lmtune-ovf-'));
after(() => rmSync(ROOT, { recursive: true, force: true }));

const numeric = (re: RegExp) => (e: unknown) => e instanceof LmtuneError && e.code === 'NUMERIC' && re.test(e.message);

function t(values: number[]): { shape: number[]; data: Float32Array } {
  return { shape: [values.length], data: Float32Array.from(values) };
}

for (const [dtype, ok, over] of [
  ['F16', 65519, 65520],
  // the f32 values just below and at the midpoint between bf16's largest finite value and Inf
  ['BF16', new Float32Array(new Uint32Array([0x7f7f7fff]).buffer)[0]!, 2 ** 127 * (511 / 256)],
] as const) {
  test(`${dtype}: a tensor with ${over} is saved as F32 with a warning; ${ok} and every other tensor stay ${dtype}`, async () => {
    const dir = join(ROOT, dtype);
    const warnings: string[] = [];
    const saved = saveCheckpoint(dir, { model_type: 'gpt2' }, new Map([['a', t([1, -2, ok, -ok])], ['big', t([0.5, -over, 3])], ['c', t([0.25])]]), { dtype, onWarning: (m) => warnings.push(m) });
    assert.deepEqual(saved.widened, ['big']);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, new RegExp(`tensor 'big' is saved as F32, not ${dtype}: its value -${over === 65520 ? '65520' : '3\\.39\\d+e\\+38'} \\(index 1\\) overflows ${dtype}`));
    const back = await loadCheckpointTensors(dir);
    assert.equal(back.tensors.get('a')!.dtype, dtype);
    assert.equal(back.tensors.get('c')!.dtype, dtype);
    assert.equal(back.tensors.get('big')!.dtype, 'F32');
    for (const x of back.tensors.values()) assert.ok(x.data.every(Number.isFinite), 'nothing reads back as Inf');
    assert.equal(back.tensors.get('big')!.data[1], Math.fround(-over));
    // config.json no longer claims one dtype for a mixed folder
    assert.equal(back.config.torch_dtype, undefined);
    // the serializer alone: the same tensor as F16/BF16 is refused before anything is written
    assert.throws(() => safetensorsBytes([['big', { ...t([0.5, -over, 3]), dtype }]]), numeric(new RegExp(`tensor 'big': the value -.* at index 1 overflows ${dtype} \\(it would be written as Inf\\)`)));
    safetensorsBytes([['a', { ...t([ok, -ok]), dtype }]]);
  });
}

test('a tensor holding NaN or Inf is refused by saveCheckpoint (any dtype), and nothing is written', () => {
  for (const [v, dtype] of [[Number.NaN, 'F32'], [Number.POSITIVE_INFINITY, 'F16'], [Number.NEGATIVE_INFINITY, 'BF16']] as const) {
    const dir = join(ROOT, `bad-${dtype}`);
    assert.throws(() => saveCheckpoint(dir, { model_type: 'gpt2' }, new Map([['ok', t([1])], ['w', t([0, 1, v])]]), { dtype }), numeric(new RegExp(`tensor 'w' holds ${v} at index 2; refusing to save a checkpoint with non-finite weights`)));
    assert.ok(!existsSync(join(dir, 'model.safetensors')));
  }
});
