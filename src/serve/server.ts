/**
 * `lmtune serve --runs DIR`: a local web dashboard over run folders, next to the fine-tuning page under
 * /tune/ (web-app.ts; without --runs only the page). Plain node:http on 127.0.0.1; every
 * script and stylesheet is served from this package (uPlot from node_modules), so it works offline.
 * Live updates are server-sent events: each open page's view is recomputed when a file of a run it
 * shows changes (polled by size and mtime, which works on every filesystem, unlike fs.watch).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { escapeXml } from '../report/plot.ts';
import { chartAssets, PAGE_CSS, scriptJson } from '../report/chart.ts';
import { findRuns, readRun, runSignature, type RunData } from './runs.ts';
import { AXES, axisLinks, listView, overlayView, runView, type View } from './views.ts';
import type { OverlayAxis } from '../report/overlay.ts';
import { WEB_PREFIX, webApp } from './web-app.ts';

export interface ServeOptions {
  /** folder holding the runs; without it only the fine-tuning page (/tune/) is served */
  runs?: string;
  /** 0: any free port */
  port?: number;
  host?: string;
  /** how often open pages' runs are checked for changes */
  pollMs?: number;
}

export interface Dashboard {
  url: string;
  /** the fine-tuning page */
  tuneUrl: string;
  /** runs found at start (the page picks up later ones) */
  runCount: number;
  close(): Promise<void>;
}

const DASHBOARD_CSS =
  'table.runs{font-size:13px}table.runs td,table.runs th{vertical-align:top;text-align:left}.status{white-space:nowrap}.warnmark{color:#c60}nav{margin-bottom:12px}nav a{margin-right:12px}' +
  '#charts .chart{border:1px solid #eee;padding:4px}';

let dashboardJs: string | null = null;

function staticFile(name: string): { type: string; body: string } | null {
  const a = chartAssets();
  if (name === 'uPlot.iife.min.js') return { type: 'text/javascript', body: a.uplotJs };
  if (name === 'uPlot.min.css') return { type: 'text/css', body: a.uplotCss };
  if (name === 'chart-client.js') return { type: 'text/javascript', body: a.clientJs };
  if (name === 'dashboard.js') {
    dashboardJs ??= readFileSync(new URL('./dashboard.js', import.meta.url), 'utf8');
    return { type: 'text/javascript', body: dashboardJs };
  }
  return null;
}

