import type { Language } from './rubric';

/**
 * The longest essay accepted, in characters (a long gaokao essay is ~1,200; an IELTS one ~3,000):
 * Unicode characters, as a person counts them, so an emoji or a rare Han character (CJK Extension B,
 * two UTF-16 units) is one.
 */
export const MAX_ESSAY_CHARS = 20_000;

/** Characters of the text (code points): UTF-16 units less each surrogate pair's second. */
export function charCount(text: string): number {
  let n = text.length;
  for (let i = 0; i + 1 < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}
/** The most essays in one batch. */
export const MAX_BATCH = 200;

/** Essay text is cleaned like every other string the API takes (src/common/control-chars.ts). */
export { stripControlChars } from '../common/control-chars';

/** Blank text (whitespace and invisible characters only) is refused: src/common/invisible.ts. */
export { isBlank } from '../common/invisible';

const CJK = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/g;
const LATIN_WORD = /[A-Za-z]+(?:['’-][A-Za-z]+)*/g;

function isHan(code: number): boolean {
  return (code >= 0x4e00 && code <= 0x9fff) || (code >= 0x3400 && code <= 0x4dbf) || (code >= 0xf900 && code <= 0xfaff);
}

/**
 * Chinese when Han characters outnumber English words (a Chinese essay may quote some English).
 * One pass over at most the first 4,000 characters: enough to tell, cheap on every submission.
 */
export function detectLanguage(text: string): Language {
  let han = 0;
  let words = 0;
  let inWord = false;
  const end = Math.min(text.length, 4_000);
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
    if (letter && !inWord) words++;
    inWord = letter || (inWord && (c === 39 || c === 45 || c === 0x2019) && i + 1 < end && /[A-Za-z]/.test(text[i + 1]));
    if (isHan(c)) han++;
  }
  return han >= words ? (han > 0 ? 'zh' : 'en') : 'en';
}

/**
 * Whether `text` is written in another language than `language` (Han characters against English
 * words, as detectLanguage tells them); false for a text with neither (digits, punctuation).
 */
export function writtenInOther(text: string, language: Language): boolean {
  const detected = detectLanguage(text);
  return detected !== language && essayLength(text, detected) > 0;
}

/** Length in the unit a rubric expects: Han characters for Chinese, words for English. */
export function essayLength(text: string, language: Language): number {
  return language === 'zh' ? (text.match(CJK) ?? []).length : (text.match(LATIN_WORD) ?? []).length;
}

/**
 * Far too short for a model grade: under a tenth of the shortest length the task asks for (under 80
 * characters for an 800-character 高考 task, under 25 words for IELTS Task 2). A model would spend
 * the school's budget to say what the offline grader says for free (it caps content and development
 * far below the expected length), so a standard grading of such an essay is estimated offline and
 * flagged `too_short`.
 */
export function tooShortForModel(text: string, language: Language, expectedLength: { min: number }): boolean {
  const floor = Math.ceil(expectedLength.min / 10);
  return floor > 0 && essayLength(text, language) < floor;
}
