import 'reflect-metadata';

/**
 * Control characters in what users send. PostgreSQL's text and jsonb cannot hold NUL (a string
 * with one fails the whole statement), and no other control character belongs in a title, a name
 * or an essay. So every string the API takes has them removed before it is checked or stored, the
 * way essay text always was; only secrets are kept exactly as sent (and refuse them instead).
 */

/** A UTF-16 surrogate without its pair (JSON's `\ud800` escape can send one): not text, and PostgreSQL's json refuses it. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * The text as sent, minus control characters: C0 controls other than tab and newline (a CR is
 * dropped, so CRLF becomes LF), DEL, and C1 controls; a lone surrogate becomes U+FFFD, as a
 * decoder would write it.
 */
export function stripControlChars(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g, '').replace(LONE_SURROGATE, '\uFFFD');
}

/**
 * The first `max` UTF-16 units of `text`, one fewer where the last would be the first half of a
 * surrogate pair: `slice` cut an emoji (or a CJK Extension B character) in two, and the half left
 * is no text (PostgreSQL's jsonb refuses it, encodeURIComponent throws on it).
 */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

/** Matches a string with no control character at all (tab and newline included): for secrets. */
// eslint-disable-next-line no-control-regex
export const NO_CONTROL_CHARS = /^[^\u0000-\u001F\u007F-\u009F]*$/;

const VERBATIM = Symbol('inkstone:verbatim');

/** A DTO field kept exactly as sent (a secret): stripControlStrings leaves it alone. */
export function Verbatim(): PropertyDecorator {
  return (target, property) => Reflect.defineMetadata(VERBATIM, true, target, property);
}

/**
 * Removes control characters from every string in a validated DTO, in place: its own fields,
 * nested DTOs and arrays, except fields marked @Verbatim(). Depth is bounded (request JSON is
 * refused beyond 32 levels before it is parsed).
 */
export function stripControlStrings(value: unknown, depth = 0): void {
  if (!value || typeof value !== 'object' || depth > 40) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (typeof value[i] === 'string') value[i] = stripControlChars(value[i] as string);
      else stripControlStrings(value[i], depth + 1);
    }
    return;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const v = record[key];
    if (typeof v === 'string') {
      if (!Reflect.getMetadata(VERBATIM, record, key)) record[key] = stripControlChars(v);
    } else if (v && typeof v === 'object') {
      stripControlStrings(v, depth + 1);
    }
  }
}
