import type { GradeBody } from './grade-validation';
import type { GradeCalibration, StoredGrade } from './grading-types';
import { essayFeatures, FEATURE_NAMES, featureVector } from './offline-features';
import { isOnStep, Language, maxScore, Rubric, totalScore, totalStep } from './rubric';

/**
 * An assignment's calibration (SPEC §9) as grading applies it: a monotone map from a model's total
 * to the teachers' (isotonic), and for offline grades a regression over the offline grader's
 * features (ridge, its predictions spread to the teachers' spread) or, when that cross-validates
 * worse or there are too few labels for it, a linear map of the grader's own total. Fitted by the
 * quality module from the teachers' overrides; applied here when an essay of the assignment is graded, and by a
 * regrade. The dimension scores are moved with the total, within the rubric; the grade keeps
 * `calibration: {version, rawScore, rawDimensions}`, so the uncalibrated grade is never lost.
 */

/** A monotone non-decreasing map: knots at both ends of each fitted block, linear between them. */
export interface IsotonicMap {
  /** the knots' x, ascending (a block from lo to hi has a knot at each) */
  xs: number[];
  ys: number[];
}

/**
 * The map at x: linear between fitted points; beyond the ends, x moved as the end is (the end's
 * offset, y − x). Flat there, every essay the teachers' corrections did not reach was pulled to
 * the nearest corrected score: with corrections of grades 20–35, a 55 became 36 and a 10 became 21.
 */
export function applyIsotonic(m: IsotonicMap, x: number): number {
  const { xs, ys } = m;
  if (xs.length === 0) return x;
  if (x <= xs[0]) return x + (ys[0] - xs[0]);
  const last = xs.length - 1;
  if (x >= xs[last]) return x + (ys[last] - xs[last]);
  let lo = 0;
  let hi = xs.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] <= x) lo = mid;
    else hi = mid;
  }
  const t = (x - xs[lo]) / (xs[hi] - xs[lo]);
  return ys[lo] + t * (ys[hi] - ys[lo]);
}

/** A linear model over standardized features: y = intercept + Σ weight·(x − mean)/sd. */
export interface RidgeModel {
  intercept: number;
  weights: number[];
  means: number[];
  sds: number[];
}

export function predictRidge(m: RidgeModel, x: number[]): number {
  return m.weights.reduce((s, w, j) => s + (w * (x[j] - m.means[j])) / m.sds[j], m.intercept);
}


export interface CalibrationModel {
  version: number;
  /** for grades a model made (and reused ones): its total → the teachers' */
  isotonic: IsotonicMap | null;
  /** for offline grades: the features (by name) → the teachers' total, then `offset + factor × prediction` */
  ridge: (RidgeModel & { offset: number; factor: number; features?: string[] }) | null;
  /**
   * for offline grades, instead of `ridge` (when that cross-validated worse, or was not tried: under
   * 60 labels): the grader's own total mapped `intercept + slope × total` — a shift (slope 1: the
   * teachers' mean minus the grader's) or a rising least-squares line — keeping its order
   */
  linear?: { intercept: number; slope: number } | null;
}

export type { GradeCalibration } from './grading-types';

/** The calibrated total for a grade, or null when this calibration has no part for its source. */
export function calibratedTotal(model: CalibrationModel, raw: { score: number; source: string }, features: () => number[]): number | null {
  if (raw.source === 'offline') {
    if (!model.ridge) {
      // A stored line that is not two finite numbers (JSON keeps NaN as null) is no line.
      const line = model.linear;
      return line && Number.isFinite(line.intercept) && Number.isFinite(line.slope) ? line.intercept + line.slope * raw.score : null;
    }
    const r = model.ridge;
    // The features the model was fitted on, by name: a grader that measures more still fits it.
    const all = features();
    // A feature the grader no longer measures takes its mean: it moves the prediction by nothing.
    const x = r.features
      ? r.features.map((n, j) => {
          const i = (FEATURE_NAMES as readonly string[]).indexOf(n);
          return i >= 0 ? all[i] : r.means[j];
        })
      : all.slice(0, r.weights.length);
    return r.offset + r.factor * predictRidge(r, x);
  }
  return model.isotonic ? applyIsotonic(model.isotonic, raw.score) : null;
}

