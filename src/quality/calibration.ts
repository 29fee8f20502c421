/**
 * The fitting behind calibration (SPEC §9), pure and deterministic: a monotone map from a grader's
 * total to the teacher's (isotonic regression, pool-adjacent-violators), a ridge regression over
 * the offline grader's features or a shift or a line from its total, and k-fold cross-validation
 * to choose among those and to tell whether the result does better than no calibration at all.
 */
import { calibratedTotal, predictRidge } from '../grading/calibration-model';
import type { CalibrationModel, IsotonicMap, RidgeModel } from '../grading/calibration-model';
import { FEATURE_NAMES } from '../grading/offline-features';
import type { Agreement } from './agreement';

export { applyIsotonic, predictRidge } from '../grading/calibration-model';
export type { IsotonicMap, RidgeModel } from '../grading/calibration-model';

/**
 * Pool adjacent violators over the points sorted by x (ties pooled first). Each pooled block is
 * flat from its lowest x to its highest: the map has a knot at both ends of every block, so it
 * reproduces its own fit and is linear only between blocks.
 */
export function fitIsotonic(points: Array<{ x: number; y: number }>): IsotonicMap {
  const sorted = [...points].sort((a, b) => a.x - b.x);
  const blocks: Array<{ lo: number; hi: number; sum: number; n: number }> = [];
  for (const p of sorted) {
    const last = blocks[blocks.length - 1];
    if (last && last.hi === p.x) {
      last.sum += p.y;
      last.n++;
    } else blocks.push({ lo: p.x, hi: p.x, sum: p.y, n: 1 });
    // Merge backwards while the means decrease.
    while (blocks.length >= 2) {
      const b = blocks[blocks.length - 1];
      const a = blocks[blocks.length - 2];
      if (a.sum / a.n <= b.sum / b.n) break;
      blocks.splice(blocks.length - 2, 2, { lo: a.lo, hi: b.hi, sum: a.sum + b.sum, n: a.n + b.n });
    }
  }
  const xs: number[] = [];
  const ys: number[] = [];
  for (const b of blocks) {
    const y = b.sum / b.n;
    xs.push(b.lo);
    ys.push(y);
    if (b.hi !== b.lo) {
      xs.push(b.hi);
      ys.push(y);
    }
  }
  return { xs, ys };
}

/** Solves A·x = b (A square, symmetric positive definite here) by Gaussian elimination with pivoting. */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    [m[c], m[p]] = [m[p], m[c]];
    for (let r = c + 1; r < n; r++) {
      const k = m[r][c] / m[c][c];
      for (let j = c; j <= n; j++) m[r][j] -= k * m[c][j];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r][n];
    for (let j = r + 1; j < n; j++) s -= m[r][j] * x[j];
    x[r] = s / m[r][r];
  }
  return x;
}

/** Ridge regression: standardized features, penalty `lambda` on the weights (not the intercept). */
export function fitRidge(x: number[][], y: number[], lambda = 1): RidgeModel {
  const n = x.length;
  const d = x[0]?.length ?? 0;
  const means = Array.from({ length: d }, (_, j) => x.reduce((s, r) => s + r[j], 0) / n);
  // A feature that did not vary among the labels gets no weight: its spread is then rounding noise
  // (0.1 summed 37 times is not 3.7), and dividing by it made a weight that blew up any essay whose
  // value differed. Its standard deviation is kept as 1, its standardized values as 0.
  const spread = Array.from({ length: d }, (_, j) => Math.sqrt(x.reduce((s, r) => s + (r[j] - means[j]) ** 2, 0) / n));
  const flat = spread.map((sd, j) => !(sd > 1e-9 * Math.max(1, Math.abs(means[j]))));
  const sds = spread.map((sd, j) => (flat[j] ? 1 : sd));
  const z = x.map((r) => r.map((v, j) => (flat[j] ? 0 : (v - means[j]) / sds[j])));
  const yMean = y.reduce((s, v) => s + v, 0) / n;
  const a = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => z.reduce((s, r) => s + r[i] * r[j], 0) + (i === j ? lambda : 0)));
  const b = Array.from({ length: d }, (_, j) => z.reduce((s, r, k) => s + r[j] * (y[k] - yMean), 0));
  return { intercept: yMean, weights: solve(a, b), means, sds };
}

