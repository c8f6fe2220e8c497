/* global document, window, EventSource */
// Runs in the page, not in Node: shows the view the server embedded (HTML fragments by element id and
// chart specs) and applies the views that the server pushes as a run writes its logs.
(function () {
  'use strict';
  var state = { updates: 0, failure: null };
  window.lmtuneDashboard = state;

  function apply(view) {
    if (!view) return;
    // keep the runs ticked for an overlay across a refresh of the runs table
    var ticked = Array.prototype.map.call(document.querySelectorAll('input[name="run"]:checked'), function (i) { return i.value; });
    Object.keys(view.fragments).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && el.innerHTML !== view.fragments[id]) el.innerHTML = view.fragments[id];
    });
    document.querySelectorAll('input[name="run"]').forEach(function (i) {
      if (ticked.indexOf(i.value) >= 0) i.checked = true;
    });
    var box = document.getElementById('charts');
    view.charts.forEach(function (spec) {
      var el = document.getElementById(spec.id);
      if (!el && box) {
        el = document.createElement('div');
        el.className = 'chart';
        el.id = spec.id;
        box.appendChild(el);
      }
      if (el) window.lmtuneCharts.render(el, spec);
    });
    state.updates++;
  }

  var conf = JSON.parse(document.getElementById('lmtune-view').textContent);
  apply(conf.view);
  if (conf.events && window.EventSource) {
    var es = new EventSource(conf.events);
    es.addEventListener('view', function (e) {
      apply(JSON.parse(e.data));
    });
    es.addEventListener('failure', function (e) {
      state.failure = JSON.parse(e.data);
      var w = document.getElementById('warnings');
      if (w) w.insertAdjacentHTML('afterbegin', '<div class="warn">updates stopped: ' + String(state.failure).replace(/[&<>]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;' }[c]; }) + '</div>');
      es.close();
    });
  }
})();
