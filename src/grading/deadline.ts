import { isCalendarDay, localParts, zonedTime } from '../common/time-zone';

/**
 * Deadlines for work that may wait (off-peak scheduling): an assignment's `dueBy`, a deep review's
 * `dueBy` or "tomorrow_morning". A deadline is in the future and at most MAX_DEADLINE_DAYS ahead
 * (a plan looks a week ahead at most; further deadlines simply leave more room).
 */
export const MAX_DEADLINE_DAYS = 60;
/** A deep review ordered "by tomorrow morning" is due at this local time of the next day (the tenant's zone). */
export const MORNING_MINUTE = 8 * 60;
export const TOMORROW_MORNING = 'tomorrow_morning';

/**
 * A date-time that says which instant it is: date, time and its offset (Z or ±hh:mm). Without the
 * offset, "08:00" would be read in the server's zone (or as UTC), not the school's: refused.
 */
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/i;

/** Why `text` is not a usable deadline at `now`, or null when it is. */
export function deadlineProblem(text: string, now: Date): string | null {
  // (Date.parse rolls 31 November over to 1 December: the day must be one the calendar has.)
  const t = INSTANT.test(text) && isCalendarDay(text.slice(0, 10)) ? Date.parse(text) : NaN;
  if (Number.isNaN(t)) return 'dueBy must be an ISO 8601 date-time with its offset, e.g. 2026-12-03T08:00:00+08:00';
  // Offsets run from -12:00 to +14:00 on Earth (a larger one passed here, and the database refused it: a 500).
  const offset = /([+-])(\d{2}):?(\d{2})$/.exec(text);
  if (offset && (Number(offset[3]) > 59 || Number(offset[2]) * 60 + Number(offset[3]) > 14 * 60)) return 'dueBy has an offset no time zone has (at most ±14:00)';
  if (t <= now.getTime()) return 'dueBy must be in the future';
  if (t > now.getTime() + MAX_DEADLINE_DAYS * 86_400_000) return `dueBy must be within ${MAX_DEADLINE_DAYS} days`;
  return null;
}

/** Before this local time, "tomorrow morning" is the coming one: a teacher still at work at 00:30 means in a few hours. */
export const NIGHT_ENDS_MINUTE = 4 * 60;

/**
 * 08:00 of the day after `now`, in `timeZone`; in the small hours (before 04:00), 08:00 of the
 * same day: the morning the teacher has not slept to yet. The earlier reading: a deadline taken
 * too early costs a real-time price at worst, one taken too late is missed.
 */
export function tomorrowMorning(now: Date, timeZone: string): Date {
  const p = localParts(now, timeZone);
  const smallHours = p.hour * 60 + p.minute < NIGHT_ENDS_MINUTE;
  return zonedTime(p.year, p.month, p.day + (smallHours ? 0 : 1), timeZone, MORNING_MINUTE);
}

/** A deadline as given (ISO 8601, or "tomorrow_morning" in the tenant's zone), or why it cannot be one. */
export function resolveDeadline(input: string, now: Date, timeZone: string): { dueBy: Date } | { problem: string } {
  if (input === TOMORROW_MORNING) return { dueBy: tomorrowMorning(now, timeZone) };
  const problem = deadlineProblem(input, now);
  return problem ? { problem } : { dueBy: new Date(input) };
}
