import { BUILTIN_RUBRICS, builtinRubric, maxScore, totalScore } from './rubric';

describe('rubric totals', () => {
  const ielts = builtinRubric('en-ielts-task2')!;
  const gaokao = builtinRubric('zh-gaokao-60')!;
  const ieltsScores = (a: number, b: number, c: number, d: number) => ({
    task_response: a,
    coherence_cohesion: b,
    lexical_resource: c,
    grammatical_range_accuracy: d,
  });

  it.each([
    [[6, 6, 6, 6], 6],
    [[6, 6, 6, 7], 6.5], // mean 6.25 rounds up to 6.5
    [[6, 6, 7, 7], 6.5], // 6.5 stays
    [[6, 7, 7, 7], 7], // mean 6.75 rounds up to 7
    [[5, 6, 6, 6], 6], // 5.75 → 6
    [[9, 9, 9, 8], 9], // 8.75 → 9
    [[0, 0, 0, 1], 0.5], // 0.25 → 0.5
    [[4, 4, 5, 4], 4.5],
  ])('IELTS overall of %j is %d (floor(mean × 2 + 0.5) / 2)', (s, want) => {
    expect(totalScore(ielts, ieltsScores(s[0], s[1], s[2], s[3]))).toBe(want);
  });

  it('sums gaokao dimensions out of 60', () => {
    expect(totalScore(gaokao, { content: 17, expression: 16, development: 12 })).toBe(45);
    expect(maxScore(gaokao)).toBe(60);
    expect(maxScore(ielts)).toBe(9);
    expect(maxScore(builtinRubric('en-general-100')!)).toBe(100);
  });

  it('ships the built-ins the spec names, each dimension with a kind', () => {
    expect(BUILTIN_RUBRICS.map((r) => r.key)).toEqual(['zh-gaokao-60', 'en-ielts-task2', 'en-general-100']);
    expect(gaokao.dimensions.map((d) => [d.name, d.max])).toEqual([
      ['内容', 20],
      ['表达', 20],
      ['发展', 20],
    ]);
  });
});
