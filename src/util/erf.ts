/**
 * erf to ~1e-15 relative accuracy, for the float64 reference executor's GELU and TinT's float64 oracle:
 * erf(x) = 2x/√π · e^{-x²} · Σ_n (2x²)^n / (1·3·…·(2n+1)). Every term is positive, so unlike the
 * alternating Maclaurin series there is no cancellation; beyond |x| = 6, erf is ±1 in float64.
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  const x2 = 2 * ax * ax;
  let term = 1;
  let sum = 1;
  for (let n = 1; n < 400; n++) {
    term *= x2 / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  const v = ((2 * ax) / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
  return Math.sign(x) * Math.min(1, v);
}
