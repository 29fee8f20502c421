/**
 * How well the offline grader agrees with teachers, on 300 human-scored Chinese essays
 * (bench/data/zh-aes-300, MIT; scores out of 100). In process, no service: the grader is a pure
 * function. Reported beside the baseline every grader must beat, the essay's length alone:
 *
 * - uncalibrated: the offline grader's total (on zh-gaokao-60, scaled to 100) — Spearman against
 *   the teachers, and QWK / exact / adjacent / bias as it stands;
 * - calibrated, 5-fold cross-validated (each essay scored by a model fitted on the other four
 *   folds): an isotonic map of the offline total, and a ridge regression over the grader's features.
 *
 *   npm run bench:quality
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { essayFeatures, featureVector, FEATURE_NAMES } from '../src/grading/offline-features';
import { offlineGrade } from '../src/grading/offline-grader';
import { builtinRubric } from '../src/grading/rubric';
import { agreement, Agreement, tabulate } from '../src/quality/agreement';
import { applyIsotonic, crossValidated, fitIsotonic, fitOfflinePart, fitRidge, predictRidge, RIDGE_LAMBDA, spearman } from '../src/quality/calibration';
import { commit, runMain } from './lib/harness';

interface Row {
  id: string;
  text: string;
  score: number;
  maxScore: number;
}

export interface QualityResult {
  commit: string;
  date: string;
  data: string;
  essays: number;
  rubric: string;
  folds: number;
  lengthBaseline: { spearman: number; calibrated: Agreement & { spearman: number } };
  uncalibrated: Agreement & { spearman: number };
  isotonic: Agreement & { spearman: number };
  ridge: Agreement & { spearman: number; lambda: number };
  /** standardized ridge weights on all essays: points of the 100-point score per standard deviation */
  weights: Array<{ feature: string; weight: number }>;
  msPerEssay: number;
}

const DATA = path.join(__dirname, 'data/zh-aes-300/essays.jsonl');
const FOLDS = 5;

function scored(predicted: number[], truth: number[], max: number): Agreement & { spearman: number } {
  const rounded = predicted.map((p) => Math.max(0, Math.min(max, Math.round(p))));
  return { ...agreement(tabulate(rounded.map((p, i) => [p, truth[i]])), { step: 1, max }), spearman: Math.round(spearman(predicted, truth) * 10_000) / 10_000 };
}

export async function runQuality(): Promise<QualityResult> {
  const rows: Row[] = fs.readFileSync(DATA, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const rubric = builtinRubric('zh-gaokao-60')!;
  const max = rows[0].maxScore;
  const truth = rows.map((r) => r.score);
  const t0 = performance.now();
  const grades = rows.map((r) => offlineGrade(r.text, rubric, 'zh'));
  const msPerEssay = (performance.now() - t0) / rows.length;
  const features = rows.map((r) => featureVector(essayFeatures(r.text, 'zh'), rubric));
  const lengths = rows.map((r) => essayFeatures(r.text, 'zh').length);
  const offline = grades.map((g) => (g.score / g.maxScore) * max);

  const idx = rows.map((_, i) => i);
  const isoOf = (xs: number[]) =>
    crossValidated(idx, FOLDS, (train, test) => {
      const m = fitIsotonic(train.map((i) => ({ x: xs[i], y: truth[i] })));
      return test.map((i) => applyIsotonic(m, xs[i]));
    });
  // The offline part exactly as POST /v1/assignments/:id/calibration fits it.
  const ridge = crossValidated(idx, FOLDS, (train, test) => {
    const m = fitOfflinePart(train.map((i) => features[i]), train.map((i) => truth[i]));
    return test.map((i) => m.offset + m.factor * predictRidge(m, features[i]));
  });
  const all = fitRidge(features, truth, RIDGE_LAMBDA);
  return {
    commit: commit(),
    date: new Date().toISOString().slice(0, 10),
    data: 'zh-aes-300 (300 Chinese high-school essays, teachers\' scores out of 100, MIT)',
    essays: rows.length,
    rubric: rubric.key,
    folds: FOLDS,
    lengthBaseline: { spearman: Math.round(spearman(lengths, truth) * 10_000) / 10_000, calibrated: scored(isoOf(lengths), truth, max) },
    uncalibrated: scored(offline, truth, max),
    isotonic: scored(isoOf(offline), truth, max),
    ridge: { ...scored(ridge, truth, max), lambda: RIDGE_LAMBDA },
    weights: FEATURE_NAMES.map((feature, j) => ({ feature, weight: Math.round(all.weights[j] * 100) / 100 })).sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight)),
    msPerEssay: Math.round(msPerEssay * 100) / 100,
  };
}

if (require.main === module) runMain('quality.json', runQuality);
