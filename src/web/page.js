/* global document, window, Worker, URL, URLSearchParams, Blob, uPlot, location, navigator */
// Runs in the page, not in Node: sends requests to the worker (src/web/worker.ts, protocol.ts) and draws
// its replies. No work happens here, so the page stays responsive while the worker trains.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  // what the end-to-end test reads (src/web/page.test.ts)
  var state = { ready: false, busy: '', model: null, task: 'sst2', tasks: [], data: {}, run: null, steps: [], evals: [], errors: [], trained: null, files: null, wasmBytes: 0, memoryMb: 0 };
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
  var lossPlot = chart($('loss-chart'), 'training loss (MeZO: at θ + εz)', [{}, { label: 'loss', stroke: '#1f77b4' }]);
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
    ['load-embedded', 'load-demo-data', 'model-folder', 'train-file', 'dev-file', 'task', 'method'].forEach(function (id) { $(id).disabled = !idle; });
    $('run-folder').disabled = !(idle && state.model);
    $('evaluate').disabled = !(idle && state.model && state.data.dev);
    $('train').disabled = !(idle && state.model && state.data.train && state.data.dev);
    $('continue').disabled = !(idle && state.model && state.run && state.data.train);
    $('pause').disabled = !running || state.paused;
    $('resume').disabled = !running || !state.paused;
    $('stop').disabled = !running;
    $('download').disabled = !(idle && state.trained);
  }

  function showEval(e) {
    state.evals.push(e);
    var text = 'step ' + e.step + ': ' + (e.shots ? e.shots + '-shot ' : e.step === 0 ? 'zero-shot ' : '') + (e.metric || 'accuracy') + ' ' + (100 * e.accuracy).toFixed(1) + '% on ' + e.n + ' dev examples, dev loss ' + e.devLoss.toFixed(4);
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
        state.tasks = m.tasks;
        $('task').innerHTML = m.tasks.map(function (t) { return '<option value="' + esc(t.name) + '"' + (t.name === state.task ? ' selected' : '') + '>' + esc(t.name) + '</option>'; }).join('');
        showTask(state.task);
        $('runtime').textContent = 'onnxruntime-web (wasm) in a worker, ' + m.threads + ' thread' + (m.threads === 1 ? '' : 's') + (m.isolated ? ', cross-origin isolated' : ' — not cross-origin isolated: serve with COOP/COEP headers for threads');
        break;
      case 'busy':
        state.busy = m.what;
        if (m.what === '') running = false;
        break;
      case 'task':
        if (m.name !== state.task) {
          // the worker dropped the data parsed for the other task
          state.data = {};
          $('data-info').textContent = 'no data loaded';
          $('data-info').className = 'muted';
        }
        state.task = m.name;
        $('task').value = m.name;
        showTask(m.name);
        break;
      case 'model-fits':
        readPicked(m);
        break;
      case 'run':
        state.run = m.info;
        state.trained = null;
        fillSettings(m.info.settings);
        state.steps = m.info.losses.map(function (l) { return { step: l.step, loss: l.loss }; });
        state.evals = m.info.evals.map(function (e) { return { step: e.step, metric: e.metric, accuracy: e.accuracy, devLoss: e.devLoss, n: 0, shots: 0, examples: [] }; });
        $('run-info').textContent = 'run ' + m.info.label + ': ' + m.info.method + ' on ' + m.info.task + ', at step ' + m.info.step + ' of ' + m.info.maxSteps +
          ' (model ' + m.info.model + ', data ' + m.info.data + '). Load its data, then continue.';
        $('run-info').className = 'ok';
        redraw();
        break;
      case 'model':
        state.model = m.info;
        state.run = null;
        $('run-info').textContent = '';
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
        if (state.run) $('run-info').textContent = 'run ' + state.run.label + ': continued from step ' + state.run.step + ' to step ' + (state.run.step + m.steps) + ' of ' + state.run.maxSteps + (m.stopped ? ' (stopped)' : '') + '; download it below';
        state.run = null;
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

  function showTask(name) {
    var t = state.tasks.filter(function (x) { return x.name === name; })[0];
    $('task-info').textContent = t ? t.kind + (t.labels.length ? ', label words: ' + t.labels.join(' / ') : '') + ' (fields as `lmtune train --task ' + name + '` reads them)' : '';
  }
  // the defaults of each method (lr, ε), set when the method changes
  var METHOD_DEFAULTS = { 'mezo-lora': { lr: 0.005, eps: 0.01 }, 'mezo-full': { lr: 0.00001, eps: 0.001 }, 'adam-lora': { lr: 0.001, eps: 0.01 } };
  function fillSettings(s) {
    $('method').value = s.method;
    $('steps').value = s.steps;
    $('batch').value = s.batchSize;
    $('lr').value = s.lr;
    $('eps').value = s.eps;
    $('seed').value = s.seed;
    $('rank').value = s.loraRank;
    $('eval-every').value = s.evalEvery;
    $('schedule').value = s.schedule;
  }

  // --- a model folder picked from disk: its config.json is checked against the tab's memory before any
  // weight is read (a model too big would otherwise take the tab down while its files are read) ---
  var picked = null;
  function budgetBytes() {
    var q = Number(new URLSearchParams(location.search).get('memoryMb'));
    if (q > 0) return q * 1048576;
    // Chrome reports the device's memory (GB, at most 8); a tab gets a part of it
    var dm = navigator.deviceMemory;
    return (dm ? Math.max(2, dm / 2) : 4) * 1073741824;
  }
  function readPicked(fits) {
    if (!picked || picked.top !== fits.label) return;
    var p = picked;
    picked = null;
    Promise.all(p.files.map(function (f) { return f.arrayBuffer().then(function (b) { return [f.name, b]; }); })).then(function (pairs) {
      var files = {};
      pairs.forEach(function (x) { files[x[0]] = x[1]; });
      send({ type: 'load-model', label: p.top, files: files }, pairs.map(function (x) { return x[1]; }));
    }, function (e) { showError('load-model', p.top + ': cannot read the files (' + e.message + ')'); });
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
    picked = { top: top, files: wanted };
    var config = wanted.filter(function (f) { return f.name === 'config.json'; })[0];
    // no config.json: the worker says what is missing
    if (!config) { readPicked({ label: top }); return; }
    config.text().then(function (text) { send({ type: 'check-model', label: top, config: text, budgetBytes: budgetBytes() }); }, function (e) { showError('load-model', top + '/config.json: cannot read it (' + e.message + ')'); });
    this.value = '';
  };
  $('run-folder').onchange = function () {
    clearErrors();
    var list = Array.prototype.slice.call(this.files || []);
    this.value = '';
    if (!list.length) return;
    var top = (list[0].webkitRelativePath || list[0].name).split('/')[0];
    // what continuing needs: the config, the checkpoint, the trajectory and the logs (not best/ or final/)
    var wanted = list.map(function (f) { return [(f.webkitRelativePath || f.name).split('/').slice(1).join('/'), f]; }).filter(function (x) {
      return /^(config\.json|trajectory\.jsonl|log\.jsonl|eval\.jsonl|checkpoint(\.old)?\/(state\.json|trainable\.safetensors|optimizer\.safetensors))$/.test(x[0]);
    });
    Promise.all(wanted.map(function (x) { return x[1].arrayBuffer().then(function (b) { return [x[0], b]; }); })).then(function (pairs) {
      var files = {};
      pairs.forEach(function (x) { files[x[0]] = x[1]; });
      send({ type: 'load-run', label: top, files: files }, pairs.map(function (x) { return x[1]; }));
    }, function (e) { showError('load-run', top + ': cannot read the files (' + e.message + ')'); });
  };
  $('task').onchange = function () { clearErrors(); send({ type: 'set-task', name: this.value }); };
  $('method').onchange = function () {
    var d = METHOD_DEFAULTS[this.value];
    $('lr').value = d.lr;
    $('eps').value = d.eps;
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
    var s = { method: $('method').value, steps: num('steps'), batchSize: num('batch'), lr: num('lr'), eps: num('eps'), seed: num('seed'), loraRank: num('rank'), loraAlpha: 2 * num('rank'), evalEvery: num('eval-every'), schedule: $('schedule').value };
    var bad = Object.keys(s).filter(function (k) { return k !== 'schedule' && k !== 'method' && !(Number.isFinite(s[k]) && s[k] >= 0); });
    if (bad.length || s.steps < 1 || s.batchSize < 1 || s.eps <= 0 || s.loraRank < 1) { showError('fine-tune', 'invalid settings: ' + (bad.join(', ') || 'steps, batch, ε and LoRA r must be positive')); return; }
    state.steps = [];
    // the curve starts from the last zero-shot evaluation (k-shot ones are another measure)
    state.evals = state.evals.filter(function (e) { return e.step === 0 && !e.shots; }).slice(-1);
    state.trained = null;
    state.paused = false;
    running = true;
    $('downloads').innerHTML = '';
    state.run = null;
    $('run-info').textContent = '';
    send({ type: 'train', settings: s, devLimit: num('dev-limit') });
    refresh();
  };
  $('continue').onclick = function () {
    clearErrors();
    state.trained = null;
    state.paused = false;
    running = true;
    $('downloads').innerHTML = '';
    send({ type: 'continue' });
    refresh();
  };
  $('pause').onclick = function () { send({ type: 'pause' }); };
  $('resume').onclick = function () { send({ type: 'resume' }); };
  $('stop').onclick = function () { send({ type: 'stop' }); };
  $('download').onclick = function () { send({ type: 'download' }); };
  refresh();
})();
