import type { TokenizerProfile } from './catalog';
import type { ChatMessage } from './types';

/**
 * Upper-bound token estimates, used to reserve budget before a call. Each tokenizer family has
 * coefficients in the catalog (tokens per CJK character, per other character, per message, per
 * request), calibrated against real tokenizers on Chinese and English essays (see
 * bench/calibrate-tokens.ts and tokens.spec.ts). After the call, the provider's own count is what
 * is billed; the estimate only has to be high enough, and not much higher.
 */
export interface CharCounts {
  /** Han, kana, hangul, CJK punctuation and full-width forms */
  cjk: number;
  /** ASCII */
  ascii: number;
  /** other characters of the Basic Multilingual Plane (accents, Cyrillic, symbols…) */
  otherBmp: number;
  /** characters outside the BMP (emoji, rare Han): up to 4 UTF-8 bytes, so up to 4 tokens */
  astral: number;
}

export function countChars(text: string): CharCounts {
  const c: CharCounts = { cjk: 0, ascii: 0, otherBmp: 0, astral: 0 };
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) c.ascii++;
    else if (code >= 0xd800 && code <= 0xdbff) {
      c.astral++;
      i++; // the low surrogate
    } else if (isCjk(code)) c.cjk++;
    else c.otherBmp++;
  }
  return c;
}

function isCjk(code: number): boolean {
  return (
    (code >= 0x4e00 && code <= 0x9fff) || // CJK unified ideographs
    (code >= 0x3400 && code <= 0x4dbf) || // extension A
    (code >= 0x3000 && code <= 0x30ff) || // CJK punctuation, hiragana, katakana
    (code >= 0xff00 && code <= 0xffef) || // full-width forms
    (code >= 0xac00 && code <= 0xd7af) || // hangul
    (code >= 0xf900 && code <= 0xfaff) // compatibility ideographs
  );
}

export function estimateTextTokens(text: string, p: TokenizerProfile): number {
  const c = countChars(text);
  return Math.ceil(c.cjk * p.cjkPerChar + c.otherBmp * Math.max(p.cjkPerChar, 1) + c.ascii * p.otherPerChar + c.astral * 4);
}

/** Upper bound of the prompt tokens a chat request will be billed for. */
export function estimatePromptTokens(messages: ChatMessage[], p: TokenizerProfile): number {
  let total = p.perRequest;
  for (const m of messages) total += p.perMessage + estimateTextTokens(m.content, p);
  return total;
}

/** Does the text fit `maxTokens` by the estimate? Used to decide a head-and-tail cut. */
export function fitsTokens(text: string, maxTokens: number, p: TokenizerProfile): boolean {
  return estimateTextTokens(text, p) <= maxTokens;
}