/** The ridge penalty on standardized features for the offline part of a calibration. */
export const RIDGE_LAMBDA = 10;

/**
 * The ridge candidate of a calibration's offline part: a ridge regression from the offline grader's features to the
 * teachers' totals, its predictions then spread to the teachers' spread (mean and standard
 * deviation matched on the fitting set): a regression's predictions huddle round the mean, which
 * kappa punishes.
 */
export function fitOfflineRidge(x: number[][], y: number[], lambda = RIDGE_LAMBDA): RidgeModel & { offset: number; factor: number; features: string[] } {
  const m = fitRidge(x, y, lambda);
  const [mf, sf] = meanSd(x.map((r) => predictRidge(m, r)));
  const [mt, st] = meanSd(y);
  const factor = sf > 1e-9 ? st / sf : 1;
  return { ...m, factor, offset: mt - factor * mf, features: [...FEATURE_NAMES] };
}

function meanSd(xs: number[]): [number, number] {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return [m, Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length)];
}

/** One overridden offline grade: the grader's total, the teacher's, and the grader's features. */
export interface OfflineLabel {
  raw: number;
  teacher: number;
  features: number[];
}

/** The offline part of a calibration, its name, and each label's cross-validated prediction. */
export interface OfflinePart {
  method: 'shift' | 'linear' | 'ridge';
  ridge: ReturnType<typeof fitOfflineRidge> | null;
  linear: { intercept: number; slope: number } | null;
  predicted: number[];
}

/**
 * The ridge has a weight for each of the offline grader's features (FEATURE_NAMES, 14 today): it
 * is a candidate only from this many labels up, about four a weight. Under it, a fit on a class
 * set's 20-odd overrides learns the noise of those essays.
 */
export const RIDGE_MIN_LABELS = 60;

type Line = { intercept: number; slope: number };

/** The grader's total moved by the teachers' mean minus the grader's (slope 1). */
export function fitShift(labels: ReadonlyArray<Pick<OfflineLabel, 'raw' | 'teacher'>>): Line {
  return { intercept: labels.reduce((s, l) => s + l.teacher - l.raw, 0) / labels.length, slope: 1 };
}

/**
 * The least-squares line from the grader's total to the teacher's. Only a rising line: one that
 * is flat or falls would give every essay the same score or put the grader's order backwards —
 * not a calibration of the grader but a replacement for it — so then (and when the grader's totals
 * do not vary) the line is the shift.
 */
export function fitLine(labels: ReadonlyArray<Pick<OfflineLabel, 'raw' | 'teacher'>>): Line {
  const n = labels.length;
  const mx = labels.reduce((s, l) => s + l.raw, 0) / n;
  const my = labels.reduce((s, l) => s + l.teacher, 0) / n;
  const sxx = labels.reduce((s, l) => s + (l.raw - mx) ** 2, 0);
  const slope = sxx > 1e-9 ? labels.reduce((s, l) => s + (l.raw - mx) * (l.teacher - my), 0) / sxx : 0;
  return slope > 0 ? { intercept: my - slope * mx, slope } : fitShift(labels);
}

/**
 * The offline part of a calibration, the candidate that agrees with the teachers best under k-fold
 * cross-validation (`agreementOf` scores held-out predictions, higher is better), a tie going to
 * the simpler: the grader's total shifted to the teachers' mean (one parameter: corrects the
 * grader's bias, keeps its order and spread), a least-squares line from it (two: a teacher who
 * spreads scores wider or narrower), or, from RIDGE_MIN_LABELS labels, the ridge over the
 * grader's features (one a feature: a teacher who weighs what the grader measures differently).
 */
