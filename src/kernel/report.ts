/**
 * The kernel report: the training kernel as a heat map with examples grouped by label, its spectrum, and
 * (for `kernel run`) the kernel-vs-fine-tuning table. One self-contained HTML file (src/report/plot.ts).
 */
import { escapeXml, htmlReport, linePlot, type ReportSection } from '../report/plot.ts';
import { symmetricEigenvalues } from './linalg.ts';
import type { RunSummary } from './run.ts';

/**
 * The per-example kernel Σ_c K[(i,c),(j,c)] as cosines K_ij / √(K_ii K_jj) in [−1, 1], rows and columns
 * ordered by label (stable within a label), drawn blue (−1) → white (0) → red (+1).
 */
export function kernelHeatmap(K: Float64Array, n: number, C: number, labels: Int32Array, title: string): string {
  const k = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let c = 0; c < C; c++) k[i * n + j] = k[i * n + j]! + K[(i * C + c) * n * C + j * C + c]!;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => labels[a]! - labels[b]! || a - b);
  const cell = Math.max(2, Math.min(12, Math.floor(480 / n)));
  const pad = 40;
  const size = cell * n;
  const color = (v: number): string => {
    const t = Math.max(-1, Math.min(1, v));
    const s = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? `rgb(255,${s},${s})` : `rgb(${s},${s},255)`;
  };
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${size + pad + 10}" height="${size + pad + 24}" font-family="sans-serif" font-size="11">`];
  parts.push(`<text x="${pad}" y="14">${escapeXml(title)}</text>`);
  order.forEach((i, r) => {
    order.forEach((j, c) => {
      const d = Math.sqrt(Math.abs(k[i * n + i]! * k[j * n + j]!));
      const v = d > 0 ? k[i * n + j]! / d : 0;
      parts.push(`<rect x="${pad + c * cell}" y="${24 + r * cell}" width="${cell}" height="${cell}" fill="${color(v)}"/>`);
    });
  });
  // label group boundaries
  let start = 0;
  for (let r = 1; r <= n; r++) {
    if (r === n || labels[order[r]!] !== labels[order[start]!]) {
      const y = 24 + start * cell;
      parts.push(`<text x="2" y="${y + ((r - start) * cell) / 2 + 4}">${labels[order[start]!]}</text>`);
      if (r < n) {
        parts.push(`<line x1="${pad}" x2="${pad + size}" y1="${24 + r * cell}" y2="${24 + r * cell}" stroke="#000"/>`);
        parts.push(`<line y1="24" y2="${24 + size}" x1="${pad + r * cell}" x2="${pad + r * cell}" stroke="#000"/>`);
      }
      start = r;
    }
  }
  parts.push('</svg>');
  return parts.join('');
}

/** eigenvalues of the symmetric part (K + Kᵀ)/2, descending, on a log axis (non-positive ones left out) */
export function spectrumPlot(K: Float64Array, m: number, title: string): string {
  const s = new Float64Array(m * m);
  for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) s[i * m + j] = (K[i * m + j]! + K[j * m + i]!) / 2;
  const ev = [...symmetricEigenvalues(s, m)].reverse();
  const pos = ev.filter((v) => v > ev[0]! * 1e-12);
  return linePlot({ series: [{ name: 'eigenvalue', x: pos.map((_, i) => i + 1), y: pos }], title, xLabel: 'index', yLabel: 'eigenvalue', logY: true, legend: 'none' });
}

export function kernelReport(title: string, kernels: { name: string; K: Float64Array; n: number; C: number; labels: Int32Array }[], run?: RunSummary): string {
  const sections: ReportSection[] = [];
  if (run) {
    const pct = (v: number | null, sd: number | null) => (v === null ? '-' : `${(100 * v).toFixed(1)} (${(100 * (sd ?? 0)).toFixed(1)})`);
    sections.push({
      heading: 'Kernel vs fine-tuning',
      paragraphs: [`${run.task}, k = ${run.k} per class, seeds ${run.seeds.join(', ')}, ${run.testSize} test examples: test accuracy, mean (population std) over seeds; zero-shot ${(100 * run.zeroShotTest).toFixed(1)}.`],
      table: { columns: ['kernel', 'kernel accuracy', 'fine-tuning', 'fine-tuning accuracy'], rows: run.table.map((r) => [r.formula, pct(r.kernelMean, r.kernelStd), r.ftOptimizer ?? '-', pct(r.ftMean, r.ftStd)]) },
    });
    sections.push({
      heading: 'Per seed',
      table: {
        columns: ['seed', 'kernel', 'solver setting', 'kernel dev', 'kernel test', 'fine-tuning lr', 'ft dev', 'ft test'],
        rows: run.rows.map((r) => [r.seed, r.formula, JSON.stringify(r.kernel.best, (_k, v: unknown) => (v === Infinity ? 'inf' : v)), r.kernel.dev, r.kernel.test, r.ft ? `${r.ft.optimizer} ${r.ft.lr}` : '-', r.ft?.dev ?? '-', r.ft?.test ?? '-']),
      },
    });
  }
  for (const k of kernels) {
    sections.push({
      heading: `Kernel ${k.name}`,
      paragraphs: ['Left: per-example kernel (summed over label words) as cosines, examples grouped by label. Right: spectrum of the [N·C, N·C] kernel.'],
      svgs: [kernelHeatmap(k.K, k.n, k.C, k.labels, `${k.name}: cosine K(x_i, x_j)`), spectrumPlot(k.K, k.n * k.C, `${k.name}: spectrum`)],
    });
  }
  return htmlReport(title, sections);
}
