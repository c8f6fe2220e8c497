/** Every VJP rule against central finite differences in float64 on the ref executor (rel. error < 1e-6). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, evaluateRef, grad } from './index.ts';
import { CASES, initFeeds, projectedLoss } from './cases.test-util.ts';

for (const c of CASES) {
  test(`vjp matches finite differences: ${c.name}`, () => {
    const g = new Graph(c.name);
    const { out, params } = c.build(g);
    const loss = projectedLoss(g, out);
    const grads = grad(loss, params);
    const feeds = initFeeds(c, params);
    const outs: Record<string, (typeof grads)[number]> = { loss };
    grads.forEach((gr, i) => (outs[`g${i}`] = gr));
    const res = evaluateRef(outs, feeds);
    const h = 1e-5;
    params.forEach((p, pi) => {
      const base = Float64Array.from(feeds[p.name] as Float64Array);
      const analytic = res[`g${pi}`]!.data;
      assert.equal(analytic.length, base.length);
      let maxErr = 0;
      let maxRef = 0;
      for (let i = 0; i < base.length; i++) {
        const plus = Float64Array.from(base);
        plus[i]! += h;
        const minus = Float64Array.from(base);
        minus[i]! -= h;
        const lp = evaluateRef({ loss }, { ...feeds, [p.name]: plus }).loss!.data[0]!;
        const lm = evaluateRef({ loss }, { ...feeds, [p.name]: minus }).loss!.data[0]!;
        const fd = (lp - lm) / (2 * h);
        maxErr = Math.max(maxErr, Math.abs(fd - analytic[i]!));
        maxRef = Math.max(maxRef, Math.abs(fd));
      }
      assert.ok(maxRef > 0, `${c.name}/${p.name}: gradient is identically zero, the check would be vacuous`);
      const rel = maxErr / maxRef;
      assert.ok(rel < 1e-6, `${c.name}/${p.name}: max |fd − vjp| / max |fd| = ${rel.toExponential(2)}`);
    });
  });
}
