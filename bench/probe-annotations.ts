/**
 * How long validateGrade holds the event loop for an answer whose remarks point at words not in
 * their sentence, on an essay that is one long sentence (the worst case for the in-sentence search):
 * random Han characters, 19,000 of them and one full stop; 1 to 1,000 remarks.
 *
 *   npx ts-node --transpile-only bench/probe-annotations.ts
 */
import { validateGrade } from '../src/grading/grade-validation';
import { buildGradingPrompt } from '../src/grading/prompts';
import { builtinRubric } from '../src/grading/rubric';

const gaokao = builtinRubric('zh-gaokao-60')!;
let seed = 7;
const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
let text = '';
for (let i = 0; i < 19_000; i++) text += String.fromCodePoint(0x4e00 + Math.floor(rnd() * 20_000));
text += '。';
const { sentences } = buildGradingPrompt({ rubric: gaokao, language: 'zh', variant: 'standard', essay: text });
validateGrade('{}', gaokao, text, 'standard', sentences); // warm
for (const n of [1, 30, 150, 1000]) {
  const annotations = Array.from({ length: n }, (_, i) => ({ s: 1, words: `zz${i}`, category: 'typo', suggestion: '', explanation: '' }));
  const content = JSON.stringify({ dimensions: gaokao.dimensions.map((d) => ({ key: d.key, score: 10, reason: 'r' })), summary: 's', strengths: [], improvements: [], annotations });
  const runs: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    validateGrade(content, gaokao, text, 'standard', sentences);
    runs.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  runs.sort((a, b) => a - b);
  console.log(JSON.stringify({ remarks: n, medianMs: Math.round(runs[1] * 10) / 10 }));
}
