/** The portable SHA-256 against Node's OpenSSL one on random strings of every length around the block edges. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { sha256Hex } from './sha256.ts';

test('sha256Hex equals node:crypto for random unicode strings and every length 0..200', () => {
  for (let n = 0; n <= 200; n++) {
    const s = 'a'.repeat(n);
    assert.equal(sha256Hex(s), createHash('sha256').update(s).digest('hex'), `length ${n}`);
  }
  fc.assert(fc.property(fc.string({ maxLength: 300, unit: 'grapheme' }), (s) => sha256Hex(s) === createHash('sha256').update(s).digest('hex')), { seed: 19, numRuns: 300 });
});
