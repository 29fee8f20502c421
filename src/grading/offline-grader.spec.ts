import { generateEssay } from '../../test/support/essays';
import { essayFeatures, offlineGrade } from './offline-grader';
import { BUILTIN_RUBRICS, isOnStep, Rubric, totalScore } from './rubric';

describe('offline grader', () => {
  it.each(BUILTIN_RUBRICS.map((r) => [r.key, r] as const))('fills every dimension of %s within range, deterministically', (_key, rubric) => {
    const lang = rubric.language === 'zh' ? 'zh' : 'en';
    const text = generateEssay(3, lang).text;
    const g = offlineGrade(text, rubric, lang);
    expect(g.dimensions.map((d) => d.key)).toEqual(rubric.dimensions.map((d) => d.key));
    for (const d of g.dimensions) {
      expect(d.score).toBeGreaterThanOrEqual(0);
      expect(d.score).toBeLessThanOrEqual(d.max);
      expect(isOnStep(d.score, rubric.dimensions.find((x) => x.key === d.key)!.step)).toBe(true);
    }
    expect(g.score).toBe(totalScore(rubric, Object.fromEntries(g.dimensions.map((d) => [d.key, d.score]))));
    expect(g.summary).toMatch(/离线估算|Offline estimate/);
    expect(offlineGrade(text, rubric, lang)).toEqual(g);
    for (const a of g.annotations) expect(text.slice(a.start, a.end)).toBe(a.quote);
  });

  it('scores any rubric, including a tenant rubric with half-point steps', () => {
    const custom: Rubric = {
      key: 'mine',
      version: 2,
      name: 'mine',
      language: 'any',
      totalRule: 'sum',
      expectedLength: { min: 300, max: 600 },
      builtIn: false,
      dimensions: [
        { key: 'a', name: 'A', max: 7, step: 0.5, kind: 'mechanics', description: '' },
        { key: 'b', name: 'B', max: 3, step: 1, kind: 'organization', description: '' },
      ],
    };
    const g = offlineGrade(generateEssay(9, 'zh').text, custom, 'zh');
    expect(g.maxScore).toBe(10);
    expect(g.dimensions).toHaveLength(2);
  });

  it('rewards length, paragraphs and clean punctuation, and notices misuse and repetition', () => {
    const rubric = BUILTIN_RUBRICS[0];
    const good = generateEssay(11, 'zh', { targetChars: 900 }).text;
    const short = '今天天气很好,我们去公园玩。今天天气很好,我们去公园玩。今天天气很好,我们去公园玩。';
    expect(offlineGrade(good, rubric, 'zh').score).toBeGreaterThan(offlineGrade(short, rubric, 'zh').score);
    const f = essayFeatures(short, 'zh');
    expect(f.punctuationIssues.length).toBeGreaterThanOrEqual(3);
    expect(f.repeatedSentences).toHaveLength(2);
    expect(f.paragraphs).toBe(1);
    const fEn = essayFeatures('i think so .It is good,really. It is good,really.', 'en');
    expect(fEn.punctuationIssues.map((p) => p.note)).toEqual(expect.arrayContaining(['"I" should be capitalized', 'missing space after punctuation']));
  });
});
