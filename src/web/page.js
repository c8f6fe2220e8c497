/* global document, window, Worker, URL, Blob, uPlot, location */
// Runs in the page, not in Node: sends requests to the worker (src/web/worker.ts, protocol.ts) and draws
// its replies. No work happens here, so the page stays responsive while the worker trains.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  // what the end-to-end test reads (src/web/page.test.ts)
  var state = { ready: false, busy: '', model: null, data: {}, steps: [], evals: [], errors: [], trained: null, files: null, wasmBytes: 0, memoryMb: 0 };
  window.lmtuneTune = state;

  var worker = new Worker('worker.js' + location.search, { type: 'module' });
  var send = function (m, transfer) { worker.postMessage(m, transfer || []); };

  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]; }); }
  function num(id) { return Number($(id).value); }
  function showError(during, message, hint) {
    state.errors.push({ during: during, message: message, hint: hint || '' });
    var div = document.createElement('div');
    div.className = 'error';
    div.textContent = (during ? during + ': ' : '') + message + (hint ? '\n→ ' + hint : '');
    $('messages').appendChild(div);
  }
  function clearErrors() { $('messages').innerHTML = ''; }

  // --- charts (uPlot, served by this app) ---
  function chart(el, title, series, scales) {
    return new uPlot({ title: title, width: 520, height: 240, scales: scales || { x: { time: false } }, series: series, axes: [{ label: 'step' }, { label: series[1].label }].concat(series.length > 2 ? [{ scale: series[2].scale, side: 1, label: series[2].label, grid: { show: false } }] : []) }, [[], []].concat(series.length > 2 ? [[]] : []), el);
  }
  var lossPlot = chart($('loss-chart'), 'training loss (at θ + εz)', [{}, { label: 'loss', stroke: '#1f77b4' }]);
  var devPlot = chart($('dev-chart'), 'dev', [{}, { label: 'accuracy', stroke: '#2ca02c', scale: 'acc' }, { label: 'dev loss', stroke: '#d62728', scale: 'loss' }], { x: { time: false }, acc: { range: [0, 1] }, loss: {} });
  var drawPending = false;
  function redraw() {
    if (drawPending) return;
    drawPending = true;
    window.requestAnimationFrame(function () {
      drawPending = false;
      lossPlot.setData([state.steps.map(function (s) { return s.step; }), state.steps.map(function (s) { return s.loss; })]);
      devPlot.setData([state.evals.map(function (e) { return e.step; }), state.evals.map(function (e) { return e.accuracy; }), state.evals.map(function (e) { return e.devLoss; })]);
      $('loss-chart').setAttribute('data-points', String(state.steps.length));
      $('dev-chart').setAttribute('data-points', String(state.evals.length));
    });
  }

  // --- buttons follow what the worker is doing ---
  var running = false;
  function refresh() {
    var idle = state.ready && !state.busy;
    ['load-embedded', 'load-demo-data', 'model-folder', 'train-file', 'dev-file'].forEach(function (id) { $(id).disabled = !idle; });
    $('evaluate').disabled = !(idle && state.model && state.data.dev);
    $('train').disabled = !(idle && state.model && state.data.train && state.data.dev);
    $('pause').disabled = !running || state.paused;
    $('resume').disabled = !running || !state.paused;
    $('stop').disabled = !running;
    $('download').disabled = !(idle && state.trained);
  }

  function showEval(e) {
    state.evals.push(e);
    var text = 'step ' + e.step + ': ' + (e.shots ? e.shots + '-shot ' : e.step === 0 ? 'zero-shot ' : '') + 'accuracy ' + (100 * e.accuracy).toFixed(1) + '% on ' + e.n + ' dev examples, dev loss ' + e.devLoss.toFixed(4);
    $('eval-result').textContent = text;
    $('eval-result').className = '';
    $('stat-acc').textContent = 'dev accuracy ' + (100 * e.accuracy).toFixed(1) + '%';
    $('examples').innerHTML = '<tr><th>text</th><th>gold</th><th>predicted</th><th>scores (mean log-prob of the label word)</th></tr>' +
      e.examples.map(function (x) {
        return '<tr><td>' + esc(x.text) + '</td><td>' + esc(x.gold) + '</td><td class="' + (x.right ? 'ok' : 'bad') + '">' + esc(x.predicted) + '</td><td>' +
          x.scores.map(function (s) { return esc(s.label) + ' ' + s.score.toFixed(3); }).join(', ') + '</td></tr>';
      }).join('');
    redraw();
  }

  worker.onmessage = function (ev) {
    var m = ev.data;
    switch (m.type) {
      case 'ready':
        state.ready = true;
        $('runtime').textContent = 'onnxruntime-web (wasm) in a worker, ' + m.threads + ' thread' + (m.threads === 1 ? '' : 's') + (m.isolated ? ', cross-origin isolated' : ' — not cross-origin isolated: serve with COOP/COEP headers for threads');
        break;
      case 'busy':
        state.busy = m.what;
        if (m.what === '') running = false;
        break;
      case 'model':
        state.model = m.info;
        $('model-info').textContent = m.info.label + ': ' + m.info.family + ', ' + m.info.params.toLocaleString() + ' parameters (' + m.info.files.length + ' files)';
        $('model-info').className = 'ok';
        showMemory();
        break;
      case 'data':
        state.data[m.which] = { name: m.name, n: m.n };
        $('data-info').textContent = ['train', 'dev'].filter(function (w) { return state.data[w]; }).map(function (w) { return w + ': ' + state.data[w].n + ' examples (' + state.data[w].name + ')'; }).join('; ');
        $('data-info').className = 'ok';
        break;
      case 'eval':
        showEval(m.eval);
        break;
      case 'step':
        state.steps.push(m.event);
        $('stat-step').textContent = 'step ' + m.event.step + '/' + m.event.steps;
        $('stat-loss').textContent = 'loss ' + m.event.loss.toFixed(4);
        $('stat-speed').textContent = m.event.stepsPerSecond.toFixed(2) + ' steps/s';
        redraw();
        break;
      case 'memory':
        state.wasmBytes = m.wasmBytes;
        showMemory();
        break;
      case 'paused':
        state.paused = m.paused;
        break;
      case 'trained':
        state.trained = { steps: m.steps, stopped: m.stopped };
        running = false;
        break;
      case 'files':
        state.files = Object.keys(m.files);
        $('downloads').innerHTML = '';
        Object.keys(m.files).forEach(function (name) {
          var a = document.createElement('a');
          a.href = URL.createObjectURL(new Blob([m.files[name]]));
          a.download = name;
          a.id = 'dl-' + name.replace(/[^a-z0-9]/gi, '-');
          a.textContent = name + ' (' + m.files[name].byteLength.toLocaleString() + ' bytes)';
          $('downloads').appendChild(a);
        });
        break;
      case 'error':
        running = false;
        showError(m.during, m.message, m.hint);
        break;
    }
    refresh();
  };
  worker.onerror = function (e) {
    e.preventDefault();
    showError('worker', e.message || 'the worker failed to start', 'reload the page; serve it with `lmtune serve` or the files of `npm run build:web`');
  };

  // --- memory: the model's weights (held by the worker's JS) plus the wasm heap (onnxruntime's working
  // memory, which only grows, so it is also the peak) ---
  function showMemory() {
    var w = state.model ? state.model.weightBytes : 0;
    state.memoryMb = (w + state.wasmBytes) / 1048576;
    $('stat-mem').textContent = 'memory ' + state.memoryMb.toFixed(0) + ' MB (weights ' + (w / 1048576).toFixed(1) + ' MB + wasm heap ' + (state.wasmBytes / 1048576).toFixed(0) + ' MB)';
  }

  // --- actions ---
  $('load-embedded').onclick = function () { clearErrors(); send({ type: 'load-embedded-model' }); };
  $('load-demo-data').onclick = function () { clearErrors(); send({ type: 'load-embedded-data' }); };
  $('model-folder').onchange = function () {
    clearErrors();
    var list = Array.prototype.slice.call(this.files || []);
    if (!list.length) return;
    var top = (list[0].webkitRelativePath || list[0].name).split('/')[0];
    // the folder's own files (sharded weights sit next to config.json); no sub-folders, no .bin/.git
    var wanted = list.filter(function (f) {
      var parts = (f.webkitRelativePath || f.name).split('/');
      return parts.length <= 2 && /\.(json|txt|model|safetensors)$/.test(f.name);
    });
    if (!wanted.length) { showError('load-model', top + ': none of its ' + list.length + ' files is config.json, a tokenizer file or *.safetensors', 'pick a Hugging Face model folder'); return; }
    Promise.all(wanted.map(function (f) { return f.arrayBuffer().then(function (b) { return [f.name, b]; }); })).then(function (pairs) {
      var files = {};
      pairs.forEach(function (p) { files[p[0]] = p[1]; });
      send({ type: 'load-model', label: top, files: files }, pairs.map(function (p) { return p[1]; }));
    }, function (e) { showError('load-model', top + ': cannot read the files (' + e.message + ')'); });
  };
  ['train', 'dev'].forEach(function (which) {
    $(which + '-file').onchange = function () {
      clearErrors();
      var f = this.files && this.files[0];
      if (!f) return;
      f.text().then(function (text) { send({ type: 'load-data', which: which, name: f.name, text: text }); }, function (e) { showError('load-data', f.name + ': cannot read the file (' + e.message + ')'); });
    };
  });
  $('evaluate').onclick = function () { clearErrors(); send({ type: 'evaluate', limit: num('dev-limit'), shots: num('shots') }); };
  $('train').onclick = function () {
    clearErrors();
    var s = { steps: num('steps'), batchSize: num('batch'), lr: num('lr'), eps: num('eps'), seed: num('seed'), loraRank: num('rank'), loraAlpha: 2 * num('rank'), evalEvery: num('eval-every'), schedule: 'linear' };
    var bad = Object.keys(s).filter(function (k) { return k !== 'schedule' && !(Number.isFinite(s[k]) && s[k] >= 0); });
    if (bad.length || s.steps < 1 || s.batchSize < 1 || s.eps <= 0 || s.loraRank < 1) { showError('fine-tune', 'invalid settings: ' + (bad.join(', ') || 'steps, batch, ε and LoRA r must be positive')); return; }
    state.steps = [];
    // the curve starts from the last zero-shot evaluation (k-shot ones are another measure)
    state.evals = state.evals.filter(function (e) { return e.step === 0 && !e.shots; }).slice(-1);
    state.trained = null;
    state.paused = false;
    running = true;
    $('downloads').innerHTML = '';
    send({ type: 'train', settings: s, devLimit: num('dev-limit') });
    refresh();
  };
  $('pause').onclick = function () { send({ type: 'pause' }); };
  $('resume').onclick = function () { send({ type: 'resume' }); };
  $('stop').onclick = function () { send({ type: 'stop' }); };
  $('download').onclick = function () { send({ type: 'download' }); };
  refresh();
})();
