/**
 * Budget periods are calendar months in the tenant's time zone, named "YYYY-MM".
 */
import { localParts, zonedTime } from '../common/time-zone';

export function periodOf(at: Date, timeZone: string): string {
  const p = localParts(at, timeZone);
  return `${p.year}-${String(p.month).padStart(2, '0')}`;
}

/** Why `text` is no period a route takes ("YYYY-MM" of a month the ledger can hold: from 1970 on, as the usage's dates are), or null. */
export function periodProblem(text: string): string | null {
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(text)) return 'period must be YYYY-MM';
  return Number(text.slice(0, 4)) < 1970 ? 'period must be from 1970 on' : null;
}

/** [start, end) of a period in the tenant's time zone. */
export function periodBounds(period: string, timeZone: string): { start: Date; end: Date } {
  const [y, m] = period.split('-').map(Number);
  const next = m === 12 ? [y + 1, 1] : [y, m + 1];
  return { start: zonedTime(y, m, 1, timeZone), end: zonedTime(next[0], next[1], 1, timeZone) };
}
