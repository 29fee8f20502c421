/**
 * Money is held as a bigint count of nano-yuan (1e-9 CNY). Catalog prices are CNY per million
 * tokens with at most three decimals, so a token costs a whole number of nano-yuan and every
 * call's cost is exact: no rounding, no floats. Amounts cross the API as decimal strings.
 */
export type Nanos = bigint;

export const NANOS_PER_CNY = 1_000_000_000n;
/** Decimals an amount may have: one nano-yuan. */
export const CNY_DECIMALS = 9;
const CNY_PATTERN = /^(\d{1,12})(?:\.(\d{1,9}))?$/;

/** The largest amount PostgreSQL's BIGINT holds: 2^63 - 1 nano-yuan, 9223372036.854775807 CNY. */
export const MAX_NANOS: Nanos = 9_223_372_036_854_775_807n;
export const MAX_CNY = '9223372036.854775807';

export class MoneyFormatError extends Error {}

function nanosOf(m: RegExpExecArray): Nanos {
  return BigInt(m[1]) * NANOS_PER_CNY + BigInt((m[2] ?? '').padEnd(CNY_DECIMALS, '0'));
}

/**
 * Parses "5000", "5000.00" or "0.012940" into nano-yuan. Rejects signs, exponents, > 9 decimals,
 * and amounts a BIGINT column cannot hold (above MAX_CNY).
 */
export function parseCny(text: string): Nanos {
  const m = CNY_PATTERN.exec(text);
  if (!m) {
    throw new MoneyFormatError(`"${text}" is not a decimal amount in CNY with at most 9 decimals`);
  }
  const nanos = nanosOf(m);
  if (nanos > MAX_NANOS) throw new MoneyFormatError(`"${text}" is more than the largest amount, ${MAX_CNY} CNY`);
  return nanos;
}

/** Digits, maybe with a decimal part, of any length (what a number too long for CNY_PATTERN looks like). */
const DIGITS_PATTERN = /^(\d+)(?:\.(\d+))?$/;

/**
 * Why `text` is not an amount parseCny takes, or null when it is one: "range" (above MAX_CNY, however
 * many digits), "precision" (more than 9 decimals) or "format" (anything else, e.g. a sign, an
 * exponent, a number, or more than 12 digits before the point that are mostly leading zeros).
 */
export function cnyProblem(text: unknown): 'format' | 'range' | 'precision' | null {
  if (typeof text !== 'string') return 'format';
  const m = CNY_PATTERN.exec(text);
  if (m) return nanosOf(m) > MAX_NANOS ? 'range' : null;
  const d = DIGITS_PATTERN.exec(text);
  if (!d) return 'format';
  // MAX_CNY has 10 digits before the point: 11 or more, leading zeros aside, are above it.
  if (d[1].replace(/^0+/, '').length > MAX_CNY.indexOf('.')) return 'range';
  return (d[2]?.length ?? 0) > CNY_DECIMALS ? 'precision' : 'format';
}

export function isCnyString(text: unknown): text is string {
  return cnyProblem(text) === null;
}

/**
 * Formats nano-yuan as a decimal string: at least two decimals, more only when needed to stay
 * exact ("5000.00", "0.00064", "0.000000001").
 */
export function formatCny(nanos: Nanos): string {
  const negative = nanos < 0n;
  const abs = negative ? -nanos : nanos;
  const whole = abs / NANOS_PER_CNY;
  let frac = (abs % NANOS_PER_CNY).toString().padStart(CNY_DECIMALS, '0');
  frac = frac.replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  return `${negative ? '-' : ''}${whole}.${frac}`;
}

/** Parses a price in CNY per million tokens into nano-yuan per token (exact; ≤ 3 decimals). */
export function pricePerMillionToNanosPerToken(text: string): Nanos {
  const m = /^(\d{1,7})(?:\.(\d{1,3}))?$/.exec(text);
  if (!m) {
    throw new MoneyFormatError(`price "${text}" must be CNY per million tokens with at most 3 decimals`);
  }
  // 1 CNY per million tokens = 1e9 nanos / 1e6 tokens = 1000 nanos per token.
  return BigInt(m[1]) * 1000n + BigInt((m[2] ?? '').padEnd(3, '0'));
}

/** Reads a BIGINT column (pg returns it as a string) into nanos. */
export function nanosFromDb(value: string | number | bigint | null | undefined): Nanos {
  if (value === null || value === undefined) return 0n;
  return BigInt(value);
}

export function minNanos(a: Nanos, b: Nanos): Nanos {
  return a < b ? a : b;
}

export function maxNanos(a: Nanos, b: Nanos): Nanos {
  return a > b ? a : b;
}
