/**
 * No super-linear work on user input: every text function that sees user text is fed each
 * hostile input (test/support/hostile-inputs.ts) and must take at most 50 × the time it takes on
 * an ordinary essay text of the same length, plus 50 ms. The bound is generous on purpose, so it
 * never flakes on a loaded machine; a quadratic regular expression misses it by orders of
 * magnitude (20,000 spaces through the old chat normaliser: ~1 s against well under 1 ms).
 */
import { extractJson, locateQuote } from '../src/grading/grade-validation';
import { detectLanguage, essayLength, isBlank, stripControlChars } from '../src/grading/essay-text';
import { detectInjection } from '../src/grading/injection';
import { minhash, shingles } from '../src/grading/near-duplicate';
import { offlineGrade } from '../src/grading/offline-grader';
import { buildGradingPrompt } from '../src/grading/prompts';
import { builtinRubric } from '../src/grading/rubric';
import { Catalog } from '../src/llm/catalog';
import { normalizeChatContent, parseChatRequest } from '../src/llm/chat-request';
import { cutHeadTail, normalizeForKey, normalizeText } from '../src/llm/compression';
import { estimatePromptTokens } from '../src/llm/tokens';
import { benignText, hostileInputs } from './support/hostile-inputs';

const rubric = builtinRubric('zh-gaokao-60')!;
const englishRubric = builtinRubric('en-general-100')!;
const tokenizer = Catalog.load().models.get('dashscope:qwen-flash')!.tokenizer;

/**
 * A quote as a model might return it for this text: a passage from its start with the whitespace
 * changed, and words at the end that are not in the text, so the search has to try everything.
 */
function quoteFor(text: string): string {
  return text.slice(0, 400).trim().split(/\s+/).join(' ') + ' zz qq';
}

const SUBJECTS: Array<[string, (text: string) => unknown]> = [
  ['normalizeChatContent (chat-request)', (t) => normalizeChatContent(t)],
  ['parseChatRequest (chat-request)', (t) => parseChatRequest({ model: 'inkstone-standard', messages: [{ role: 'user', content: t }] })],
  ['detectInjection (injection)', (t) => detectInjection(t, t.slice(0, 500))],
  ['buildGradingPrompt, the fence (prompts)', (t) => buildGradingPrompt({ rubric, language: 'zh', variant: 'standard', essay: t, title: t.slice(0, 200) })],
  ['locateQuote (grade-validation)', (t) => locateQuote(t, quoteFor(t))],
  ['extractJson (grade-validation)', (t) => extractJson(t)],
  ['stripControlChars + isBlank (essay-text)', (t) => isBlank(stripControlChars(t))],
  ['detectLanguage + essayLength (essay-text)', (t) => [essayLength(t, detectLanguage(t)), essayLength(t, 'en'), essayLength(t, 'zh')]],
  ['shingles + minhash (near-duplicate)', (t) => minhash(shingles(t))],
  ['normalizeText + normalizeForKey (compression)', (t) => [normalizeText(t), normalizeForKey(t)]],
  ['cutHeadTail (compression)', (t) => cutHeadTail(t, 800, tokenizer)],
  ['estimatePromptTokens (tokens)', (t) => estimatePromptTokens([{ role: 'user', content: t }], tokenizer)],
  ['offlineGrade, its features and annotations (offline-grader)', (t) => [offlineGrade(t, rubric, 'zh'), offlineGrade(t, englishRubric, 'en')]],
];

function timed(fn: (t: string) => unknown, text: string): number {
  const t0 = performance.now();
  fn(text);
  return performance.now() - t0;
}

/** The typical time on ordinary text: the median of three runs after a warm-up. */
function benignMs(fn: (t: string) => unknown, n: number): number {
  const text = benignText(n);
  fn(text);
  const runs = [timed(fn, text), timed(fn, text), timed(fn, text)].sort((a, b) => a - b);
  return runs[1];
}

// Twice the longest essay: a quadratic function shows at four times its cost at the limit.
const inputs = hostileInputs(40_000);

describe('no super-linear work on hostile input (≤ 50 × an ordinary text of the same length + 50 ms)', () => {
  it('has hostile inputs of the kinds the contract names', () => {
    const names = inputs.map((i) => i.name).join('\n');
    for (const kind of ['spaces', 'tabs', 'newlines', 'mixed whitespace', '<essay', '</essay', 'system', '200,000', 'nesting', 'surrogates', 'NUL', 'bidi', 'zero-width', 'combining', 'ZWJ', '忽略', 'base64']) {
      expect(names).toContain(kind);
    }
    expect(inputs.find((i) => i.name.includes('200,000'))!.text).toHaveLength(200_000);
  });

  it.each(SUBJECTS)('%s', (_name, fn) => {
    const slow: string[] = [];
    const benign = new Map<number, number>();
    for (const input of inputs) {
      const n = input.text.length;
      if (!benign.has(n)) benign.set(n, benignMs(fn, n));
      const bound = 50 * benign.get(n)! + 50;
      let took = timed(fn, input.text);
      if (took > bound) took = Math.min(took, timed(fn, input.text)); // a GC pause cannot hit both runs
      if (took > bound) slow.push(`${input.name}: ${took.toFixed(1)} ms > ${bound.toFixed(1)} ms`);
    }
    expect(slow).toEqual([]);
  });
});
