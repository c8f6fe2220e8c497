/* global uPlot, document, window */
// Runs in the page, not in Node: draws lmtune chart specs (src/report/chart.ts) with uPlot. Static
// reports inline this file; `lmtune serve` serves it. Series may have different x values (runs of
// different lengths, evaluations every k steps), so they are aligned on the union of their x values,
// and lines span the gaps that alignment creates.
(function () {
  'use strict';
  var PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

  function align(spec) {
    var xs = new Set();
    spec.series.forEach(function (s) {
      s.x.forEach(function (v, i) {
        if (v !== null && s.y[i] !== null && isFinite(v)) xs.add(v);
      });
    });
    var x = Array.from(xs).sort(function (a, b) { return a - b; });
    var at = new Map(x.map(function (v, i) { return [v, i]; }));
    var data = [x];
    var points = 0;
    spec.series.forEach(function (s) {
      var y = new Array(x.length).fill(null);
      s.x.forEach(function (v, i) {
        var val = s.y[i];
        if (v === null || val === null || !isFinite(val) || (spec.logY && !(val > 0))) return;
        var k = at.get(v);
        if (k !== undefined) {
          y[k] = val;
          points++;
        }
      });
      data.push(y);
    });
    return { data: data, points: points };
  }

  function fmt(v) {
    if (v === null || v === undefined) return '–';
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
    return String(Number(v.toPrecision(5)));
  }

  /** tick labels: short, with an exponent for very small or large values (uPlot's default rounds 5e-5 to 0) */
  function tick(v) {
    if (v === null || v === undefined) return '';
    if (v === 0) return '0';
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) {
      var p = v.toExponential().split('e');
      return Number(Number(p[0]).toPrecision(3)) + 'e' + Number(p[1]);
    }
    return String(Number(v.toPrecision(6)));
  }

  function options(spec, width) {
    return {
      title: spec.title,
      width: width,
      height: spec.height || 300,
      scales: { x: { time: false }, y: spec.logY ? { distr: 3 } : {} },
      axes: [
        { label: spec.xLabel, stroke: '#333', grid: { stroke: '#e4e4e4' }, values: function (u, vals) { return vals.map(tick); } },
        { label: spec.yLabel, stroke: '#333', grid: { stroke: '#e4e4e4' }, size: 60, values: function (u, vals) { return vals.map(tick); } },
      ],
      series: [{ label: spec.xLabel, value: function (u, v) { return fmt(v); } }].concat(
        spec.series.map(function (s, i) {
          return {
            label: s.name,
            stroke: s.color || PALETTE[i % PALETTE.length],
            width: s.width || 1.75,
            dash: s.dashed ? [6, 4] : undefined,
            spanGaps: true,
            points: { show: s.points === true },
            value: function (u, v) { return fmt(v); },
          };
        }),
      ),
    };
  }

  /** draws `spec` into `el` (or updates the chart already there); returns the number of plotted points */
  function render(el, spec) {
    var a = align(spec);
    var prev = el.__lmtuneChart;
    var shape = spec.series.map(function (s) { return s.name; }).join('\u0000') + (spec.logY ? '/log' : '');
    if (prev && prev.shape === shape) {
      prev.u.setData(a.data);
    } else {
      if (prev) prev.u.destroy();
      el.innerHTML = '';
      var width = Math.max(320, Math.min(spec.width || 640, (el.parentElement && el.parentElement.clientWidth) || 640));
      el.__lmtuneChart = { shape: shape, u: new uPlot(options(spec, width), a.data, el) };
    }
    el.setAttribute('data-points', String(a.points));
    el.setAttribute('data-series', String(spec.series.length));
    return a.points;
  }

  /** renders every chart of the page: a JSON list of specs in <script id="lmtune-charts"> */
  function renderAll() {
    var src = document.getElementById('lmtune-charts');
    if (!src) return;
    JSON.parse(src.textContent).forEach(function (spec) {
      var el = document.getElementById(spec.id);
      if (el) render(el, spec);
    });
  }

  window.lmtuneCharts = { render: render, renderAll: renderAll, format: fmt };
})();
