import { getEncoding } from 'js-tiktoken';
import { generateEssay } from '../../test/support/essays';
import { Catalog } from './catalog';
import { countChars, estimatePromptTokens, estimateTextTokens } from './tokens';

const catalog = Catalog.load();
const profile = (name: string) => [...catalog.models.values()].find((m) => m.tokenizer.name === name)!.tokenizer;

describe('token estimate', () => {
  it('counts character classes', () => {
    expect(countChars('ab 中文，ñ😀')).toEqual({ ascii: 3, cjk: 3, otherBmp: 1, astral: 1 });
  });

  // The fake provider and OpenAI count with o200k/cl100k; the estimate must never be below them.
  const o200k = getEncoding('o200k_base');
  const cl100k = getEncoding('cl100k_base');
  const essays = [
    ...Array.from({ length: 40 }, (_, i) => generateEssay(500 + i, 'zh').text),
    ...Array.from({ length: 40 }, (_, i) => generateEssay(900 + i, 'en').text),
    '数字123和English混在一起，还有标点符号！？……——“引号”',
    'Emoji 😀🎉 and rare 𠀀𠀁 characters',
  ];

  it.each(['qwen', 'deepseek', 'glm'])('is an upper bound of o200k counts for the %s family', (name) => {
    const p = profile(name);
    for (const text of essays) {
      const real = o200k.encode(text).length + 4 + 3;
      expect(estimatePromptTokens([{ role: 'user', content: text }], p)).toBeGreaterThanOrEqual(real);
    }
  });

  it('is an upper bound of cl100k and o200k counts for the openai family', () => {
    const p = profile('openai');
    for (const text of essays) {
      const real = Math.max(o200k.encode(text).length, cl100k.encode(text).length) + 4 + 3;
      expect(estimatePromptTokens([{ role: 'user', content: text }], p)).toBeGreaterThanOrEqual(real);
    }
  });

  it('is not wildly above the real count on essays (reservations stay useful)', () => {
    const p = profile('qwen');
    for (const text of essays.slice(0, 80)) {
      expect(estimateTextTokens(text, p)).toBeLessThan(o200k.encode(text).length * 1.6);
    }
  });
});
