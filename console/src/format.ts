/**
 * Money and dates for display. Money arrives as decimal strings (CNY) and stays strings: grouped
 * and rounded by string arithmetic, never through a float. Dates are shown in the tenant's zone.
 */
import { zonedTime } from '../../src/common/time-zone';

const MONEY = /^(-?)(\d+)(?:\.(\d+))?$/;

/** "12345.678901" → "¥12,345.68" (half away from zero, at `places`). Unparseable input is shown as is. */
export function cny(amount: string | null | undefined, places = 2): string {
  if (amount === null || amount === undefined) return '—';
  const m = MONEY.exec(amount.trim());
  if (!m) return amount;
  const [, sign, whole, frac = ''] = m;
  let digits = (whole + frac.padEnd(places, '0').slice(0, places)).replace(/^0+(?=\d)/, '');
  if (Number(frac[places] ?? '0') >= 5) digits = increment(digits);
  digits = digits.padStart(places + 1, '0');
  const intPart = digits.slice(0, digits.length - places);
  const fracPart = places ? `.${digits.slice(digits.length - places)}` : '';
  const grouped = intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const isZero = /^[0,]*$/.test(grouped) && /^\.?0*$/.test(fracPart);
  return `${sign && !isZero ? '-' : ''}¥${grouped}${fracPart}`;
}

/**
 * "9.999" → "¥9.999", "0.0026025" → "¥0.0026025", "5000" → "¥5,000.00": every digit the API gave
 * (at least `places` decimals, trailing zeros beyond them dropped), for what is charged or booked
 * (an order's price, the month's report), where a rounded figure would disagree with the books.
 */
export function cnyExact(amount: string | null | undefined, places = 2): string {
  if (amount === null || amount === undefined) return '—';
  const m = MONEY.exec(amount.trim());
  if (!m) return amount;
  const frac = (m[3] ?? '').replace(/0+$/, '');
  return cny(amount, Math.max(places, frac.length));
}

/** Adds one to a string of decimal digits. */
function increment(digits: string): string {
  const out = digits.split('');
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] !== '9') {
      out[i] = String(Number(out[i]) + 1);
      return out.join('');
    }
    out[i] = '0';
  }
  return `1${out.join('')}`;
}

/** Small amounts (cost per grading) keep significant digits: 0.000613 → "¥0.000613". */
export function cnySmall(amount: string | null | undefined): string {
  if (amount === null || amount === undefined) return '—';
  const m = MONEY.exec(amount.trim());
  if (!m) return amount;
  const [, sign, whole, frac = ''] = m;
  if (whole.replace(/^0+/, '') !== '') return cny(amount, 2);
  const firstSignificant = frac.search(/[1-9]/);
  if (firstSignificant < 0) return cny(amount, 2);
  return cny(`${sign}${whole}.${frac}`, Math.min(8, Math.max(2, firstSignificant + 3)));
}

/** "0.4375" (a 0–1 ratio as a decimal string) → "43.8%"; by string arithmetic. */
export function percent(ratio: string | null | undefined, places = 1): string {
  if (ratio === null || ratio === undefined) return '—';
  const m = MONEY.exec(ratio.trim());
  if (!m) return ratio;
  const [, sign, whole, frac = ''] = m;
  const shifted = `${whole}${frac.padEnd(2, '0').slice(0, 2)}.${frac.slice(2) || '0'}`;
  return `${cny(`${sign}${shifted}`, places).replace('¥', '')}%`;
}

/** A date-time in the tenant's time zone, in the console's language. */
export function dateTime(iso: string | null | undefined, timeZone: string, locale: string): string {
  if (!iso) return '—';
  return new Intl.DateTimeFormat(locale, { timeZone, dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));
}

/**
 * A wall time in `timeZone` ("2026-12-06T08:00", as an input of type datetime-local gives it) as
 * ISO 8601 in UTC; null when it is not such a time. The school's zone, not the browser's: a
 * deadline typed as 08:00 is 08:00 where the school is, as every date the console shows. (The
 * service's own conversion, src/common/time-zone.ts: no Node in it.)
 */
export function wallTimeToIso(local: string, timeZone: string): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(local.trim());
  if (!m) return null;
  const [y, mo, d, h, mi] = m.slice(1).map(Number);
  return zonedTime(y, mo, d, timeZone, h * 60 + mi).toISOString();
}

/** The calendar date (YYYY-MM-DD) of `at` in `timeZone`: the school's day, not the browser's. */
export function dateIn(at: Date, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(at);
  const part = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  return `${part('year').padStart(4, '0')}-${part('month')}-${part('day')}`;
}

/** A calendar date (YYYY-MM-DD, already in the tenant's zone) in the console's language. */
export function day(isoDay: string | null | undefined, locale: string): string {
  if (!isoDay) return '—';
  const [y, mo, d] = isoDay.split('-').map(Number);
  return new Intl.DateTimeFormat(locale, { timeZone: 'UTC', dateStyle: 'medium' }).format(new Date(Date.UTC(y, mo - 1, d)));
}
