import { isInvisible, stripInvisible } from '../common/invisible';
import { normalizeBounded } from '../llm/compression';

/**
 * Text as a model reads it, folded so that look-alikes compare equal: what the injection detector
 * matches on, and how the prompt finds fence look-alikes. Every function here is one linear pass.
 *
 * - Invisible characters are dropped: zero-width characters, soft hyphens, bidi controls, variation
 *   selectors, tag characters, fillers, and C0/C1 controls other than whitespace. A model reads
 *   straight through them; a regular expression does not.
 * - Compatibility forms are folded (NFKC: full-width Latin and punctuation, ligatures, circled and
 *   mathematical letters); accents are dropped.
 * - Cyrillic and Greek letters that look like Latin ones are read as those (`іgnоrе` is `ignore`).
 * - Angle brackets and slashes that look like `<`, `>` and `/` are read as those.
 */

export { isInvisible, stripInvisible };

/** Letters that look like Latin ones (Cyrillic, Greek, IPA and others NFKC leaves alone). */
const LOOKALIKES: Record<string, string> = {
  // Cyrillic
  А: 'A', В: 'B', Е: 'E', К: 'K', М: 'M', Н: 'H', О: 'O', Р: 'P', С: 'C', Т: 'T', Х: 'X', У: 'Y', Ѕ: 'S', І: 'I', Ј: 'J', Ԛ: 'Q', Ԝ: 'W', Ү: 'Y', Ӏ: 'I',
  а: 'a', е: 'e', ё: 'e', о: 'o', р: 'p', с: 'c', у: 'y', х: 'x', і: 'i', ї: 'i', ј: 'j', ѕ: 's', ԁ: 'd', ԛ: 'q', ԝ: 'w', һ: 'h', ӏ: 'l', ү: 'y', к: 'k', м: 'm', т: 't', п: 'n', г: 'r',
  // Greek
  Α: 'A', Β: 'B', Ε: 'E', Ζ: 'Z', Η: 'H', Ι: 'I', Κ: 'K', Μ: 'M', Ν: 'N', Ο: 'O', Ρ: 'P', Τ: 'T', Υ: 'Y', Χ: 'X',
  α: 'a', β: 'b', γ: 'y', ε: 'e', η: 'n', ι: 'i', κ: 'k', ν: 'v', ο: 'o', ρ: 'p', σ: 'o', τ: 't', υ: 'u', χ: 'x', ω: 'w',
  // (the lunate sigmas ϲ Ϲ, a c and a C to the eye, are ς and Σ once decomposed; ϳ Ϳ are j and J)
  ς: 'c', Σ: 'C', ϳ: 'j', Ϳ: 'J',
  // more Cyrillic: izhitsa, the Abkhazian che, omega
  ѵ: 'v', Ѵ: 'V', ҽ: 'e', Ҽ: 'E', ѡ: 'w', Ѡ: 'W',
  // Latin variants, IPA, small capitals
  ı: 'i', ȷ: 'j', ɑ: 'a', ɡ: 'g', ɩ: 'i', ʏ: 'y', ℓ: 'l', ǀ: 'l', ᴀ: 'a', ʙ: 'b', ᴄ: 'c', ᴅ: 'd', ᴇ: 'e', ɢ: 'g', ʜ: 'h', ɪ: 'i', ᴊ: 'j', ᴋ: 'k', ʟ: 'l', ᴍ: 'm', ɴ: 'n', ᴏ: 'o', ᴘ: 'p', ʀ: 'r', ꜱ: 's', ᴛ: 't', ᴜ: 'u', ᴠ: 'v', ᴡ: 'w', ᴢ: 'z',
  // brackets, slashes and quotes
  '‹': '<', '〈': '<', '⟨': '<', '❮': '<', '˂': '<', 'ᐸ': '<', '⧼': '<', '﹤': '<', '❬': '<', '❰': '<',
  '›': '>', '〉': '>', '⟩': '>', '❯': '>', '˃': '>', 'ᐳ': '>', '⧽': '>', '﹥': '>', '❭': '>', '❱': '>',
  '⁄': '/', '∕': '/', '⧸': '/', '╱': '/',
  '’': "'", '‘': "'", 'ʼ': "'", '＇': "'",
};

