import { translate } from './i18n';
import { readThresholds, thresholdsToText } from './thresholds';

describe('alert thresholds as typed: percentages of the cap', () => {
  it('reads percentages, with or without %, in any separator, sorted and once each', () => {
    expect(readThresholds('80, 100')).toEqual({ ok: true, fractions: [0.8, 1], percents: ['80', '100'] });
    expect(readThresholds('100%，80％ 50、80')).toEqual({ ok: true, fractions: [0.5, 0.8, 1], percents: ['50', '80', '100'] });
    expect(readThresholds('92.5, 99.99')).toEqual({ ok: true, fractions: [0.925, 0.9999], percents: ['92.5', '99.99'] });
    expect(readThresholds('  ')).toEqual({ ok: true, fractions: [], percents: [] });
  });

  it('refuses a fraction (0.8 is not 0.8 %), saying what was probably meant, in both languages', () => {
    const read = readThresholds('0.8, 1');
    expect(read).toEqual({ ok: false, problem: 'thresholdFraction', vars: { value: '0.8', pct: '80' } });
    if (read.ok) throw new Error('read');
    expect(translate('en', read.problem, read.vars)).toContain('80');
    expect(translate('zh', read.problem, read.vars)).toContain('80');
    expect(readThresholds('0.955')).toMatchObject({ ok: false, vars: { pct: '95.5' } });
    expect(readThresholds('0.05')).toMatchObject({ ok: false, vars: { pct: '5' } });
  });

  it('refuses what the API would refuse or read otherwise', () => {
    expect(readThresholds('120')).toMatchObject({ ok: false, problem: 'thresholdRange' });
    expect(readThresholds('0')).toMatchObject({ ok: false, problem: 'thresholdRange' });
    expect(readThresholds('80.125')).toMatchObject({ ok: false, problem: 'thresholdPrecision' });
    expect(readThresholds('eighty')).toMatchObject({ ok: false, problem: 'thresholdNotNumber', vars: { value: 'eighty' } });
    expect(readThresholds('-5')).toMatchObject({ ok: false, problem: 'thresholdNotNumber' });
    expect(readThresholds('1 2 3 4 5 6 7 8 9 10 11')).toMatchObject({ ok: false, problem: 'thresholdTooMany' });
  });

  it('shows the saved fractions as the percentages the field takes', () => {
    expect(thresholdsToText([0.8, 1])).toBe('80, 100');
    const back = readThresholds(thresholdsToText([0.5, 0.925, 1]));
    expect(back).toMatchObject({ ok: true, fractions: [0.5, 0.925, 1] });
  });
});
