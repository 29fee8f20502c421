import { lowConfidence } from './escalation';
import { inShadowSample } from './grading.service';
import { builtinRubric } from './rubric';

const gaokao = builtinRubric('zh-gaokao-60')!;
const ielts = builtinRubric('en-ielts-task2')!;

describe('lowConfidence', () => {
  it('is confident in a clean grade far from the pass mark', () => {
    expect(lowConfidence({ score: 40 }, gaokao, new Set(), 30)).toEqual([]);
    expect(lowConfidence({ score: 40 }, gaokao, new Set(['offline_estimate']), null)).toEqual([]);
  });

  it('doubts a grade within one step of the pass mark (the rubric total\'s step)', () => {
    expect(lowConfidence({ score: 36 }, gaokao, new Set(), 36)).toEqual(['near_pass_mark']);
    expect(lowConfidence({ score: 35 }, gaokao, new Set(), 36)).toEqual(['near_pass_mark']);
    expect(lowConfidence({ score: 34 }, gaokao, new Set(), 36)).toEqual([]);
    // IELTS totals move in half bands: 6.5 is one step from 6, 7 is not.
    expect(lowConfidence({ score: 6.5 }, ielts, new Set(), 6)).toEqual(['near_pass_mark']);
    expect(lowConfidence({ score: 7 }, ielts, new Set(), 6)).toEqual([]);
  });

  it('doubts a repaired answer and a grade flagged as a possible copy or a steering attempt', () => {
    expect(lowConfidence({ score: 50, repaired: true }, gaokao, new Set(['possible_copy', 'prompt_injection_suspected']), null)).toEqual([
      'repaired',
      'prompt_injection_suspected',
      'possible_copy',
    ]);
  });
});

describe('inShadowSample', () => {
  it('takes no essay at rate 0 and the rate\'s share of essays otherwise, the same ones every time', () => {
    const spread = Array.from({ length: 2000 }, (_, i) => `${Math.floor((i / 2000) * 0xffffffff).toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`);
    expect(spread.filter((id) => inShadowSample(id, 0))).toEqual([]);
    // Ids spread evenly over the first 32 bits: 10% of them, give or take the edge.
    expect(Math.abs(spread.filter((id) => inShadowSample(id, 0.1)).length - 200)).toBeLessThanOrEqual(1);
    expect(spread.filter((id) => inShadowSample(id, 0.1))).toEqual(spread.filter((id) => inShadowSample(id, 0.1)));
  });
});
