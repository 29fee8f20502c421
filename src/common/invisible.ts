/**
 * Characters a reader does not see: zero-width ones, soft hyphens, bidi controls, variation
 * selectors, tag characters, fillers, and C0/C1 controls other than whitespace. A model reads
 * straight through them and a regular expression does not (src/grading/text-fold.ts folds text
 * with them dropped); text made of nothing else is blank, in an essay as in a title or a name.
 */

export function isInvisible(c: number): boolean {
  return (
    c <= 0x08 ||
    (c >= 0x0e && c <= 0x1f) ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0xad ||
    c === 0x34f ||
    c === 0x61c ||
    c === 0x115f ||
    c === 0x1160 ||
    c === 0x17b4 ||
    c === 0x17b5 ||
    (c >= 0x180b && c <= 0x180f) ||
    (c >= 0x200b && c <= 0x200f) ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2060 && c <= 0x206f) ||
    c === 0x3164 ||
    (c >= 0xfe00 && c <= 0xfe0f) ||
    c === 0xfeff ||
    c === 0xffa0 ||
    (c >= 0xfff9 && c <= 0xfffb)
  );
}

/** Astral invisibles: tag characters and variation selectors (U+E0000–U+E01EF), shorthand format controls. */
function isInvisibleAstral(high: number, low: number): boolean {
  return (high === 0xdb40 && low >= 0xdc00 && low <= 0xddef) || (high === 0xd82f && low >= 0xdca0 && low <= 0xdca3);
}

/** The text without invisible characters (one pass; untouched when it has none). */
export function stripInvisible(text: string): string {
  let out = '';
  let kept = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    let width = 0;
    if (isInvisible(c)) width = 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && isInvisibleAstral(c, text.charCodeAt(i + 1))) width = 2;
    if (width) {
      out += text.slice(kept, i);
      kept = i + width;
      i += width - 1;
    }
  }
  return kept === 0 ? text : out + text.slice(kept);
}

/**
 * Blank means nothing but whitespace (the ideographic space too) and invisible characters (zero-width
 * ones, bidi marks and overrides, invisible operators, fillers, the soft hyphen: the list above),
 * replacement characters and the Braille blank. An essay pasted of only those was graded, 40 of 100,
 * where the teacher should be told the text is empty; a title or a name of them names nothing.
 */
export function isBlank(text: string): boolean {
  // U+FFFD: what an unpaired surrogate became when control characters were stripped (a broken paste);
  // U+2800: the Braille blank, drawn as a space.
  return !/[^\s\uFFFD\u2800]/.test(stripInvisible(text));
}
