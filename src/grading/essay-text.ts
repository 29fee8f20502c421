import type { Language } from './rubric';

/** The longest essay accepted, in characters (a long gaokao essay is ~1,200; an IELTS one ~3,000). */
export const MAX_ESSAY_CHARS = 20_000;
/** The most essays in one batch. */
export const MAX_BATCH = 200;

/**
 * The text as sent, minus control characters: C0 controls other than tab and newline (a CR is
 * dropped, so CRLF becomes LF), DEL, and C1 controls.
 */
export function stripControlChars(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g, '');
}

/** Blank means nothing but whitespace (including the ideographic space and zero-width characters). */
export function isBlank(text: string): boolean {
  return text.replace(/[\s\u200B-\u200D\u2060\uFEFF]/g, '').length === 0;
}

const CJK = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/g;
const LATIN_WORD = /[A-Za-z]+(?:['’-][A-Za-z]+)*/g;

/** Chinese when Han characters outnumber English words (a Chinese essay may quote some English). */
export function detectLanguage(text: string): Language {
  const han = (text.match(CJK) ?? []).length;
  const words = (text.match(LATIN_WORD) ?? []).length;
  return han >= words ? (han > 0 ? 'zh' : 'en') : 'en';
}

/** Length in the unit a rubric expects: Han characters for Chinese, words for English. */
export function essayLength(text: string, language: Language): number {
  return language === 'zh' ? (text.match(CJK) ?? []).length : (text.match(LATIN_WORD) ?? []).length;
}
