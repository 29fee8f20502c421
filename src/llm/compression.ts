import type { TokenizerProfile } from './catalog';
import { estimateTextTokens } from './tokens';

/**
 * Prompt compression that never changes what a text says.
 *
 * - `normalizeText` removes what carries no meaning: zero-width characters and the BOM, CR line
 *   endings, trailing and repeated spaces, indentation, runs of blank lines. With
 *   `compatibility: true` it also applies Unicode NFKC (full-width Latin letters and digits, and
 *   also full-width punctuation, become their ASCII forms). The cache key uses NFKC; prompts do
 *   not, because in a Chinese essay "，" against "," is exactly the kind of mistake a teacher marks,
 *   and annotations must quote the essay as written.
 * - `compactJson` writes structured instructions without whitespace.
 * - `cutHeadTail` keeps the beginning and the end of an over-long text and always says it did.
 */
const ZERO_WIDTH = /[\u200B-\u200D\u2060\uFEFF\u00AD]/g;
const HORIZONTAL_SPACE = /[ \t\u00A0\u3000\u2000-\u200A\u202F\u205F]+/g;

/** The most combining marks kept in a row (Unicode's stream-safe text format allows 30). */
export const MAX_MARKS_IN_A_ROW = 30;
/**
 * A run of combining marks, with the two characters that are not marks but decompose to one under
 * NFKC/NFKD (U+FF9E, U+FF9F: half-width katakana voiced marks, to U+3099, U+309A): alternated with
 * marks, they made a run normalization sees whole that the cut did not (20,000 characters: 0.1–0.4 s
 * a normalization, and an essay is normalized several times).
 */
const MARK_RUN = /[\p{M}\uFF9E\uFF9F]+/gu;

/**
 * `String.prototype.normalize` with runs of combining marks cut to 30 first: reordering a long run
 * of marks of different classes is quadratic (80,000 of them take seconds), and no writing system
 * stacks more than a handful on one letter.
 */
export function normalizeBounded(text: string, form: 'NFC' | 'NFD' | 'NFKC' | 'NFKD'): string {
  const cut = text.replace(MARK_RUN, (run) => (run.length > MAX_MARKS_IN_A_ROW ? [...run].slice(0, MAX_MARKS_IN_A_ROW).join('') : run));
  return cut.normalize(form);
}

export function normalizeText(text: string, opts: { compatibility?: boolean } = {}): string {
  let t = text.replace(ZERO_WIDTH, '').replace(/\r\n?/g, '\n');
  t = normalizeBounded(t, opts.compatibility ? 'NFKC' : 'NFC');
  t = t
    .split('\n')
    .map((line) => line.replace(HORIZONTAL_SPACE, ' ').trim())
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
  return t;
}

const HAN = /[\u3400-\u4dbf\u4e00-\u9fff]/g;
const LATIN = /[A-Za-z]/g;

/**
 * The essay as the exact cache and the near-duplicate index see it: blank lines between paragraphs
 * do not count; in Chinese text spaces carry no meaning and are dropped entirely; in other text
 * they are collapsed.
 */
export function normalizeForKey(text: string): string {
  const t = normalizeText(text, { compatibility: true }).replace(/\n+/g, '\n');
  const han = (t.match(HAN) ?? []).length;
  return han > (t.match(LATIN) ?? []).length ? t.replace(/ +/g, '') : t;
}

export function compactJson(value: unknown): string {
  return JSON.stringify(value);
}

export interface CutResult {
  text: string;
  truncated: boolean;
  /** characters left out of the middle */
  removedChars: number;
}

/**
 * Keeps about two thirds of the budget from the head and one third from the tail, cut at line or
 * sentence ends where possible, with a marker where the middle was. `truncated` is true whenever
 * anything was removed; the caller must flag the result.
 */
/** What stands where the middle of a cut text was, on a line of its own. */
export const CUT_MARK = '[…]';

export function cutHeadTail(text: string, maxTokens: number, profile: TokenizerProfile, marker = `\n${CUT_MARK}\n`): CutResult {
  if (estimateTextTokens(text, profile) <= maxTokens) return { text, truncated: false, removedChars: 0 };
  const budget = Math.max(0, maxTokens - estimateTextTokens(marker, profile));
  const headBudget = Math.floor((budget * 2) / 3);
  const tailBudget = budget - headBudget;
  let headEnd = prefixWithin(text, headBudget, profile);
  let tailStart = text.length - prefixWithin([...text].reverse().join(''), tailBudget, profile);
  headEnd = snapBack(text, headEnd);
  tailStart = snapForward(text, tailStart);
  // Never between the two halves of a surrogate pair (an emoji, a rare Han character): a lone half is
  // not text, and a provider may refuse the body. Each side gives up the half it would have kept.
  if (isLowSurrogate(text.charCodeAt(headEnd)) && isHighSurrogate(text.charCodeAt(headEnd - 1))) headEnd--;
  if (isLowSurrogate(text.charCodeAt(tailStart)) && isHighSurrogate(text.charCodeAt(tailStart - 1))) tailStart++;
  if (tailStart <= headEnd) tailStart = headEnd;
  return {
    text: text.slice(0, headEnd) + marker + text.slice(tailStart),
    truncated: true,
    removedChars: tailStart - headEnd,
  };
}

/** The longest prefix length (in UTF-16 units) whose estimate fits the budget (binary search). */
function prefixWithin(text: string, budget: number, profile: TokenizerProfile): number {
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (estimateTextTokens(text.slice(0, mid), profile) <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

const BREAKS = /[\n。！？.!?]/;

const isHighSurrogate = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;
const isLowSurrogate = (c: number): boolean => c >= 0xdc00 && c <= 0xdfff;

function snapBack(text: string, end: number): number {
  for (let i = end; i > Math.max(0, end - 200); i--) if (BREAKS.test(text[i - 1] ?? '')) return i;
  return end;
}

function snapForward(text: string, start: number): number {
  for (let i = start; i < Math.min(text.length, start + 200); i++) if (BREAKS.test(text[i - 1] ?? '')) return i;
  return start;
}

/** Tokens a compressed text saves against its original, by the model family's estimate. */
export function tokensSaved(original: string, compressed: string, profile: TokenizerProfile): number {
  return Math.max(0, estimateTextTokens(original, profile) - estimateTextTokens(compressed, profile));
}

/**
 * The prompt tokens compression saved a call, as its provider counts tokens: what it saved in the
 * bound (tokens.ts: bytes, 3–6× a real count) scaled by the call's own counted input over its
 * bound. The removed text (spaces, blank lines, invisible characters, JSON layout) is taken to
 * tokenize as densely as what was sent. No count (the call failed without usage): nothing was
 * billed, so nothing was saved.
 */
export function countedSaving(boundSaved: number, sentBound: number, countedInput: number | undefined): number {
  if (countedInput === undefined || boundSaved <= 0 || sentBound <= 0) return 0;
  return Math.round((boundSaved * countedInput) / sentBound);
}
