import { failureWords, isUsedUpAmount, isZeroAmount, regradeOutcome } from './explain';
import { translate } from './i18n';

describe('what happened, from the API’s answer', () => {
  it('says a regrade with no calibration in force applied none, in both languages', () => {
    const none = regradeOutcome({ calibration: null, essays: 0 });
    expect(none.key).toBe('regradedNoneNoChange');
    expect(translate('en', none.key, none.vars)).toMatch(/^No calibration is in force/);
    expect(translate('zh', none.key, none.vars)).toMatch(/^当前没有启用校准/);
    for (const locale of ['en', 'zh'] as const) expect(translate(locale, none.key, none.vars)).not.toMatch(/已按当前校准|regraded with the calibration/);
    const reset = regradeOutcome({ calibration: null, essays: 4 });
    expect(translate('en', reset.key, reset.vars)).toBe("No calibration is in force: 4 essay(s) set back to the grader's own scores.");
  });

  it('names the calibration a regrade applied, and says when nothing changed', () => {
    const applied = regradeOutcome({ calibration: 3, essays: 12 });
    expect(translate('en', applied.key, applied.vars)).toBe('Calibration version 3 applied: 12 essay(s) regraded.');
    expect(translate('zh', applied.key, applied.vars)).toBe('已应用第 3 版校准：重新评分 12 篇作文。');
    const same = regradeOutcome({ calibration: 3, essays: 0 });
    expect(translate('en', same.key, same.vars)).toContain('already up to date');
  });

  it('explains every reason an essay fails in both languages, never as the code', () => {
    // the codes src/grading sets on a failed essay (model-grader.ts, grading.service.ts, grading.worker.ts, essays.repository.ts)
    for (const code of ['BUDGET_EXHAUSTED', 'CONTENT_REJECTED', 'CONTEXT_LENGTH_EXCEEDED', 'NO_PROVIDER_AVAILABLE', 'GRADING_FAILED', 'ERASED']) {
      for (const locale of ['en', 'zh'] as const) {
        const words = failureWords(locale, { code, reason: `raw ${code}` });
        expect({ code, locale, words }).not.toEqual({ code, locale, words: `raw ${code}` });
        expect(words).not.toMatch(/[A-Z]{2,}_[A-Z]/);
      }
    }
    expect(failureWords('zh', { code: 'BUDGET_EXHAUSTED', reason: "the tenant's monthly model budget is used up" })).toContain('预算已用完');
    // a code newer than the console: the service's reason
    expect(failureWords('zh', { code: 'SOMETHING_NEW', reason: 'the reason' })).toBe('the reason');
  });

  it('tells an amount of nothing by its digits', () => {
    expect(['0.00', '0', '0.000000', '-0.00', '.0'].map(isZeroAmount)).toEqual([true, true, true, true, true]);
    expect(['0.000001', '5000.00', '', 'abc'].map(isZeroAmount)).toEqual([false, false, false, false]);
    expect(['0.00', '-1.50', ' -0.000001', '0.01', '12'].map(isUsedUpAmount)).toEqual([true, true, true, false, false]);
  });
});
