import { LIMIT_NAMES } from '../../src/config/tenant-limits';
import { GRADE_FLAGS } from '../../src/grading/grade-flags';
import { translateCode } from './i18n';

describe('an API code in words', () => {
  it('reads the message for the code in the locale', () => {
    expect(translateCode('en', 'flagShort', 'possible_copy')).toBe('Possible copy');
    expect(translateCode('zh', 'flagShort', 'possible_copy')).toBe('疑似抄袭');
    expect(translateCode('en', 'purpose', 'deep_review')).toBe('deep reviews');
  });

  it('shows a code it has no message for as it came, or as the fallback given', () => {
    expect(translateCode('en', 'flagShort', 'new_flag_2027')).toBe('new_flag_2027');
    expect(translateCode('zh', 'purpose', 'toString')).toBe('toString');
    expect(translateCode('en', 'flag', 'new_flag_2027', 'Flag: new_flag_2027')).toBe('Flag: new_flag_2027');
  });
});

describe('grade flags', () => {
  it('has a sentence and a short label for every flag the server sets, in both languages', () => {
    for (const flag of Object.keys(GRADE_FLAGS)) {
      for (const locale of ['en', 'zh'] as const) {
        expect(translateCode(locale, 'flag', flag, 'missing')).not.toBe('missing');
        expect(translateCode(locale, 'flagShort', flag, 'missing')).not.toBe('missing');
      }
    }
  });
});

describe('fair-use limits', () => {
  it("has a name for every limit the server has, in both languages (the dashboard's limits table)", () => {
    for (const name of LIMIT_NAMES) {
      for (const locale of ['en', 'zh'] as const) expect(translateCode(locale, 'limit', name, 'missing')).not.toBe('missing');
    }
    expect(translateCode('zh', 'limit', 'readsInFlight')).toBe('同时读取的列表与导出');
  });
});
