import { agreement, tabulate } from './agreement';
import { applyIsotonic, CalibrationLabel, crossValidated, fitCalibration, fitIsotonic, fitLine, fitOfflineCalibration, fitRidge, fitShift, MIN_QWK_GAIN, predictRidge, RIDGE_MIN_LABELS, spearman } from './calibration';

describe('isotonic regression', () => {
  it('pools adjacent violators into a non-decreasing map', () => {
    // y: 1, 3, 2, 4 at x 1..4: (3, 2) violate and pool to 2.5.
    const m = fitIsotonic([{ x: 1, y: 1 }, { x: 2, y: 3 }, { x: 3, y: 2 }, { x: 4, y: 4 }]);
    expect(m.ys).toEqual([1, 2.5, 2.5, 4]);
    expect(m.xs).toEqual([1, 2, 3, 4]);
    for (let i = 1; i < m.ys.length; i++) expect(m.ys[i]).toBeGreaterThanOrEqual(m.ys[i - 1]);
  });

  it('reproduces its own fit: flat across a pooled block, not interpolated into it', () => {
    const m = fitIsotonic([{ x: 1, y: 1 }, { x: 2, y: 3 }, { x: 3, y: 2 }, { x: 4, y: 4 }]);
    expect(applyIsotonic(m, 2)).toBe(2.5);
    expect(applyIsotonic(m, 3)).toBe(2.5);
    expect(applyIsotonic(m, 2.5)).toBe(2.5);
    expect(applyIsotonic(m, 1.5)).toBe(1.75); // between blocks: linear
  });

  it("maps between fitted points linearly and, beyond them, by the end's offset", () => {
    const m = fitIsotonic([{ x: 10, y: 20 }, { x: 20, y: 40 }]);
    expect(applyIsotonic(m, 15)).toBe(30);
    // Beyond the ends a grade moves as the end does: not pulled to the nearest corrected score.
    expect(applyIsotonic(m, 0)).toBe(10);
    expect(applyIsotonic(m, 99)).toBe(119);
  });

  it('learns a grader that is 10 points too generous', () => {
    const pts = Array.from({ length: 30 }, (_, i) => ({ x: 30 + i, y: 20 + i }));
    const m = fitIsotonic(pts);
    expect(applyIsotonic(m, 45)).toBeCloseTo(35, 9);
  });
});

describe('ridge regression', () => {
  it('recovers a linear rule from clean data (small penalty)', () => {
    const x = Array.from({ length: 40 }, (_, i) => [i % 7, (i * 3) % 11]);
    const y = x.map(([a, b]) => 5 + 2 * a - 0.5 * b);
    const m = fitRidge(x, y, 1e-6);
    expect(predictRidge(m, [3, 4])).toBeCloseTo(5 + 6 - 2, 4);
  });

  it('gives a feature that did not vary among the labels no weight, whatever its value (not one set by rounding noise)', () => {
    // 0.1 summed 37 times is not 3.7: its mean is off by rounding, and its spread about 1e-17.
    const x = Array.from({ length: 37 }, (_, i) => [i % 9, 0.1]);
    const y = x.map(([a], i) => 10 + 2 * a + (i % 3));
    const m = fitRidge(x, y, 10);
    const usual = predictRidge(m, [4, 0.1]);
    expect(Math.abs(predictRidge(m, [4, 0.2]) - usual)).toBeLessThan(1e-6);
    expect(Math.abs(predictRidge(m, [4, 0]) - usual)).toBeLessThan(1e-6);
  });

  it('shrinks weights as the penalty grows', () => {
    const x = Array.from({ length: 20 }, (_, i) => [i]);
    const y = x.map(([a]) => a);
    expect(Math.abs(fitRidge(x, y, 100).weights[0])).toBeLessThan(Math.abs(fitRidge(x, y, 0.01).weights[0]));
  });
});

describe('the offline part: shift, line or ridge, whichever cross-validates best', () => {
  // Deterministic noise in [0, 1).
  const noise = (i: number, salt: number) => ((Math.imul(i + 1, 2654435761) ^ Math.imul(salt, 40503)) >>> 0) / 2 ** 32;
  const features = (i: number) => Array.from({ length: 6 }, (_, j) => noise(i, j) * 10);
  /** higher is better: minus the mean absolute error against the teachers */
  const closeness = (labels: Array<{ teacher: number }>) => (p: number[]) => -labels.reduce((s, l, i) => s + Math.abs(p[i] - l.teacher), 0) / labels.length;

  it('shifts the grader\'s total when the teacher is the grader plus seven and the features say nothing more', () => {
    const labels = Array.from({ length: 24 }, (_, i) => ({ raw: 20 + ((i * 7) % 30), features: features(i), teacher: 0 }));
    for (const l of labels) l.teacher = l.raw + 7;
    expect(fitShift(labels)).toEqual({ intercept: 7, slope: 1 });
    const part = fitOfflineCalibration(labels, 5, closeness(labels));
    // the line fits as well; the tie goes to the simpler shift
    expect(part).toMatchObject({ method: 'shift', ridge: null, linear: { intercept: 7, slope: 1 } });
    // held out, each prediction is exact: every fold's shift is 7 too
    expect(part.predicted).toEqual(labels.map((l) => l.teacher));
  });

  it('draws a line when the teacher spreads the grader\'s order twice as wide', () => {
    const labels = Array.from({ length: 24 }, (_, i) => ({ raw: 20 + ((i * 7) % 30), features: features(i), teacher: 0 }));
    for (const l of labels) l.teacher = 2 * l.raw - 25;
    const line = fitLine(labels);
    expect(line.slope).toBeCloseTo(2, 9);
    expect(line.intercept).toBeCloseTo(-25, 9);
    expect(fitOfflineCalibration(labels, 5, closeness(labels)).method).toBe('linear');
    // A teacher who reverses the grader's order gets no falling (or flat) line: the shift instead.
    const reversed = labels.map((l) => ({ ...l, teacher: 100 - l.raw }));
    expect(fitLine(reversed)).toEqual(fitShift(reversed));
    expect(fitLine(reversed).slope).toBe(1);
  });

  it('takes the ridge, from 60 labels, when the teacher follows a feature the grader\'s total ignores; under 60 it is not tried', () => {
    const labels = Array.from({ length: RIDGE_MIN_LABELS }, (_, i) => {
      const f = features(i);
      return { raw: 30 + noise(i, 99) * 4, features: f, teacher: 10 + 4 * f[2] };
    });
    const part = fitOfflineCalibration(labels, 5, closeness(labels));
    expect(part.method).toBe('ridge');
    expect(part.linear).toBeNull();
    expect(part.ridge).not.toBeNull();
    expect(closeness(labels)(part.predicted)).toBeGreaterThan(-2);
    expect(fitOfflineCalibration(labels.slice(1), 5, closeness(labels.slice(1))).method).not.toBe('ridge');
  });
});