/** a page: the shell, its first view, and where its updates come from */
function page(title: string, body: string, view: View | null, events: string | null): string {
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<title>${escapeXml(title)}</title>`,
    '<link rel="stylesheet" href="/static/uPlot.min.css">',
    `<style>${PAGE_CSS}${DASHBOARD_CSS}</style>`,
    '</head>',
    '<body>',
    '<nav><a href="/">all runs</a><a href="/tune/">fine-tune in the page</a></nav>',
    body,
    '<script src="/static/uPlot.iife.min.js"></script>',
    '<script src="/static/chart-client.js"></script>',
    `<script type="application/json" id="lmtune-view">${scriptJson({ view, events })}</script>`,
    '<script src="/static/dashboard.js"></script>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': `${type}; charset=utf-8`, 'cache-control': 'no-store' });
  res.end(body);
}

function notFound(res: ServerResponse, message: string): void {
  send(res, 404, 'text/html', page('lmtune: not found', `<h1>Not found</h1><p class="warn">${escapeXml(message)}</p>`, null, null));
}

export async function serveRuns(o: ServeOptions): Promise<Dashboard> {
  const dashboard = o.runs !== undefined;
  const root = resolve(o.runs ?? '.');
  const initial = dashboard ? findRuns(root) : []; // throws for a missing folder
  const app = webApp();
  const pollMs = o.pollMs ?? 1000;
  const host = o.host ?? '127.0.0.1';
  const timers = new Set<NodeJS.Timeout>();

  const known = (id: string | null): id is string => id !== null && findRuns(root).includes(id);
  const readAll = (): RunData[] => findRuns(root).map((id) => readRun(root, id));

  /** a view, and the fingerprint of the files it was computed from */
  type Resolved = { title: string; body: string; compute: () => View; signature: () => string } | { error: string };

  const resolveView = (url: URL): Resolved => {
    const path = url.pathname;
    if (path === '/' || (path === '/events' && url.searchParams.get('view') === 'list')) {
      return {
        title: `lmtune runs: ${root}`,
        body:
          `<h1>Runs under ${escapeXml(root)}</h1>` +
          '<form method="get" action="/overlay"><p>Select runs and <button type="submit">overlay</button> them in ' +
          '<select name="axis">' + AXES.map((a) => `<option value="${a}">${a === 'sde' ? 'SDE time' : a}</option>`).join('') + '</select>' +
          ' (moving average of <input name="window" value="10" size="3"> steps).</p><div id="runs"></div></form>',
        compute: () => listView(root, readAll()),
        signature: () => findRuns(root).map((id) => `${id}=${runSignature(root, id)}`).join(';'),
      };
    }
    if (path === '/run' || (path === '/events' && url.searchParams.get('view') === 'run')) {
      const id = url.searchParams.get('id');
      if (!known(id)) return { error: `no run ${JSON.stringify(id)} under ${root}` };
      return {
        title: `lmtune run ${id}`,
        body:
          `<h1>Run ${escapeXml(id)}</h1><p id="status"></p><div id="warnings"></div>` +
          '<h2>Results</h2><div id="results"></div><h2>Curves</h2><div class="charts" id="charts"></div>' +
          '<h2>The run</h2><div id="about"></div><p id="report"></p>',
        compute: () => runView(readRun(root, id)),
        signature: () => runSignature(root, id),
      };
    }
    if (path === '/overlay' || (path === '/events' && url.searchParams.get('view') === 'overlay')) {
      const ids = url.searchParams.getAll('run');
      if (!ids.length) return { error: 'no runs selected: tick the runs to overlay on the runs page' };
      const all = findRuns(root);
      const unknown = ids.filter((id) => !all.includes(id));
      if (unknown.length) return { error: `no run ${unknown.map((u) => JSON.stringify(u)).join(', ')} under ${root}` };
      const axisParam = url.searchParams.get('axis') ?? 'sde';
      const axis: OverlayAxis = (AXES as string[]).includes(axisParam) ? (axisParam as OverlayAxis) : 'step';
      const w = Number(url.searchParams.get('window') ?? '10');
      const window = Number.isInteger(w) && w >= 1 && w <= 100000 ? w : 10;
      return {
        title: `lmtune overlay of ${ids.length} runs`,
        body: `<h1>Overlay of ${ids.length} runs</h1><p>x axis: ${axisLinks(ids, axis, window)}</p><p id="runs"></p><div id="warnings"></div><div class="charts" id="charts"></div>`,
        compute: () => overlayView(ids.map((id) => readRun(root, id)), axis, window),
        signature: () => ids.map((id) => runSignature(root, id)).join(';'),
      };
    }
    return { error: `no page ${path}` };
  };

  const events = (req: IncomingMessage, res: ServerResponse, v: Exclude<Resolved, { error: string }>): void => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    let last = '';
    let beat = 0;
    const tick = (): void => {
      try {
        const sig = v.signature();
        if (sig !== last) {
          last = sig;
          res.write(`event: view\ndata: ${JSON.stringify(v.compute())}\n\n`);
        } else if (++beat * pollMs >= 15000) {
          beat = 0;
          res.write(': keep-alive\n\n');
        }
      } catch (e) {
        // a run folder removed while watched: say so once and stop watching
        res.write(`event: failure\ndata: ${JSON.stringify((e as Error).message)}\n\n`);
        stop();
      }
    };
    const timer = setInterval(tick, pollMs);
    timers.add(timer);
    const stop = (): void => {
      clearInterval(timer);
      timers.delete(timer);
      res.end();
    };
    req.on('close', stop);
    tick();
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'only GET');
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (url.pathname === WEB_PREFIX.slice(0, -1) || url.pathname.startsWith(WEB_PREFIX)) {
      void app
        .handle(url.pathname, res)
        .then((found) => {
          if (!found) notFound(res, `no file ${url.pathname}`);
        })
        .catch((e: unknown) => failed(res, e));
      return;
    }
    if (url.pathname.startsWith('/static/')) {
      const f = staticFile(url.pathname.slice('/static/'.length));
      return f ? send(res, 200, f.type, f.body) : notFound(res, `no file ${url.pathname}`);
    }
    if (!dashboard) {
      if (url.pathname !== '/') return notFound(res, `no page ${url.pathname} (without --runs, lmtune serve serves the fine-tuning page at ${WEB_PREFIX})`);
      res.writeHead(302, { location: WEB_PREFIX }).end();
      return;
    }
    if (url.pathname === '/report') {
      const id = url.searchParams.get('id');
      if (!known(id)) return notFound(res, `no run ${JSON.stringify(id)} under ${root}`);
      try {
        return send(res, 200, 'text/html', readFileSync(join(root, id, 'report.html'), 'utf8'));
      } catch {
        return notFound(res, `${join(root, id)}: no report.html yet (it is written when the run finishes)`);
      }
    }
    if (url.pathname === '/api/view') {
      const target = new URL(url.searchParams.get('page') ?? '/', 'http://localhost');
      const v = resolveView(target);
      return 'error' in v ? send(res, 404, 'application/json', JSON.stringify({ error: v.error })) : send(res, 200, 'application/json', JSON.stringify(v.compute()));
    }
    const v = resolveView(url);
    if ('error' in v) return notFound(res, v.error);
    if (url.pathname === '/events') return events(req, res, v);
    const ev = new URLSearchParams(url.searchParams);
    ev.set('view', url.pathname === '/' ? 'list' : url.pathname.slice(1));
    send(res, 200, 'text/html', page(v.title, v.body, v.compute(), `/events?${ev.toString()}`));
  };

  // a bug or a vanished file must cost one response, not the server
  const failed = (res: ServerResponse, e: unknown): void => {
    const msg = e instanceof LmtuneError ? e.message : `internal error: ${(e as Error).message}`;
    if (!res.headersSent) send(res, 500, 'text/html', page('lmtune: error', `<h1>Error</h1><p class="warn">${escapeXml(msg)}</p>`, null, null));
    else res.end();
  };
  const server: Server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      failed(res, e);
    }
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => fail(new LmtuneError('IO', `cannot listen on ${host}:${o.port ?? 0} (${e.code ?? e.message})`, e.code === 'EADDRINUSE' ? 'choose another --port' : undefined)));
    server.listen(o.port ?? 0, host, () => ok());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port ?? 0;
  return {
    url: `http://${host}:${port}/`,
    tuneUrl: `http://${host}:${port}${WEB_PREFIX}`,
    runCount: initial.length,
    close: () =>
      new Promise<void>((ok) => {
        for (const t of timers) clearInterval(t);
        timers.clear();
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
