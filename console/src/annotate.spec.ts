import { notDrawn, runs } from './annotate';

describe('annotations drawn on the text', () => {
  const text = '今天天气很好，我门去公园玩。';
  it('cuts the text at the annotated characters', () => {
    const out = runs(text, [{ start: 7, end: 9, quote: '我门', category: 'typo' }]);
    expect(out).toEqual([{ text: '今天天气很好，' }, { text: '我门', mark: 0 }, { text: '去公园玩。' }]);
    expect(out.map((r) => r.text).join('')).toBe(text);
  });

  it('places a mark whose offsets are off by its quote, drops one whose quote is absent, and draws the one that starts first where two overlap', () => {
    const out = runs(text, [
      { start: 0, end: 2, quote: '公园', category: 'word_choice' },
      { start: 3, end: 5, quote: '不存在', category: 'grammar' },
      { start: 9, end: 12, quote: '去公园', category: 'highlight' },
    ]);
    expect(out.filter((r) => r.mark !== undefined)).toEqual([{ text: '去公园', mark: 2 }]);
    expect(out.map((r) => r.text).join('')).toBe(text);
  });

  it('lists what it does not draw: a typo inside a sentence marked whole, and a quote not in the text', () => {
    const marks = [
      { start: 0, end: 14, quote: text, category: 'structure' },
      { start: 7, end: 9, quote: '我门', category: 'typo' },
      { start: 3, end: 5, quote: '不存在', category: 'grammar' },
    ];
    expect(runs(text, marks).filter((r) => r.mark !== undefined)).toEqual([{ text, mark: 0 }]);
    expect(notDrawn(text, marks)).toEqual([2, 1]);
    expect(notDrawn(text, [{ start: 7, end: 9, quote: '我门', category: 'typo' }])).toEqual([]);
  });
});
