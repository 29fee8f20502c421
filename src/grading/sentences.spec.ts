import { cutHeadTail } from '../llm/compression';
import { numberSentences, sentenceSpans } from './sentences';

describe('sentences, numbered for the model', () => {
  it('ends a sentence at a line break or after its closing marks, and keeps every sentence an exact substring', () => {
    const text = '　　那天下雨了。妈妈来了！！真的吗？\n\n“是的。”他说……好吧\nMr. Li came. It cost 3.5 yuan... OK!';
    const { text: numbered, sentences } = numberSentences(text);
    expect(sentences).toEqual(['那天下雨了。', '妈妈来了！！', '真的吗？', '“是的。”', '他说……', '好吧', 'Mr.', 'Li came.', 'It cost 3.5 yuan...', 'OK!']);
    for (const [s, e] of sentenceSpans(text)) expect(sentences).toContain(text.slice(s, e));
    // Numbers before each sentence; everything else as it was.
    expect(numbered.replace(/\[\d+\]/g, '')).toBe(text);
    expect(numbered.startsWith('　　[1]那天下雨了。[2]妈妈来了！！')).toBe(true);
  });

  it('has nothing to number in blank text, and one sentence in text with no end mark', () => {
    expect(numberSentences(' \n\n\u3000').sentences).toEqual([]);
    expect(numberSentences('没有句号的一句话').text).toBe('[1]没有句号的一句话');
  });

  it("leaves a head-and-tail cut's mark unnumbered: it is not a sentence of the essay", () => {
    const essay = Array.from({ length: 60 }, (_, i) => `第${i}句话。`).join('');
    const cut = cutHeadTail(essay, 200, { perRequest: 0, perMessage: 0 } as never).text;
    expect(cut).toContain('\n[…]\n');
    const { text: numbered, sentences } = numberSentences(cut);
    expect(numbered).toMatch(/\n\[…\]\n\[\d+\]第/);
    expect(sentences.every((s) => /^第\d+句话。$/.test(s))).toBe(true);
    expect(numbered.replace(/\[\d+\]/g, '')).toBe(cut);
    // Only a line of its own is the mark: in a sentence, "[…]" is the student's.
    expect(numberSentences('他说[…]然后走了。').sentences).toEqual(['他说[…]', '然后走了。']);
    expect(numberSentences('  […]  \n下一句。').sentences).toEqual(['下一句。']);
  });

  it('stays linear and bounded on hostile text: 20,000 marks, dots or line breaks', () => {
    expect(numberSentences('！'.repeat(20_000)).sentences).toHaveLength(1);
    expect(numberSentences('\n'.repeat(20_000)).sentences).toHaveLength(0);
    const dots = numberSentences('a. '.repeat(6_000));
    expect(dots.sentences).toHaveLength(6_000);
  });
});
