// The runs dashboard without a browser: run folders are found by their files, a malformed log line or a
// damaged config becomes a file:line warning (never an exception), a missing folder is a clear error, the
// HTTP views count one plotted point per log line, unknown runs are 404 (no path escapes the folder),
// and the event stream pushes a new view when a line is appended to a run's log.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LmtuneError } from '../util/errors.ts';
import { buildTrainConfig } from '../cli/train.ts';
import { findRuns, readJsonlLenient, readRun } from './runs.ts';
import { serveRuns } from './server.ts';
import type { View } from './views.ts';

const tmp = mkdtempSync(join(tmpdir(), 'lmtune-runs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function run(dir: string, steps: number, over: Record<string, string> = {}): void {
  mkdirSync(dir, { recursive: true });
  const cfg = buildTrainConfig({ model: '/m', task: 'sst2', data: '/d.jsonl', maxSteps: String(steps), evalEvery: '5', ...over });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  writeFileSync(join(dir, 'log.jsonl'), Array.from({ length: steps }, (_, i) => JSON.stringify({ step: i + 1, loss: 1 / (i + 1), lr: 0.1 })).join('\n') + '\n');
  mkdirSync(join(dir, 'checkpoint'));
}

test('readJsonlLenient: malformed lines are warnings naming file:line; an unfinished last line waits', () => {
  const p = join(tmp, 'log.jsonl');
  writeFileSync(p, '{"step":1,"loss":2}\n{"step":2,"loss":\n[1,2]\n\n{"loss":3}\n{"step":5,"loss":1}\n{"step":6');
  const r = readJsonlLenient(p);
  assert.deepEqual(r.records.map((x) => x.step), [1, 5]);
  assert.equal(r.warnings.length, 3);
  assert.match(r.warnings[0]!, new RegExp(`^${p}:2: malformed line skipped`));
  assert.match(r.warnings[1]!, /:3: malformed line skipped \(not a JSON object\)/);
  assert.match(r.warnings[2]!, /:5: malformed line skipped \(no numeric "step"\)/);
  assert.deepEqual(readJsonlLenient(join(tmp, 'absent.jsonl')), { records: [], warnings: [] });
});

test('findRuns: nested run folders by their files, not their insides; a missing folder is a clear error', () => {
  const root = join(tmp, 'find');
  run(join(root, 'a'), 3);
  run(join(root, 'svag', 'l2'), 3, { optimizer: 'sgd', svag: '2' });
  mkdirSync(join(root, 'a', 'nested-in-run'), { recursive: true });
  mkdirSync(join(root, 'empty'));
  assert.deepEqual(findRuns(root), ['a', 'svag/l2']);
  assert.deepEqual(findRuns(join(root, 'a')), ['.']);
  assert.deepEqual(findRuns(join(root, 'empty')), []);
  assert.throws(() => findRuns(join(root, 'nope')), (e: unknown) => e instanceof LmtuneError && e.code === 'IO' && e.message.includes('--runs') && e.message.includes('no such folder'));
  assert.equal(readRun(root, 'svag/l2').kind, 'svag');
  // a damaged config.json: the run is still listed, with the validator's message as a warning
  writeFileSync(join(root, 'a', 'config.json'), '{"version": 1, "maxSteps": -1}');
  const a = readRun(root, 'a');
  assert.equal(a.config, null);
  assert.equal(a.log.length, 3);
  assert.match(a.warnings[0]!, /config\.json: "maxSteps" is -1/);
});

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    request(url, (res) => {
      let body = '';
      res.on('data', (b: Buffer) => (body += b.toString()));
      res.on('end', () => ok({ status: res.statusCode ?? 0, body }));
    })
      .on('error', fail)
      .end();
  });
}

test('the server: list, run and overlay views, 404 for unknown runs, and live events as a log grows', async () => {
  const root = join(tmp, 'serve');
  run(join(root, 'one'), 7);
  run(join(root, 'two'), 4, { optimizer: 'mezo', peft: 'lora' });
  appendFileSync(join(root, 'two', 'log.jsonl'), 'not json\n');
  const d = await serveRuns({ runs: root, port: 0, pollMs: 50 });
  try {
    assert.match(d.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(d.runCount, 2);
    const list = await get(d.url);
    assert.equal(list.status, 200);
    assert.ok(list.body.includes('data-run=\\"one\\"') && list.body.includes('data-run=\\"two\\"'), 'the embedded view lists both runs');
    assert.ok(!/src="http|href="http/.test(list.body), 'no external resources');
    const view = JSON.parse((await get(`${d.url}api/view?page=${encodeURIComponent('/run?id=two')}`)).body) as View;
    const loss = view.charts.find((c) => c.id === 'chart-loss')!;
    assert.equal(loss.series[0]!.x.length, 4, 'one point per valid log line');
    assert.match(view.fragments.warnings!, /two\/log\.jsonl:5: malformed line skipped/);
    assert.match(view.fragments.about!, /MeZO \(ZO-SGD\) · LoRA r=8 α=16/);
    const ov = JSON.parse((await get(`${d.url}api/view?page=${encodeURIComponent('/overlay?run=one&run=two&axis=samples&window=1')}`)).body) as View;
    // samples = step × batch size (8)
    assert.deepEqual(ov.charts[0]!.series[0]!.x, [8, 16, 24, 32, 40, 48, 56]);
    ov.charts[0]!.series[0]!.y.forEach((v, i) => assert.ok(Math.abs(v! - 1 / (i + 1)) < 1e-12, `loss at step ${i + 1}: ${v}`));
    for (const bad of ['run?id=..%2F..', 'run?id=three', 'report?id=%2Fetc', 'overlay?run=one&run=..', 'static/..%2F..%2Fpackage.json', 'nothing']) {
      assert.equal((await get(`${d.url}${bad}`)).status, 404, bad);
    }
    assert.equal((await get(`${d.url}static/uPlot.iife.min.js`)).status, 200);

    // events: the first view at once, another when the log grows (one more point)
    const points: number[] = [];
    await new Promise<void>((ok, fail) => {
      const req = request(`${d.url}events?view=run&id=one`, (res) => {
        let buf = '';
        res.on('data', (b: Buffer) => {
          buf += b.toString();
          let k;
          while ((k = buf.indexOf('\n\n')) >= 0) {
            const msg = buf.slice(0, k);
            buf = buf.slice(k + 2);
            const data = /^data: (.*)$/m.exec(msg);
            if (!data) continue;
            points.push((JSON.parse(data[1]!) as View).charts[0]!.series[0]!.x.length);
            if (points.length === 1) appendFileSync(join(root, 'one', 'log.jsonl'), JSON.stringify({ step: 8, loss: 0.1, lr: 0.1 }) + '\n');
            else {
              req.destroy();
              ok();
            }
          }
        });
      });
      req.on('error', (e) => (points.length >= 2 ? ok() : fail(e)));
      req.end();
    });
    assert.deepEqual(points, [7, 8]);
  } finally {
    await d.close();
  }
});
