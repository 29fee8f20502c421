/**
 * Agreement between two raters of the same essays (the grader's original total and the teacher's),
 * on one scale: a rubric's total or one of its dimensions (SPEC §9).
 *
 * The input is a contingency table (how many essays the grader scored `a` and the teacher `b`),
 * which the database builds with one GROUP BY however many labels there are.
 */

/** A score scale: scores are multiples of `step` from 0 to `max`. */
export interface Scale {
  step: number;
  max: number;
}

/** One cell of the contingency table. */
export interface Cell {
  /** the grader's score */
  a: number;
  /** the teacher's score */
  b: number;
  n: number;
}

export interface Agreement {
  n: number;
  /** quadratic weighted kappa on the scale's steps; null when it is undefined (both raters constant) or says nothing (one essay) */
  qwk: number | null;
  /** share of essays where both gave the same score */
  exact: number | null;
  /** share within one step, or 10% of the maximum, whichever is larger */
  adjacent: number | null;
  /** mean of grader − teacher, in points (positive: the grader is more generous) */
  bias: number | null;
}

const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

/** How far apart two scores may be and still count as adjacent. */
export function adjacentTolerance(scale: Scale): number {
  return Math.max(scale.step, scale.max * 0.1);
}

/**
 * Cohen's kappa with quadratic weights w(i,j) = (i − j)² over the scale's step indices:
 * κ = 1 − Σ w·O / Σ w·E, with O the observed counts and E = rowTotal × columnTotal / n.
 * Because the weights are quadratic, Σ w·E has a closed form in the raters' sums, so the
 * whole table is read once: Σ w·E = Σa² + Σb² − 2·Σa·Σb / n (in step units).
 */
export function quadraticWeightedKappa(cells: Cell[], scale: Scale): number | null {
  let n = 0;
  let sa = 0;
  let sb = 0;
  let saa = 0;
  let sbb = 0;
  let observed = 0;
  for (const c of cells) {
    if (c.n <= 0) continue;
    const i = Math.round(c.a / scale.step);
    const j = Math.round(c.b / scale.step);
    n += c.n;
    sa += i * c.n;
    sb += j * c.n;
    saa += i * i * c.n;
    sbb += j * j * c.n;
    observed += (i - j) ** 2 * c.n;
  }
  // One essay tells no agreement beyond chance (its κ is 0 or undefined whatever the scores): none is given.
  if (n < 2) return null;
  const expected = saa + sbb - (2 * sa * sb) / n;
  if (expected <= 1e-12) return null;
  return 1 - observed / expected;
}

export function agreement(cells: Cell[], scale: Scale): Agreement {
  const n = cells.reduce((s, c) => s + c.n, 0);
  if (n === 0) return { n: 0, qwk: null, exact: null, adjacent: null, bias: null };
  const tolerance = adjacentTolerance(scale) + 1e-9;
  let exact = 0;
  let adjacent = 0;
  let diff = 0;
  for (const c of cells) {
    const d = c.a - c.b;
    if (Math.abs(d) < scale.step / 2) exact += c.n;
    if (Math.abs(d) <= tolerance) adjacent += c.n;
    diff += d * c.n;
  }
  const qwk = quadraticWeightedKappa(cells, scale);
  return { n, qwk: qwk === null ? null : round4(qwk), exact: round4(exact / n), adjacent: round4(adjacent / n), bias: round4(diff / n) };
}

/** Pairs of scores as a contingency table. */
export function tabulate(pairs: Array<[number, number]>): Cell[] {
  const m = new Map<string, Cell>();
  for (const [a, b] of pairs) {
    const k = `${a}|${b}`;
    const c = m.get(k);
    if (c) c.n++;
    else m.set(k, { a, b, n: 1 });
  }
  return [...m.values()];
}
