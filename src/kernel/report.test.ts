/** The kernel heat map groups examples by label and colors cosines; the report carries the run table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kernelHeatmap, kernelReport } from './report.ts';
import type { RunSummary } from './run.ts';

test('heat map: examples grouped by label, cosine +1 red and −1 blue, one cell per pair', () => {
  // labels 1, 0, 1, 0; K = v vᵀ with v = ±1 by label: same label cosine +1, different −1
  const labels = Int32Array.from([1, 0, 1, 0]);
  const v = [1, -1, 1, -1];
  const n = 4;
  const K = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) K[i * n + j] = 3 * v[i]! * v[j]!;
  const svg = kernelHeatmap(K, n, 1, labels, 'test');
  const fills = [...svg.matchAll(/<rect x="(\d+)" y="(\d+)"[^>]*fill="([^"]+)"/g)];
  assert.equal(fills.length, 16);
  assert.equal(fills.filter((m) => m[3] === 'rgb(255,0,0)').length, 8);
  assert.equal(fills.filter((m) => m[3] === 'rgb(0,0,255)').length, 8);
  // the first row is a label-0 example: red exactly where the column is also label 0 (the first two)
  const firstRow = fills.slice(0, 4).map((m) => m[3]);
  assert.deepEqual(firstRow, ['rgb(255,0,0)', 'rgb(255,0,0)', 'rgb(0,0,255)', 'rgb(0,0,255)']);
  // two label groups: one separating line each way
  assert.equal((svg.match(/<line /g) ?? []).length, 2);
});

test('the run report shows the kernel-vs-fine-tuning table, a heat map and a spectrum', () => {
  const run: RunSummary = {
    task: 'sst2', model: 'm', k: 16, seeds: [13, 21], testSize: 10, zeroShotTest: 0.5, seconds: 1, peakRssMb: 1,
    rows: [{ seed: 13, formula: 'sgd', kernel: { solver: 'lstsq', dev: 0.6, test: 0.7, best: { reg: 0, f0Scaling: Infinity }, seconds: 1 }, ft: { optimizer: 'sgd', lr: 0.1, dev: 0.5, test: 0.55, steps: 10, seconds: 1 } }],
    table: [{ formula: 'sgd', kernelMean: 0.7, kernelStd: 0.05, ftOptimizer: 'sgd', ftMean: 0.55, ftStd: 0, seeds: 2 }],
  };
  const K = Float64Array.from([2, 1, 0, 1, 2, 0, 0, 0, 1]);
  const html = kernelReport('t', [{ name: 'sgd', K, n: 3, C: 1, labels: Int32Array.from([0, 1, 0]) }], run);
  assert.match(html, /<td>70\.0 \(5\.0\)<\/td><td>sgd<\/td><td>55\.0 \(0\.0\)<\/td>/);
  assert.match(html, /f0Scaling(&quot;|&#34;|")?:(&quot;|&#34;|")?inf/);
  assert.equal((html.match(/<svg/g) ?? []).length, 2);
});
