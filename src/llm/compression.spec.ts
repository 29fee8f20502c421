import { Catalog } from './catalog';
import { compactJson, countedSaving, cutHeadTail, normalizeBounded, normalizeForKey, normalizeText, tokensSaved } from './compression';
import { estimateTextTokens } from './tokens';

const qwen = Catalog.load().models.get('dashscope:qwen-flash')!.tokenizer;

describe('normalizeText', () => {
  it('removes zero-width characters and the BOM, unifies line ends, collapses spaces and blank lines', () => {
    const raw = '\uFEFF\u3000\u3000今天\u200B天气很好。  \r\n\r\n\r\n\r\n\t第二段  文字\u00A0\u00A0结束。 \r\n';
    expect(normalizeText(raw)).toBe('今天天气很好。\n\n第二段 文字 结束。');
  });

  it('keeps full-width punctuation in prompts but folds it for the cache key (NFKC)', () => {
    const text = '我们，来了！ＡＢＣ１２３';
    expect(normalizeText(text)).toBe('我们，来了！ＡＢＣ１２３');
    expect(normalizeForKey(text)).toBe('我们,来了!ABC123');
  });

  it('gives the same key for texts that differ only in invisible ways', () => {
    expect(normalizeForKey('Hello  world\r\n')).toBe(normalizeForKey('\uFEFFHello world\u200B'));
    expect(normalizeForKey('第一段。\n第二段。')).toBe(normalizeForKey('第一段。\n\n\n第二段。 '));
    expect(normalizeForKey('Hello world')).not.toBe(normalizeForKey('Hello, world'));
  });
});

describe('normalizeBounded', () => {
  it('normalizes as String.prototype.normalize does, with runs of more than 30 combining marks cut to 30', () => {
    expect(normalizeBounded('e\u0301 ｅ', 'NFKC')).toBe('é e');
    const zalgo = 'a' + '\u0301\u0316'.repeat(20_000);
    const out = normalizeBounded(zalgo, 'NFC');
    expect([...out].length).toBe(1 + 30 - 1); // a and one mark compose; 29 marks stay
    expect(normalizeBounded('a' + '\u0301'.repeat(30), 'NFD')).toBe('a' + '\u0301'.repeat(30));
    // Half-width voiced marks are not marks but become one under compatibility forms: cut with the run too.
    expect([...normalizeBounded('a' + '\uFF9E\u0300'.repeat(10_000), 'NFKD')].length).toBe(1 + 30);
    expect(normalizeBounded('ｶﾞ', 'NFKC')).toBe('ガ');
  });
});

describe('cutHeadTail', () => {
  const long = Array.from({ length: 200 }, (_, i) => `第${i}句话写在这里。`).join('');

  it('leaves a text that fits alone', () => {
    expect(cutHeadTail('短文。', 100, qwen)).toEqual({ text: '短文。', truncated: false, removedChars: 0 });
  });

  it('keeps the head and the tail within the budget and always flags the cut', () => {
    const r = cutHeadTail(long, 300, qwen);
    expect(r.truncated).toBe(true);
    expect(r.removedChars).toBeGreaterThan(0);
    expect(estimateTextTokens(r.text, qwen)).toBeLessThanOrEqual(300);
    expect(r.text.startsWith('第0句话')).toBe(true);
    expect(r.text.endsWith('第199句话写在这里。')).toBe(true);
    expect(r.text).toContain('[…]');
    expect(r.text.length + r.removedChars).toBe(long.length + '\n[…]\n'.length);
  });

  it('never splits a surrogate pair, at any budget (an essay of emoji and rare Han characters)', () => {
    const loneHalf = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
    const astral = '😀𠀀🎉𪚥'.repeat(60);
    for (let budget = 20; budget < 60; budget++) {
      const r = cutHeadTail(astral, budget, qwen);
      expect(r.truncated).toBe(true);
      expect(r.text).not.toMatch(loneHalf);
      expect(estimateTextTokens(r.text, qwen)).toBeLessThanOrEqual(budget);
      expect(r.text.length + r.removedChars).toBe(astral.length + '\n[…]\n'.length);
    }
  });
});

describe('compact instructions', () => {
  it('writes JSON without whitespace, and counts the tokens that saves', () => {
    const rubric = { key: 'zh-gaokao-60', dimensions: [{ key: 'content', max: 20 }] };
    const pretty = JSON.stringify(rubric, null, 2);
    expect(compactJson(rubric)).toBe('{"key":"zh-gaokao-60","dimensions":[{"key":"content","max":20}]}');
    expect(tokensSaved(pretty, compactJson(rubric), qwen)).toBeGreaterThan(0);
    expect(tokensSaved('abc', 'abcdef', qwen)).toBe(0);
  });
});

describe('countedSaving', () => {
  it("states a saving in the bound's bytes as the provider's tokens: scaled by the call's counted input over its bound", () => {
    // A Chinese prompt of 3,000 bytes the provider counted as 1,000 tokens; compression took 600 bytes off.
    expect(countedSaving(600, 3_000, 1_000)).toBe(200);
    expect(countedSaving(601, 3_000, 1_000)).toBe(200); // rounded to a whole token
    // An estimated count (no usage reported) is the bound itself: the saving stays as bounded.
    expect(countedSaving(600, 3_000, 3_000)).toBe(600);
  });

  it('claims nothing when nothing was saved or billed', () => {
    expect(countedSaving(0, 3_000, 1_000)).toBe(0);
    expect(countedSaving(600, 3_000, undefined)).toBe(0);
    expect(countedSaving(600, 0, 10)).toBe(0);
  });
});
