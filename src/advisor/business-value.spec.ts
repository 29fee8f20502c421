import { businessValue, suggestionFor } from './business-value';

describe('business-value matrix (the article formula)', () => {
  /**
   * The article's four scenarios. Its printed scores (86.0, 13.0, 72.8, 37.8) do not follow from
   * its own formula — base × tolerance × min(frequency / 500, 1.5) × payment, clamped to 0–100 —
   * so this implements the formula and records both here.
   */
  it.each([
    // taskType, tolerance, frequency, pays, formula's raw score, clamped score, article's printed score
    ['customer_service', 'medium', 5000, true, 85 * 1.0 * 1.5 * 1.3, 100, 86.0],
    ['high_risk_decision', 'high', 100, true, 20 * 0.5 * 0.2 * 1.3, 2.6, 13.0],
    ['content_generation', 'low', 2000, true, 80 * 1.3 * 1.5 * 1.3, 100, 72.8],
    ['simple_classification', 'medium', 300, false, 60 * 1.0 * 0.6 * 0.7, 25.2, 37.8],
  ] as const)('%s / %s / %i / pays=%s', (taskType, errorTolerance, frequency, pays, raw, score, printed) => {
    const r = businessValue({ taskType, errorTolerance, frequency, userWillingToPay: pays });
    expect(r.details.rawScore).toBeCloseTo(raw, 6);
    expect(r.score).toBe(score);
    expect(r.score).not.toBe(printed); // the article's figure is not what its formula gives
    expect(r.suggestion).toBe(suggestionFor(score));
  });

  it('agrees with the article on which of the four pay off', () => {
    const pays = (t: string, tol: 'high' | 'medium' | 'low', f: number, p: boolean) => businessValue({ taskType: t, errorTolerance: tol, frequency: f, userWillingToPay: p }).score >= 50;
    expect([pays('customer_service', 'medium', 5000, true), pays('high_risk_decision', 'high', 100, true), pays('content_generation', 'low', 2000, true), pays('simple_classification', 'medium', 300, false)]).toEqual([
      true,
      false,
      true,
      false,
    ]);
  });

  it('scores an unknown task from base 50 and clamps to 0–100', () => {
    const r = businessValue({ taskType: 'essay_haiku', errorTolerance: 'medium', frequency: 500, userWillingToPay: false });
    expect(r).toMatchObject({ task: 'unknown', score: 35, details: { baseScore: 50, knownTask: false } });
    expect(businessValue({ taskType: 'unknown', errorTolerance: 'high', frequency: 0, userWillingToPay: false }).score).toBe(0);
  });

  it('reads a task type as typed with other case or surrounding spaces as that task, and a prototype key as unknown', () => {
    const input = { errorTolerance: 'medium', frequency: 500, userWillingToPay: true } as const;
    for (const taskType of [' customer_service ', 'Customer_Service', 'CUSTOMER_SERVICE\t']) {
      expect(businessValue({ ...input, taskType })).toMatchObject({ task: 'customer_service', details: { baseScore: 85, knownTask: true } });
    }
    for (const taskType of ['__proto__', 'constructor', '   ']) expect(businessValue({ ...input, taskType })).toMatchObject({ task: 'unknown', details: { knownTask: false } });
  });

  it('gives suggestions at 70, 50 and 30', () => {
    expect(new Set([suggestionFor(70), suggestionFor(69.9), suggestionFor(50), suggestionFor(49.9), suggestionFor(30), suggestionFor(29.9)]).size).toBe(4);
    expect(suggestionFor(70)).toBe(suggestionFor(100));
    expect(suggestionFor(50)).toBe(suggestionFor(69.9));
  });
});
