/** JSON as lmtune writes it. */

/** Stable JSON: keys sorted, so files written twice from the same state are byte-identical. */
export function stableStringify(v: unknown, indent = 2): string {
  return JSON.stringify(sortKeys(v), null, indent) + '\n';
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object' && !(ArrayBuffer.isView(v))) {
    const o: Record<string, unknown> = {};
    for (const k of Object.keys(v as Record<string, unknown>).sort()) o[k] = sortKeys((v as Record<string, unknown>)[k]);
    return o;
  }
  return v;
}
