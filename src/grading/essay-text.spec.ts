import { detectLanguage, essayLength, isBlank, stripControlChars } from './essay-text';

describe('essay text', () => {
  it('keeps the text as sent, control characters aside', () => {
    expect(stripControlChars('第一段\r\n\t第二段\u0000\u0007\u001b[31m\u007f')).toBe('第一段\n\t第二段[31m');
  });

  it('knows blank text', () => {
    expect(isBlank(' \n\t\u3000\u200B')).toBe(true);
    expect(isBlank(' a ')).toBe(false);
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