export function fitOfflineCalibration(labels: OfflineLabel[], k: number, agreementOf: (predicted: number[]) => number | null): OfflinePart {
  type Fitted = Pick<OfflinePart, 'ridge' | 'linear'>;
  const candidates: Array<{ method: OfflinePart['method']; fit: (train: OfflineLabel[]) => Fitted }> = [
    { method: 'shift', fit: (train) => ({ ridge: null, linear: fitShift(train) }) },
    { method: 'linear', fit: (train) => ({ ridge: null, linear: fitLine(train) }) },
  ];
  if (labels.length >= RIDGE_MIN_LABELS) {
    candidates.push({ method: 'ridge', fit: (train) => ({ ridge: fitOfflineRidge(train.map((l) => l.features), train.map((l) => l.teacher)), linear: null }) });
  }
  // Each fold's fit applied as grading applies it (calibratedTotal), so what is measured is what runs.
  const heldOut = (fit: (train: OfflineLabel[]) => Fitted) =>
    crossValidated(labels, k, (train, test) => {
      const model = { version: 0, isotonic: null, ...fit(train) };
      return test.map((l) => calibratedTotal(model, { score: l.raw, source: 'offline' }, () => l.features) ?? l.raw);
    });
  let best: { method: OfflinePart['method']; fit: (train: OfflineLabel[]) => Fitted; predicted: number[] } | null = null;
  let bestScore = -Infinity;
  for (const c of candidates) {
    const predicted = heldOut(c.fit);
    const score = agreementOf(predicted) ?? -Infinity;
    if (!best || score > bestScore) [best, bestScore] = [{ ...c, predicted }, score];
  }
  return { method: best!.method, ...best!.fit(labels), predicted: best!.predicted };
}

/**
 * How much better than no calibration a calibration must agree with the teachers (QWK,
 * cross-validated) to be switched on. The candidate is chosen on the same folds that measure it,
 * so a small gain is mostly that choice: on 20 corrections of a grader with no bias, fits that
 * cleared it by any margin (about one in eleven) claimed +0.009 and did 0.024 worse on new essays.
 */
export const MIN_QWK_GAIN = 0.02;

/** Whether `calibrated` agrees better than `raw` by MIN_QWK_GAIN (compared without floating-point error: 0.82 − 0.80 is 0.0199…). */
const clearsMargin = (calibrated: number, raw: number) => calibrated - raw >= MIN_QWK_GAIN - 1e-9;

/** A teacher's override of a standard grade: the grader's total, the teacher's, and an offline grade's features. */
export interface CalibrationLabel {
  raw: number;
  teacher: number;
  source: 'model' | 'offline';
  features: number[] | null;
}

/** A calibration as fitted, before it is stored: its model, what it is called, and how it did. */
export interface FittedCalibration {
  model: CalibrationModel;
  /** the parts in force (`isotonic`, `shift`, `linear`, `ridge`, joined by `+`), or, when none is, what was fitted */
  method: string;
  /** the labels it was measured on: those of each source with enough of them */
  essays: number;
  before: Agreement;
  after: Agreement;
  /** switched on: some part kept, and better than no calibration overall */
  active: boolean;
}

/**
 * A calibration from teachers' overrides: for a source with at least `minLabels` of them, an
 * isotonic map (model grades) or the best offline part (fitOfflineCalibration), each fitted and
 * cross-validated on its own source's labels and kept only when it beats that source's grades
 * uncalibrated — a map that helps the model grades must not carry in one that harms the offline
 * grades, or the reverse. `agreement` scores predictions against the teachers (higher QWK is
 * better). The caller checks that some source has enough labels.
 */
