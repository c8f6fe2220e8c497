/** Bad graphs fail at build time with a message naming the op and the shapes, never inside onnxruntime. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, grad } from './index.ts';
import { LmtuneError } from '../util/errors.ts';

function throwsShape(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LmtuneError, `expected LmtuneError, got ${String(e)}`);
    for (const f of fragments) assert.ok(e.message.includes(f), `message "${e.message}" should mention "${f}"`);
    return true;
  });
}

test('shape errors name the op and the shapes', () => {
  const g = new Graph();
  const a = g.param('a', [3, 4]);
  const b = g.param('b', [5, 6]);
  throwsShape(() => a.matmul(b), 'matmul', '[3, 4]', '[5, 6]');
  throwsShape(() => a.add(g.param('c', [5])), 'add', '[3, 4]', '[5]');
  throwsShape(() => a.reshape([5, 5]), 'reshape', '[3, 4]', '[5, 5]');
  throwsShape(() => a.transpose([0, 0]), 'transpose');
  throwsShape(() => a.slice(1, 3, 2), 'slice', '[3, 2)');
  throwsShape(() => g.concat([a, b], 0), 'concat', '[3, 4]', '[5, 6]');
  throwsShape(() => g.apply1('gather', [a, g.param('idx', [2])]), 'gather', 'i64');
  throwsShape(() => g.param('x', [2, -1]), 'invalid dimension');
  throwsShape(() => g.param('a', [1]), "'a'", 'twice');
  throwsShape(() => grad(a.exp(), [a]), 'scalar');
});

test('per-example gradients through a parameter-only op are refused with a hint', () => {
  const g = new Graph();
  const x = g.input('x', [2, 3, 4]);
  const w = g.param('w', [5, 4]);
  const loss = x.matmul(w.transpose()).sum();
  assert.throws(() => grad(loss, [w], { perExample: [w] }), (e: unknown) => e instanceof LmtuneError && /per-example/.test(e.message) && e.hint !== undefined);
});