/**
 * Dimension scores moved so that the rubric's total of them is `target` (on the total's step,
 * within 0..max): each dimension scaled by target/raw, then nudged a step at a time, the one
 * furthest from its exact share first, until the total is reached.
 */
export function scaleDimensions(rubric: Rubric, dims: Array<{ key: string; score: number }>, target: number): Record<string, number> {
  const raw = totalScore(rubric, Object.fromEntries(dims.map((d) => [d.key, d.score])));
  const top = maxScore(rubric);
  const exact: Record<string, number> = {};
  const out: Record<string, number> = {};
  for (const d of rubric.dimensions) {
    const s = dims.find((x) => x.key === d.key)?.score ?? 0;
    exact[d.key] = raw > 0 ? Math.min(d.max, (s * target) / raw) : (d.max * target) / top;
    out[d.key] = Math.max(0, Math.min(d.max, Math.floor(exact[d.key] / d.step + 1e-9) * d.step));
  }
  const limit = rubric.dimensions.reduce((n, d) => n + d.max / d.step, 0) + rubric.dimensions.length;
  for (let i = 0; i < limit; i++) {
    const total = totalScore(rubric, out);
    if (total === target) break;
    const up = total < target;
    let movable = rubric.dimensions.filter((d) => (up ? out[d.key] + d.step <= d.max : out[d.key] - d.step >= 0));
    // Summed, a step no larger than what is left goes first: with half a point left on a rubric that
    // mixes steps of 1 and 0.5, a whole step overshot, came back, and never reached the total.
    if (rubric.totalRule === 'sum') {
      const gap = Math.abs(target - total);
      const fits = movable.filter((d) => d.step <= gap + 1e-9);
      if (fits.length) movable = fits;
    }
    if (!movable.length) break;
    movable.sort((a, b) => (up ? exact[b.key] - out[b.key] - (exact[a.key] - out[a.key]) : out[b.key] - exact[b.key] - (out[a.key] - exact[a.key])));
    const d = movable[0];
    out[d.key] += up ? d.step : -d.step;
  }
  return out;
}

/**
 * The grade with the calibration applied (the raw one kept inside it), or the grade unchanged when
 * the calibration has no part for its source. `text` and `language` are the essay's (the offline
 * part reads its features).
 */
export function calibrateGrade<G extends GradeBody & { source: StoredGrade['source']; calibration?: GradeCalibration }>(
  grade: G,
  rubric: Rubric,
  model: CalibrationModel,
  essay: { text: string; language: Language },
): G {
  const rawScore = grade.calibration?.rawScore ?? grade.score;
  const rawDimensions = grade.calibration?.rawDimensions ?? grade.dimensions.map((d) => ({ key: d.key, score: d.score }));
  const predicted = calibratedTotal(model, { score: rawScore, source: grade.source }, () => featureVector(essayFeatures(essay.text, essay.language), rubric));
  if (predicted === null || !Number.isFinite(predicted)) return grade;
  const step = totalStep(rubric);
  const target = Math.max(0, Math.min(maxScore(rubric), Math.round(predicted / step) * step));
  const scores = scaleDimensions(rubric, rawDimensions, target);
  for (const d of rubric.dimensions) if (!isOnStep(scores[d.key], d.step)) throw new Error(`calibration put ${d.key} off its step`);
  return {
    ...grade,
    score: totalScore(rubric, scores),
    dimensions: grade.dimensions.map((d) => ({ ...d, score: scores[d.key] ?? d.score })),
    calibration: { version: model.version, rawScore, rawDimensions },
  };
}
