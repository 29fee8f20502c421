import { calibrateGrade, CalibrationModel, scaleDimensions } from './calibration-model';
import type { StoredGrade } from './grading-types';
import { builtinRubric, isOnStep, Rubric, totalScore } from './rubric';

const gaokao = builtinRubric('zh-gaokao-60')!;
const ielts = builtinRubric('en-ielts-task2')!;

function grade(rubric: typeof gaokao, scores: number[], source: StoredGrade['source'] = 'model'): StoredGrade {
  const dims = rubric.dimensions.map((d, i) => ({ key: d.key, name: d.name, score: scores[i], max: d.max, comment: 'c' }));
  return {
    score: totalScore(rubric, Object.fromEntries(dims.map((d) => [d.key, d.score]))),
    maxScore: 60,
    dimensions: dims,
    summary: 's',
    strengths: [],
    improvements: [],
    annotations: [],
    model: 'm',
    provider: 'p',
    tier: 'standard',
    cache: 'miss',
    cost: '0.00',
    flags: [],
    source,
    promptVersion: null,
    rubric: { key: rubric.key, version: 1 },
    gradedAt: '2026-11-30T00:00:00.000Z',
  };
}

/** A grader 10 points too generous on 30–60: the map takes 10 off. */
const minusTen: CalibrationModel = { version: 3, isotonic: { xs: [30, 60], ys: [20, 50] }, ridge: null };
const essay = { text: '一篇作文。', language: 'zh' as const };

describe('calibrateGrade', () => {
  it('moves a grade beyond the corrected range as the nearest end moved, not to the end', () => {
    // Learned from corrections of grades 20–35 only, each 2 points up: a 54 is not pulled to 37, nor a 10 to 22.
    const fair: CalibrationModel = { version: 6, isotonic: { xs: [20, 35], ys: [22, 37] }, ridge: null };
    expect(calibrateGrade(grade(gaokao, [18, 18, 18]), gaokao, fair, essay).score).toBe(56);
    expect(calibrateGrade(grade(gaokao, [3, 3, 4]), gaokao, fair, essay).score).toBe(12);
  });

  it('moves a model grade by the map, keeps the raw scores, and keeps dimensions consistent and in range', () => {
    const g = calibrateGrade(grade(gaokao, [16, 15, 14]), gaokao, minusTen, essay);
    expect(g.score).toBe(35);
    expect(totalScore(gaokao, Object.fromEntries(g.dimensions.map((d) => [d.key, d.score])))).toBe(35);
    for (const d of g.dimensions) expect(d.score).toBeLessThanOrEqual(20);
    expect(g.calibration).toEqual({ version: 3, rawScore: 45, rawDimensions: [{ key: 'content', score: 16 }, { key: 'expression', score: 15 }, { key: 'development', score: 14 }] });
  });

  it('recalibrates from the raw scores, never from an already calibrated grade', () => {
    const once = calibrateGrade(grade(gaokao, [16, 15, 14]), gaokao, minusTen, essay);
    const twice = calibrateGrade(once, gaokao, { ...minusTen, version: 4 }, essay);
    expect(twice.score).toBe(35);
    expect(twice.calibration!.rawScore).toBe(45);
  });

  it('leaves an offline grade alone when the calibration has no offline part', () => {
    const g = grade(gaokao, [16, 15, 14], 'offline');
    expect(calibrateGrade(g, gaokao, minusTen, essay)).toBe(g);
  });

  it('moves an offline grade by its linear map (here a shift), within the rubric, and leaves model grades to the isotonic part', () => {
    const shifted: CalibrationModel = { version: 4, isotonic: null, ridge: null, linear: { intercept: 8, slope: 1 } };
    const g = calibrateGrade(grade(gaokao, [16, 15, 14], 'offline'), gaokao, shifted, essay);
    expect(g.score).toBe(45 + 8);
    expect(g.calibration).toEqual({ version: 4, rawScore: 45, rawDimensions: [{ key: 'content', score: 16 }, { key: 'expression', score: 15 }, { key: 'development', score: 14 }] });
    expect(g.score).toBe(totalScore(gaokao, Object.fromEntries(g.dimensions.map((d) => [d.key, d.score]))));
    // near the top, the total stops at the rubric's maximum
    expect(calibrateGrade(grade(gaokao, [20, 19, 19], 'offline'), gaokao, shifted, essay).score).toBe(60);
    const model = grade(gaokao, [16, 15, 14]);
    expect(calibrateGrade(model, gaokao, shifted, essay)).toBe(model);
  });

  it('applies a stored ridge before any line, and a line that is not two finite numbers not at all', () => {
    // A ridge with no weights predicts its intercept: offset + factor × 30 = 40.
    const ridge = { intercept: 30, weights: [], means: [], sds: [], offset: 10, factor: 1, features: [] };
    const both: CalibrationModel = { version: 5, isotonic: null, ridge, linear: { intercept: 8, slope: 1 } };
    expect(calibrateGrade(grade(gaokao, [16, 15, 14], 'offline'), gaokao, both, essay).score).toBe(40);
    // A model stored before lines existed has no `linear` key at all.
    const before: CalibrationModel = { version: 2, isotonic: null, ridge };
    expect(calibrateGrade(grade(gaokao, [16, 15, 14], 'offline'), gaokao, before, essay).score).toBe(40);
    // JSON keeps NaN as null.
    const broken = { version: 6, isotonic: null, ridge: null, linear: { intercept: null, slope: null } } as unknown as CalibrationModel;
    const g = grade(gaokao, [16, 15, 14], 'offline');
    expect(calibrateGrade(g, gaokao, broken, essay)).toBe(g);
  });

  it('keeps half bands: an IELTS grade mapped to a band its criteria average to', () => {
    const up: CalibrationModel = { version: 1, isotonic: { xs: [0, 9], ys: [0.5, 9] }, ridge: null };
    const g = calibrateGrade(grade(ielts, [6, 6, 5, 5]), ielts, up, { text: 'x', language: 'en' });
    expect(g.score).toBe(totalScore(ielts, Object.fromEntries(g.dimensions.map((d) => [d.key, d.score]))));
    for (const d of g.dimensions) expect(isOnStep(d.score, 1)).toBe(true);
  });
});

