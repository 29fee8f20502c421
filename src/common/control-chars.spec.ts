import { clip, stripControlChars } from './control-chars';

describe('clip', () => {
  it('keeps at most max UTF-16 units and never half a surrogate pair', () => {
    expect(clip('abc', 5)).toBe('abc');
    expect(clip('abcdef', 3)).toBe('abc');
    expect(clip('ab😀c', 3)).toBe('ab');
    expect(clip('ab😀c', 4)).toBe('ab😀');
    expect(clip('𠀀𠀀', 3)).toBe('𠀀');
  });
});

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
