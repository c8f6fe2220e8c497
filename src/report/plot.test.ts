// SVG plot and HTML report: tick arithmetic, data-to-pixel mapping computed by hand from the layout,
// gaps, log axes, bands, escaping, well-formed markup, determinism, and a self-contained HTML file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LmtuneError } from '../util/errors.ts';
import { formatTick, htmlReport, linePlot, logTicks, niceStep, niceTicks } from './plot.ts';

/** Minimal well-formedness check: every opened tag is closed in order (comments and doctype skipped). */
function balanced(markup: string, voidTags: string[] = []): boolean {
  const stack: string[] = [];
  for (const m of markup.matchAll(/<(\/?)([a-zA-Z][\w:-]*)[^>]*?(\/?)>/g)) {
    const [, close, name, self] = m;
    if (self || voidTags.includes(name!.toLowerCase())) continue;
    if (close) {
      if (stack.pop() !== name) return false;
    } else stack.push(name!);
  }
  return stack.length === 0;
}

test('niceStep picks {1, 2, 5}×10^k; niceTicks covers the range with multiples of the step', () => {
  assert.equal(niceStep(1, 5), 0.2);
  assert.equal(niceStep(7, 6), 1);
  assert.equal(niceStep(0.03, 6), 0.005);
  const t = niceTicks(0.013, 0.94);
  assert.equal(t.step, 0.2);
  assert.deepEqual(t.ticks, [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(t.domain, [0, 1]);
  const neg = niceTicks(-3.2, 7.9);
  assert.ok(neg.domain[0] <= -3.2 && neg.domain[1] >= 7.9);
  for (const x of neg.ticks) assert.ok(Math.abs(x / neg.step - Math.round(x / neg.step)) < 1e-9);
  const flat = niceTicks(5, 5);
  assert.ok(flat.domain[0] < 5 && flat.domain[1] > 5, 'a constant series still gets a non-empty axis');
});

test('logTicks: 1-2-5 ticks inside a padded data range', () => {
  // padding (7.9e-3/5.5e-4)^0.05 ≈ 1.142 puts the domain at [4.8e-4, 9.0e-3]
  const t = logTicks(5.5e-4, 7.9e-3);
  assert.deepEqual(t.ticks, [5e-4, 1e-3, 2e-3, 5e-3]);
  assert.ok(t.domain[0] < 5.5e-4 && t.domain[1] > 7.9e-3);
  const wide = logTicks(1e-6, 1);
  assert.deepEqual(wide.ticks, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1]);
  assert.throws(() => logTicks(0, 1), LmtuneError);
  assert.equal(formatTick(2e-4), '2e-4');
  assert.equal(formatTick(0.25), '0.25');
  assert.equal(formatTick(150000), '1.5e5');
});

test('pixel mapping: (0,0) and (1,1) land on the plot corners computed from the layout', () => {
  // default 640×400, margins left 72, right 16, top 14 (no title), bottom 32 (no x label):
  // plot area x ∈ [72, 624], y ∈ [14, 368]; y domain [0, 1] by nice ticks, x domain = data range [0, 1]
  const svg = linePlot({ series: [{ name: 's', x: [0, 0.5, 1], y: [0, 0.25, 1] }] });
  assert.match(svg, /<path class="series" d="M72\.00 368\.00 L348\.00 279\.50 L624\.00 14\.00"/);
});

test('non-finite points break the line into separate segments; log axes skip non-positive values', () => {
  const gap = linePlot({ series: [{ name: 'g', x: [0, 1, 2, 3], y: [1, Number.NaN, 3, 4] }] });
  const d = /class="series" d="([^"]+)"/.exec(gap)![1]!;
  assert.equal((d.match(/M/g) ?? []).length, 2);
  const log = linePlot({ logY: true, series: [{ name: 'l', x: [0, 1, 2, 3], y: [0, 1e-3, 1e-2, 1e-1] }], referenceLines: [{ y: 5e-3, label: 'ref' }] });
  const dl = /class="series" d="([^"]+)"/.exec(log)![1]!;
  assert.equal((dl.match(/[ML]/g) ?? []).length, 3, 'the y = 0 point is dropped');
  assert.match(log, /class="reference"/);
  assert.match(log, />0\.001</);
  assert.match(log, />0\.05</); // two decades: 1-2-5 ticks
});

test('a std band becomes one polygon with 2n vertices, drawn under the line', () => {
  const svg = linePlot({ series: [{ name: 'm', x: [0, 1, 2, 3], y: [1, 2, 3, 4], std: [0.5, 0.5, 0.5, 0.5] }] });
  const poly = /<polygon class="band" points="([^"]+)"/.exec(svg)![1]!;
  assert.equal(poly.split(' ').length, 8);
  assert.ok(svg.indexOf('class="band"') < svg.indexOf('class="series"'));
});

test('labels are escaped, the markup is balanced, and the output is deterministic', () => {
  const opts = {
    title: 'loss <train> & "eval"',
    xLabel: 'step',
    yLabel: 'loss',
    series: [
      { name: '<a&b>', x: [1, 2, 3], y: [3, 2, 1] },
      { name: 'second', x: [1, 2, 3], y: [2, 2, 2], dashed: true },
    ],
  };
  const svg = linePlot(opts);
  assert.ok(!svg.includes('<a&b>'));
  assert.ok(svg.includes('&lt;a&amp;b&gt;'));
  assert.ok(svg.includes('loss &lt;train&gt; &amp; &quot;eval&quot;'));
  assert.ok(balanced(svg));
  assert.equal(linePlot(opts), svg);
  assert.ok(svg.includes('stroke-dasharray="6 4"'));
});

test('mismatched lengths are rejected', () => {
  assert.throws(() => linePlot({ series: [{ name: 'x', x: [1, 2], y: [1] }] }), (e: unknown) => e instanceof LmtuneError && e.code === 'SHAPE');
  assert.throws(() => linePlot({ series: [{ name: 'x', x: [1, 2], y: [1, 2], std: [1] }] }), LmtuneError);
});

test('htmlReport: one self-contained, balanced HTML file with the SVGs and escaped tables', () => {
  const svg = linePlot({ series: [{ name: 's', x: [0, 1], y: [0, 1] }] });
  const html = htmlReport('Report <1>', [
    { heading: 'Curves', paragraphs: ['a < b'], svgs: [svg, svg] },
    { heading: 'Numbers', table: { columns: ['run', 'value'], rows: [['x<y', 0.123456789], ['z', 3]] }, pre: '{"a": 1}' },
  ]);
  assert.ok(html.startsWith('<!DOCTYPE html>'));
  assert.ok(html.includes('<title>Report &lt;1&gt;</title>'));
  assert.equal(html.split(svg).length - 1, 2, 'both SVGs embedded verbatim');
  assert.ok(html.includes('<td>x&lt;y</td><td>0.12346</td>'));
  assert.ok(!/<script|\ssrc=|\shref=|<link/i.test(html), 'no external resources or scripts');
  assert.ok(balanced(html.replace('<!DOCTYPE html>', ''), ['meta']));
  assert.throws(() => htmlReport('t', [{ heading: 'h', table: { columns: ['a', 'b'], rows: [[1]] } }]), LmtuneError);
});