export function fitCalibration(
  labels: CalibrationLabel[],
  opts: { minLabels: number; folds: number; agreement: (predicted: number[], teacher: number[]) => Agreement },
): FittedCalibration {
  const model = labels.filter((l) => l.source === 'model');
  const offline = labels.filter((l) => l.source === 'offline');
  const agreementOf = (ls: ReadonlyArray<{ teacher: number }>, predicted: number[]) => opts.agreement(predicted, ls.map((l) => l.teacher));
  const beats = (ls: CalibrationLabel[], predicted: number[]) => {
    const calibrated = agreementOf(ls, predicted).qwk;
    const raw = agreementOf(ls, ls.map((l) => l.raw)).qwk;
    return calibrated !== null && (raw === null || clearsMargin(calibrated, raw));
  };
  const isotonicHeldOut =
    model.length >= opts.minLabels
      ? crossValidated(model, opts.folds, (train, test) => {
          const m: CalibrationModel = { version: 0, isotonic: fitIsotonic(train.map((t) => ({ x: t.raw, y: t.teacher }))), ridge: null };
          return test.map((l) => calibratedTotal(m, { score: l.raw, source: 'model' }, () => [])!);
        })
      : null;
  const offlineLabels: OfflineLabel[] = offline.map((l) => ({ raw: l.raw, teacher: l.teacher, features: l.features ?? [] }));
  const offlinePart = offline.length >= opts.minLabels ? fitOfflineCalibration(offlineLabels, opts.folds, (p) => agreementOf(offlineLabels, p).qwk) : null;
  const keepIsotonic = isotonicHeldOut !== null && beats(model, isotonicHeldOut);
  const keepOffline = offlinePart !== null && beats(offline, offlinePart.predicted);
  const used = [...(isotonicHeldOut ? model : []), ...(offlinePart ? offline : [])];
  const before = agreementOf(used, used.map((l) => l.raw));
  // A part not kept leaves its grades as they are.
  const after = agreementOf(used, [
    ...(isotonicHeldOut ? (keepIsotonic ? isotonicHeldOut : model.map((l) => l.raw)) : []),
    ...(offlinePart ? (keepOffline ? offlinePart.predicted : offline.map((l) => l.raw)) : []),
  ]);
  const names = (iso: boolean, off: boolean) => [iso ? 'isotonic' : null, off ? offlinePart!.method : null].filter(Boolean).join('+');
  return {
    model: {
      version: 0,
      isotonic: keepIsotonic ? fitIsotonic(model.map((l) => ({ x: l.raw, y: l.teacher }))) : null,
      ridge: keepOffline ? offlinePart.ridge : null,
      linear: keepOffline ? offlinePart.linear : null,
    },
    method: keepIsotonic || keepOffline ? names(keepIsotonic, keepOffline) : names(isotonicHeldOut !== null, offlinePart !== null),
    essays: used.length,
    before,
    after,
    active: (keepIsotonic || keepOffline) && after.qwk !== null && (before.qwk === null || clearsMargin(after.qwk, before.qwk)),
  };
}

/**
 * Every item predicted by a model fitted on the other folds (k folds, items dealt in turn so that
 * the folds are the same on every run). Returns the predictions in the items' order.
 */
export function crossValidated<T>(items: T[], k: number, fitAndPredict: (train: T[], test: T[]) => number[]): number[] {
  const out = new Array<number>(items.length);
  for (let fold = 0; fold < k; fold++) {
    const test: number[] = [];
    const train: T[] = [];
    items.forEach((it, i) => (i % k === fold ? test.push(i) : train.push(it)));
    if (!test.length) continue;
    const predicted = fitAndPredict(train, test.map((i) => items[i]));
    test.forEach((i, j) => (out[i] = predicted[j]));
  }
  return out;
}

/** Spearman's rank correlation (ties get their mean rank). */
export function spearman(a: number[], b: number[]): number {
  const rank = (x: number[]) => {
    const idx = x.map((v, i) => [v, i] as const).sort((p, q) => p[0] - q[0]);
    const r = new Array<number>(x.length);
    for (let i = 0; i < idx.length; ) {
      let j = i;
      while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++;
      for (let k = i; k <= j; k++) r[idx[k][1]] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const ra = rank(a);
  const rb = rank(b);
  const n = a.length;
  const ma = ra.reduce((s, v) => s + v, 0) / n;
  const mb = rb.reduce((s, v) => s + v, 0) / n;
  let c = 0;
  let va = 0;
  let vb = 0;
  for (let i = 0; i < n; i++) {
    c += (ra[i] - ma) * (rb[i] - mb);
    va += (ra[i] - ma) ** 2;
    vb += (rb[i] - mb) ** 2;
  }
  return va && vb ? c / Math.sqrt(va * vb) : 0;
}
