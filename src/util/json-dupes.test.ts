/** duplicateKey against what it must agree with: JSON.stringify never repeats a key; a spliced repeat is found. */
import { test } from 'node:test';
import fc from 'fast-check';
import { duplicateKey } from './json-dupes.ts';

test('no duplicate in anything JSON.stringify writes (any JSON value, escapes and unicode included)', () => {
  fc.assert(fc.property(fc.jsonValue(), (v) => duplicateKey(JSON.stringify(v)) === null && duplicateKey(JSON.stringify(v, null, 2)) === null), { seed: 19, numRuns: 500 });
});

test('a key repeated in a nested object is found with the path of keys above it', () => {
  const obj = fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1, maxKeys: 4 });
  fc.assert(
    fc.property(obj, fc.string({ maxLength: 4 }), (inner, outerKey) => {
      const k = Object.keys(inner)[0]!;
      const innerText = JSON.stringify(inner).slice(0, -1) + `,${JSON.stringify(k)}:0}`;
      const text = `{${JSON.stringify(outerKey)}:${innerText}}`;
      const d = duplicateKey(text);
      return d !== null && d.key === k && d.path.length === 1 && d.path[0] === outerKey;
    }),
    { seed: 19, numRuns: 300 },
  );
});
