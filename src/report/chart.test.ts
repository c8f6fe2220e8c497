// uPlot chart reports: one self-contained file (uPlot, renderer and data inline, nothing fetched), data
// that cannot close its <script> element, and overlays whose x axes are the runs' steps, samples or SDE
// times with the smoothed loss recomputed here by a direct sum.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LmtuneError } from '../util/errors.ts';
import { chartAssets, htmlChartReport, scriptJson, type ChartSpec } from './chart.ts';
import { overlayChart, type OverlayRun } from './overlay.ts';

const spec = (id: string, name: string): ChartSpec => ({ id, title: 't', xLabel: 'step', yLabel: 'loss', series: [{ name, x: [1, 2, 3], y: [3, Number.NaN, 1] }] });

test('htmlChartReport: self-contained, with uPlot and the chart data inline', () => {
  const html = htmlChartReport('Run <1>', [{ heading: 'What', facts: [{ label: 'task', value: 'a<b' }], charts: [spec('c1', '</script><b>x')] }, { heading: 'Numbers', table: { columns: ['a', 'b'], rows: [[1, 0.123456789]] }, pre: 'lmtune train' }]);
  assert.ok(html.includes(chartAssets().uplotJs), 'uPlot inlined');
  assert.ok(html.includes(chartAssets().clientJs), 'renderer inlined');
  assert.ok(!/\ssrc=|\shref=|<link/i.test(html), 'nothing loaded from elsewhere');
  assert.equal(html.split('</script>').length - 1, 4, 'only the four script elements close');
  assert.ok(html.includes('<dt>task</dt><dd>a&lt;b</dd>'));
  assert.ok(html.includes('<td>1</td><td>0.12346</td>'));
  const data = /<script type="application\/json" id="lmtune-charts">(.*)<\/script>/.exec(html)![1]!;
  const parsed = JSON.parse(data) as ChartSpec[];
  assert.equal(parsed[0]!.series[0]!.name, '</script><b>x');
  assert.deepEqual(parsed[0]!.series[0]!.y, [3, null, 1], 'NaN becomes a gap');
  assert.equal(scriptJson('\u2028<'), '"\\u2028\\u003c"');
  assert.throws(() => htmlChartReport('t', [{ heading: 'h', charts: [spec('same', 'a'), spec('same', 'b')] }]), LmtuneError);
  assert.throws(() => htmlChartReport('t', [{ heading: 'h', charts: [{ ...spec('c', 'a'), series: [{ name: 'a', x: [1], y: [1, 2] }] }] }]), (e: unknown) => e instanceof LmtuneError && e.code === 'SHAPE');
});

test('overlayChart: steps, samples (batch × accumulation × 2 under SVAG) and SDE time; runs without SDE time are named', () => {
  const loss = [4, 2, 3, 1, 5];
  const runs: OverlayRun[] = [
    { name: 'svag', steps: [1, 2, 3, 4, 5], sde: [0.05, 0.1, 0.15, 0.2, 0.25], loss, samplesPerStep: 16 },
    { name: 'mezo', steps: [1, 2, 3, 4, 5], sde: null, loss, samplesPerStep: 8 },
  ];
  const ref = loss.map((_, i) => {
    const w = loss.slice(Math.max(0, i - 2), i + 1);
    return w.reduce((a, b) => a + b, 0) / w.length;
  });
  const sde = overlayChart(runs, 'sde', 3);
  assert.deepEqual(sde.skipped, ['mezo']);
  assert.equal(sde.chart.series.length, 1);
  assert.deepEqual(sde.chart.series[0]!.x, [0.05, 0.1, 0.15, 0.2, 0.25]);
  sde.chart.series[0]!.y.forEach((v, i) => assert.ok(Math.abs(v! - ref[i]!) < 1e-12));
  const samples = overlayChart(runs, 'samples', 3);
  assert.deepEqual(samples.chart.series.map((s) => s.x), [[16, 32, 48, 64, 80], [8, 16, 24, 32, 40]]);
  assert.equal(samples.chart.xLabel, 'training samples');
  assert.equal(overlayChart(runs, 'step', 3).chart.series.length, 2);
});