const NEEDS_FOLD = /[^\u0000-\u007f\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff]/;

/**
 * One character (a code point) as a matcher reads it: its compatibility form, without accents, with
 * look-alikes replaced, in lower case. Used where single characters are compared.
 */
export function foldChar(ch: string): string {
  const c = ch.codePointAt(0)!;
  if (c < 0x80) return ch.toLowerCase();
  const direct = LOOKALIKES[ch];
  if (direct) return direct.toLowerCase();
  const nf = ch.normalize('NFKD').replace(/\p{M}/gu, '');
  return [...nf].map((x) => LOOKALIKES[x] ?? x).join('').toLowerCase();
}

/**
 * The whole text folded for matching (invisibles dropped, NFKC without accents, look-alikes
 * replaced, lower case). Lengths change; use it to match, never to cut the original.
 */
export function foldText(text: string): string {
  let t = stripInvisible(text);
  if (!NEEDS_FOLD.test(t)) return t.toLowerCase();
  t = normalizeBounded(t, 'NFKD').replace(/\p{M}/gu, '').normalize('NFC');
  let out = '';
  let kept = 0;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c < 0x80) continue;
    const r = LOOKALIKES[t[i]];
    if (r) {
      out += t.slice(kept, i) + r;
      kept = i + 1;
    }
  }
  return (kept === 0 ? t : out + t.slice(kept)).toLowerCase();
}

// ── Fence look-alikes ──────────────────────────────────────────────────────────────────────────

// Not 《: it is the Chinese book-title mark (《Essay on Man》 is a title, not a tag).
const LT = new Set(['<', '＜', '﹤', '‹', '〈', '〈', '⟨', '❮', '˂', 'ᐸ', '⧼', '❬', '❰']);
const SLASH = new Set(['/', '／', '⁄', '∕', '⧸', '╱', '\\', '＼']);

/** JavaScript's `\s`: Unicode white space, line terminators and the BOM. */
export function isWhitespace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    c === 0x20 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

function isSkippable(c: number): boolean {
  // whitespace (JavaScript's \s), invisible characters and combining marks
  return (
    isWhitespace(c) ||
    isInvisible(c) ||
    (c >= 0x300 && c <= 0x36f) ||
    (c >= 0x1ab0 && c <= 0x1aff) ||
    (c >= 0x1dc0 && c <= 0x1dff) ||
    (c >= 0x20d0 && c <= 0x20ff) ||
    (c >= 0xfe20 && c <= 0xfe2f)
  );
}

/**
 * Where the text has something a model could read as an `<essay>` or `</essay>` tag: a `<` or a
 * look-alike (full-width, guillemet, angle bracket…), then `essay` in any case or look-alike
 * letters, with an optional slash, and any whitespace, invisible characters or accents between
 * them. Returns the offsets of the opening brackets. Linear: the scan from one bracket stops at
 * the first character that is not part of a tag, and a bracket is never skipped over.
 */
export function fenceLookalikes(text: string): number[] {
  const found: number[] = [];
  const word = 'essay';
  for (let i = 0; i < text.length; i++) {
    if (!LT.has(text[i])) continue;
    let j = i + 1;
    const skip = () => {
      while (j < text.length && isSkippable(text.charCodeAt(j))) j++;
    };
    skip();
    if (j < text.length && SLASH.has(text[j])) {
      j++;
      skip();
    }
    let k = 0;
    while (k < word.length && j < text.length) {
      const cp = text.codePointAt(j)!;
      const ch = String.fromCodePoint(cp);
      if (foldChar(ch) !== word[k]) break;
      k++;
      j += ch.length;
      if (k < word.length) skip();
    }
    if (k === word.length) found.push(i);
  }
  return found;
}