describe('a calibration from both sources: each part kept only when it beats its own grades', () => {
  const scale = { step: 1, max: 60 };
  const opts = {
    minLabels: 20,
    folds: 5,
    agreement: (predicted: number[], teacher: number[]) => agreement(tabulate(predicted.map((p, i) => [Math.max(0, Math.min(60, Math.round(p))), teacher[i]])), scale),
  };
  const graded = (source: 'model' | 'offline', n: number, teacher: (raw: number) => number): CalibrationLabel[] =>
    Array.from({ length: n }, (_, i) => {
      const raw = 20 + ((i * 7) % 30);
      return { raw, teacher: teacher(raw), source, features: source === 'offline' ? [raw, i % 3] : null };
    });

  it('keeps the model grades\' map and leaves out an offline part when the teacher agrees with the offline grades exactly', () => {
    const labels = [...graded('model', 24, (raw) => raw - 10), ...graded('offline', 24, (raw) => raw)];
    const fit = fitCalibration(labels, opts);
    expect(fit.method).toBe('isotonic');
    expect(fit.model.isotonic).not.toBeNull();
    expect(fit.model.ridge).toBeNull();
    expect(fit.model.linear).toBeNull();
    expect(fit.active).toBe(true);
    expect(fit.essays).toBe(48);
    expect(fit.after.qwk!).toBeGreaterThan(fit.before.qwk!);
  });

  it('keeps both parts when both help, and none (switched off, naming what was fitted) when neither does', () => {
    const both = fitCalibration([...graded('model', 24, (raw) => raw - 10), ...graded('offline', 24, (raw) => raw + 8)], opts);
    expect(both.method).toBe('isotonic+shift');
    expect(both.model.linear).toEqual({ intercept: 8, slope: 1 });
    expect(both.active).toBe(true);
    const neither = fitCalibration([...graded('model', 24, (raw) => raw), ...graded('offline', 24, (raw) => raw)], opts);
    expect(neither).toMatchObject({ method: 'isotonic+shift', active: false, model: { isotonic: null, ridge: null, linear: null } });
    expect(neither.before.qwk).toBe(1);
  });

  it(`switches on only for a gain of at least ${MIN_QWK_GAIN} in QWK: a smaller one is mostly the choice made on the folds that measure it`, () => {
    const labels = graded('model', 24, (raw) => raw - 10);
    const raws = labels.map((l) => l.raw);
    // An agreement that rates the uncalibrated grades 0.80 and anything else `calibrated`.
    const rated = (calibrated: number) => ({
      ...opts,
      agreement: (predicted: number[]) => ({ n: predicted.length, qwk: predicted.every((p, i) => p === raws[i]) ? 0.8 : calibrated, exact: null, adjacent: null, bias: null }),
    });
    expect(fitCalibration(labels, rated(0.81))).toMatchObject({ active: false, model: { isotonic: null } });
    expect(fitCalibration(labels, rated(0.82))).toMatchObject({ active: true, method: 'isotonic' }); // (0.82 − 0.80 is 0.0199… in floating point)
  });

  it('measures only the sources with enough labels', () => {
    const fit = fitCalibration([...graded('model', 5, (raw) => raw - 10), ...graded('offline', 24, (raw) => raw + 8)], opts);
    expect(fit).toMatchObject({ method: 'shift', essays: 24, active: true, model: { isotonic: null } });
  });
});

describe('cross-validation and rank correlation', () => {
  it('predicts every item from a model that never saw it', () => {
    const items = [1, 2, 3, 4, 5, 6];
    const seen: number[][] = [];
    const out = crossValidated(items, 3, (train, test) => {
      seen.push(train);
      for (const t of test) expect(train).not.toContain(t);
      return test.map((t) => t * 10);
    });
    expect(out).toEqual([10, 20, 30, 40, 50, 60]);
    expect(seen).toHaveLength(3);
  });

  it('computes Spearman with ties', () => {
    expect(spearman([1, 2, 3, 4], [10, 20, 30, 40])).toBeCloseTo(1, 12);
    expect(spearman([1, 2, 3, 4], [4, 3, 2, 1])).toBeCloseTo(-1, 12);
    // ranks a: 1, 2.5, 2.5, 4; b: 1, 2, 3, 4 → r = 4.5 / sqrt(4.5 · 5) = 0.948683…
    expect(spearman([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo(4.5 / Math.sqrt(22.5), 9);
  });
});