describe('scaleDimensions', () => {
  it('reaches any total on the rubric\'s steps, from any dimensions', () => {
    for (let target = 0; target <= 60; target++) {
      const s = scaleDimensions(gaokao, [{ key: 'content', score: 20 }, { key: 'expression', score: 2 }, { key: 'development', score: 9 }], target);
      expect(totalScore(gaokao, s)).toBe(target);
      for (const d of gaokao.dimensions) expect(s[d.key]).toBeGreaterThanOrEqual(0);
      for (const d of gaokao.dimensions) expect(s[d.key]).toBeLessThanOrEqual(d.max);
    }
  });

  it('reaches any total of a custom rubric that mixes steps of 1 and 0.5', () => {
    const mixed: Rubric = { ...gaokao, key: 'mixed', builtIn: false, dimensions: [
      { ...gaokao.dimensions[0], key: 'whole', max: 10, step: 1 },
      { ...gaokao.dimensions[1], key: 'half', max: 10, step: 0.5 },
    ] };
    for (const raw of [[9, 1], [1, 9], [10, 0.5], [0, 0], [5, 5.5]]) {
      for (let target = 0; target <= 20; target += 0.5) {
        const s = scaleDimensions(mixed, [{ key: 'whole', score: raw[0] }, { key: 'half', score: raw[1] }], target);
        expect({ raw, target, total: totalScore(mixed, s) }).toEqual({ raw, target, total: target });
        for (const d of mixed.dimensions) expect(isOnStep(s[d.key], d.step) && s[d.key] >= 0 && s[d.key] <= d.max).toBe(true);
      }
    }
  });

  it('spreads a total over zero dimensions by their maxima', () => {
    const s = scaleDimensions(gaokao, [{ key: 'content', score: 0 }, { key: 'expression', score: 0 }, { key: 'development', score: 0 }], 30);
    expect(Object.values(s)).toEqual([10, 10, 10]);
  });
});
