import { getEncoding } from 'js-tiktoken';
import { generateEssay, rng } from '../../test/support/essays';
import { Catalog } from './catalog';
import { estimatePromptTokens, estimateTextTokens, utf8Bytes } from './tokens';

const catalog = Catalog.load();
const profile = (name: string) => [...catalog.models.values()].find((m) => m.tokenizer.name === name)!.tokenizer;

/** Texts built to make a tokenizer spend as many tokens as it can (short: js-tiktoken is slow on long unbroken pieces). */
function adversarial(): Record<string, string> {
  const r = rng(2026);
  const pick = (alphabet: string, n: number) => Array.from({ length: n }, () => alphabet[Math.floor(r() * alphabet.length)]).join('');
  const codePoints = (from: number, to: number, n: number) => Array.from({ length: n }, () => String.fromCodePoint(from + Math.floor(r() * (to - from)))).join('');
  return {
    'random ASCII symbols': pick('!@#$%^&*()_+-=[]{}|;:\'",.<>/?`~\\', 800),
    'random printable ASCII': pick(Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join(''), 800),
    base64: Buffer.from(Array.from({ length: 600 }, () => Math.floor(r() * 256))).toString('base64'),
    hex: Buffer.from(Array.from({ length: 400 }, () => Math.floor(r() * 256))).toString('hex'),
    digits: pick('0123456789', 800),
    'emoji and ZWJ sequences': Array.from({ length: 200 }, () => `${codePoints(0x1f300, 0x1faff, 1)}\u200d${codePoints(0x1f300, 0x1faff, 1)}\ufe0f`).join(''),
    'rare Han (extension B)': codePoints(0x20000, 0x2a6df, 400),
    'common Han': codePoints(0x4e00, 0x9fff, 600),
    'combining marks': Array.from({ length: 300 }, () => `a${codePoints(0x300, 0x36f, 3)}`).join(''),
    'lone surrogates': Array.from({ length: 500 }, () => (r() < 0.5 ? '\ud800' : '\udfff')).join(''),
    'mixed scripts': codePoints(0x600, 0x6ff, 150) + codePoints(0x900, 0x97f, 150) + codePoints(0xe00, 0xe7f, 150) + codePoints(0x400, 0x4ff, 150),
    'private use and specials': codePoints(0xe000, 0xf8ff, 400) + codePoints(0xfff0, 0xfffd, 100),
    'whitespace runs': pick(' \t\n\r\u3000\u00a0', 1000),
    'control characters': codePoints(0x1, 0x1f, 800),
  };
}

describe('token upper bound (byte-level BPE: a token is at least one byte)', () => {
  const o200k = getEncoding('o200k_base');
  const cl100k = getEncoding('cl100k_base');
  const real = (text: string) => Math.max(o200k.encode(text).length, cl100k.encode(text).length);

  it('counts UTF-8 bytes exactly, lone surrogates as the replacement character', () => {
    for (const s of ['', 'abc', 'ñé', '中文，', '😀', '𠀀', 'a\ud800b', '\udfff', 'x\ud83d', Object.values(adversarial()).join('')]) {
      expect(utf8Bytes(s)).toBe(Buffer.byteLength(s, 'utf8'));
    }
  });

  it.each(Object.entries(adversarial()))('is never below the real count on %s', (_name, text) => {
    const count = real(text);
    for (const family of ['qwen', 'deepseek', 'glm', 'openai']) {
      const p = profile(family);
      expect(estimateTextTokens(text, p)).toBeGreaterThanOrEqual(count);
      // With the chat framing (OpenAI's: 4 a message, 3 a request), the prompt bound holds too.
      expect(estimatePromptTokens([{ role: 'user', content: text }], p)).toBeGreaterThanOrEqual(count + 4 + 3);
    }
  });

  const essays = [...Array.from({ length: 10 }, (_, i) => generateEssay(500 + i, 'zh').text), ...Array.from({ length: 10 }, (_, i) => generateEssay(900 + i, 'en').text)];

  it('holds on essays, with a margin that keeps reservations useful (under 8× the real count)', () => {
    const p = profile('qwen');
    for (const text of essays) {
      const bound = estimateTextTokens(text, p);
      const count = real(text);
      expect(bound).toBeGreaterThanOrEqual(count);
      expect(bound).toBeLessThan(count * 8);
    }
  });

  it('adds the chat template per message and per request', () => {
    const p = profile('deepseek');
    const messages = [
      { role: 'system' as const, content: 'abc' },
      { role: 'user' as const, content: '中文' },
    ];
    expect(estimatePromptTokens(messages, p)).toBe(p.perRequest + 2 * p.perMessage + 3 + 6);
  });
});
