import { stripControlChars } from './control-chars';

describe('stripControlChars', () => {
  it('drops control characters and keeps tab, newline and every other character', () => {
    expect(stripControlChars('a\u0000b\r\nc\td\u007f\u0085e 作文 😀')).toBe('ab\nc\tde 作文 😀');
  });

  it('writes a lone surrogate as U+FFFD and keeps a pair whole (PostgreSQL json refuses a lone one)', () => {
    expect(stripControlChars('bad \ud800 x')).toBe('bad \ufffd x');
    expect(stripControlChars('\udc00tail')).toBe('\ufffdtail');
    expect(stripControlChars('end\ud83d')).toBe('end\ufffd');
    expect(stripControlChars('pair \ud83d\ude00 ok')).toBe('pair 😀 ok');
  });
});
