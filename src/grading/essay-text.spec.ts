import { detectLanguage, essayLength, isBlank, stripControlChars, tooShortForModel, writtenInOther } from './essay-text';

describe('essay text', () => {
  it('keeps the text as sent, control characters aside', () => {
    expect(stripControlChars('第一段\r\n\t第二段\u0000\u0007\u001b[31m\u007f')).toBe('第一段\n\t第二段[31m');
  });

  it('knows blank text', () => {
    expect(isBlank(' \n\t\u3000\u200B')).toBe(true);
    expect(isBlank(' a ')).toBe(false);
    // Bidi marks and overrides, invisible operators, fillers, the soft hyphen: a broken paste, not an essay.
    for (const only of ['\u200E\u200F\u202A\u202E', '\u2061\u2062\u2063\u2064\u180E\u034F\u00AD', '\u3164\uFFA0\u115F', '\u{E0041}\u{E0042}']) expect([only, isBlank(only)]).toEqual([only, true]);
    expect(isBlank('\u202Eا')).toBe(false);
    // Unpaired surrogates (made U+FFFD by stripControlChars) and the Braille blank: nothing to grade.
    expect(isBlank(stripControlChars('\ud800 \udc00\ud800'))).toBe(true);
    expect(isBlank('\u2800\u2800 \u3164')).toBe(true);
    expect(isBlank('\uFFFD好')).toBe(false);
  });

  it('detects the language', () => {
    expect(detectLanguage('我的妈妈是一位老师。She teaches English.')).toBe('zh');
    expect(detectLanguage('Technology changes how we learn. 科技')).toBe('en');
    expect(detectLanguage('12345')).toBe('en');
  });

  it('measures length in characters for Chinese and words for English', () => {
    expect(essayLength('我爱北京，天安门。', 'zh')).toBe(7);
    expect(essayLength("It's a well-known fact.", 'en')).toBe(4);
  });
});

describe('tooShortForModel', () => {
  it('is under a tenth of the shortest length the task asks for, in its own unit', () => {
    expect(tooShortForModel('好'.repeat(79), 'zh', { min: 800 })).toBe(true);
    expect(tooShortForModel('好'.repeat(80), 'zh', { min: 800 })).toBe(false);
    // English counts words, not letters.
    expect(tooShortForModel('word '.repeat(24), 'en', { min: 250 })).toBe(true);
    expect(tooShortForModel('word '.repeat(25), 'en', { min: 250 })).toBe(false);
    expect(tooShortForModel('a'.repeat(500), 'en', { min: 250 })).toBe(true);
  });

  it('never holds back an essay from a task with no minimum', () => {
    expect(tooShortForModel('好', 'zh', { min: 0 })).toBe(false);
    expect(tooShortForModel('hi', 'en', { min: 5 })).toBe(false);
  });
});

describe('writtenInOther', () => {
  it('tells an essay written in the other language than it is graded in, and not one that quotes some or has no words at all', () => {
    expect(writtenInOther('My summer holiday was long and I read many books.', 'zh')).toBe(true);
    expect(writtenInOther('我的暑假很长，我读了很多书。', 'en')).toBe(true);
    expect(writtenInOther('我的暑假很长，我读了 Harry Potter 和很多书。', 'zh')).toBe(false);
    expect(writtenInOther('My summer holiday was long and I read many books.', 'en')).toBe(false);
    expect(writtenInOther('12345 —— !!!', 'zh')).toBe(false);
  });
});
