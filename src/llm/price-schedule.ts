import { isCalendarDay, localDate, localParts } from '../common/time-zone';

/**
 * When a time-of-day price applies. A schedule is weekdays and hours of the day in a time zone,
 * minus the days of a holiday calendar: DeepSeek's peak hours are "Monday to Friday, 09:00–12:00
 * and 14:00–18:00 Beijing time, except Chinese public holidays". Hours are [start, end): a call at
 * 12:00:00 is outside 09:00–12:00.
 */
export interface HolidayCalendar {
  name: string;
  timezone: string;
  /** local dates, "YYYY-MM-DD" */
  days: ReadonlySet<string>;
  /** the last local date the calendar knows; after it no day counts as a holiday */
  through: string;
  source: string;
  checkedOn: string;
}

export interface Schedule {
  name: string;
  timezone: string;
  /** 0 = Sunday … 6 = Saturday */
  weekdays: ReadonlySet<number>;
  /** [start, end) in minutes after local midnight */
  hours: ReadonlyArray<readonly [number, number]>;
  except?: HolidayCalendar;
  /** as written in the catalog, for /v1/models and the report */
  text: { days: string[]; hours: string[]; except?: string };
}

export const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

export function inSchedule(s: Schedule, at: Date): boolean {
  const p = localParts(at, s.timezone);
  if (!s.weekdays.has(p.weekday)) return false;
  if (s.except?.days.has(localDate(p))) return false;
  const minute = p.hour * 60 + p.minute;
  return s.hours.some(([from, to]) => minute >= from && minute < to);
}

/** "09:00-12:00" → [540, 720]; "18:00-24:00" is allowed as the end of the day. */
export function parseHours(text: string): [number, number] | null {
  const m = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$/.exec(text);
  if (!m) return null;
  const from = Number(m[1]) * 60 + Number(m[2]);
  const to = Number(m[3]) * 60 + Number(m[4]);
  if (to > 24 * 60 || to <= from) return null;
  return [from, to];
}

/** "2026-10-01" or "2026-10-01..2026-10-08" → every local date in it. */
export function expandDates(entry: string): string[] | null {
  const m = /^(\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))?$/.exec(entry);
  if (!m) return null;
  const from = Date.parse(`${m[1]}T00:00:00Z`);
  const to = Date.parse(`${m[2] ?? m[1]}T00:00:00Z`);
  if (Number.isNaN(from) || Number.isNaN(to) || to < from || to - from > 31 * 86_400_000) return null;
  if (!isCalendarDay(m[1]) || !isCalendarDay(m[2] ?? m[1])) return null; // 2026-02-30
  const out: string[] = [];
  for (let t = from; t <= to; t += 86_400_000) out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}
