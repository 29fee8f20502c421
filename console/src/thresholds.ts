/**
 * The budget's alert thresholds as a person types them: percentages of the monthly cap, 1 to 100
 * ("80, 100", "80%，100%"), at most two decimals. The API takes fractions ([0.8, 1]); a value under
 * 1 ("0.8") is refused with words that say what was probably meant, never read as 0.8 % silently.
 */
import type { MessageKey } from './i18n';

/** At most this many thresholds (the API's limit). */
export const MAX_THRESHOLDS = 10;

export type ThresholdsRead =
  | { ok: true; fractions: number[]; percents: string[] }
  | { ok: false; problem: MessageKey; vars: Record<string, string | number> };

const NUMBER = /^(\d+)(?:\.(\d+))?$/;

/** "80, 100" → fractions [0.8, 1] and the percentages as they will be saved (sorted, once each). */
export function readThresholds(text: string): ThresholdsRead {
  const parts = text
    .split(/[,，、;；\s]+/)
    .map((p) => p.replace(/[%％]$/, ''))
    .filter(Boolean);
  const hundredths = new Set<number>();
  for (const value of parts) {
    const m = NUMBER.exec(value);
    if (!m) return { ok: false, problem: 'thresholdNotNumber', vars: { value } };
    const [, whole, frac = ''] = m;
    const wholeNumber = Number(whole);
    if (wholeNumber === 0 && /[1-9]/.test(frac)) return { ok: false, problem: 'thresholdFraction', vars: { value, pct: shiftTwo(frac) } };
    if (wholeNumber === 0) return { ok: false, problem: 'thresholdRange', vars: { value } };
    if (frac.replace(/0+$/, '').length > 2) return { ok: false, problem: 'thresholdPrecision', vars: { value } };
    const h = wholeNumber * 100 + Number(frac.padEnd(2, '0').slice(0, 2));
    if (h > 10_000) return { ok: false, problem: 'thresholdRange', vars: { value } };
    hundredths.add(h);
  }
  if (hundredths.size > MAX_THRESHOLDS) return { ok: false, problem: 'thresholdTooMany', vars: { max: MAX_THRESHOLDS } };
  const sorted = [...hundredths].sort((a, b) => a - b);
  return {
    ok: true,
    // integer hundredths of a percent over 10,000: the closest number to the fraction (80 → 0.8)
    fractions: sorted.map((h) => h / 10_000),
    percents: sorted.map((h) => `${Math.floor(h / 100)}${h % 100 ? `.${String(h % 100).padStart(2, '0').replace(/0$/, '')}` : ''}`),
  };
}

/** The digits after "0." as a percentage: "8" → "80", "955" → "95.5", "05" → "5". */
function shiftTwo(frac: string): string {
  const padded = frac.padEnd(2, '0');
  const whole = padded.slice(0, 2).replace(/^0(?=\d)/, '');
  const rest = padded.slice(2).replace(/0+$/, '');
  return rest ? `${whole}.${rest}` : whole;
}

/** [0.8, 1] → "80, 100" (the API's fractions as the percentages the field takes). */
export function thresholdsToText(fractions: number[]): string {
  return fractions.map((f) => String(Math.round(f * 10_000) / 100)).join(', ');
}
