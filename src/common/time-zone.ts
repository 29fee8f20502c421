/** Wall-clock times in an IANA time zone, from Intl (no dependency, DST-correct). */
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      weekday: 'short',
      hourCycle: 'h23',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

export interface LocalParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  /** 0 = Sunday … 6 = Saturday */
  weekday: number;
}

const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

/** Each time zone's parts of the last whole second asked about. */
const lastSecond = new Map<string, { second: number; parts: Readonly<LocalParts> }>();

/**
 * The wall-clock time of `at` in `timeZone`, to the second. Every model call asks (its budget
 * period, its price window) and Intl takes microseconds, so each zone's answer is kept for the
 * rest of its second: every zone's offset is whole seconds, so nothing here changes within one.
 */
export function localParts(at: Date, timeZone: string): Readonly<LocalParts> {
  const second = Math.floor(at.getTime() / 1000);
  const held = lastSecond.get(timeZone);
  if (held?.second === second) return held.parts;
  const parts = Object.fromEntries(formatter(timeZone).formatToParts(at).map((p) => [p.type, p.value]));
  const local: Readonly<LocalParts> = Object.freeze({
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour),
    minute: Number(parts.minute),
    second: Number(parts.second),
    weekday: WEEKDAYS[parts.weekday],
  });
  // Zones are few (each named one was checked by Intl above); the bound only stops a hostile spread.
  if (!held && lastSecond.size >= 1000) lastSecond.clear();
  lastSecond.set(timeZone, { second, parts: local });
  return local;
}

/** "YYYY-MM-DD" of the local date. */
export function localDate(p: Pick<LocalParts, 'year' | 'month' | 'day'>): string {
  return `${p.year}-${String(p.month).padStart(2, '0')}-${String(p.day).padStart(2, '0')}`;
}

/**
 * "YYYY-MM-DD" naming a day of the calendar (2026-02-30 parses to 2 March, so it must read back the
 * same), from the year 1 (PostgreSQL's `date` has no year 0: 0000-01-01 failed the query, a 500).
 */
export function isCalendarDay(text: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text) || text.startsWith('0000')) return false;
  const at = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(at.getTime()) && at.toISOString().slice(0, 10) === text;
}

/** Date.UTC for every year: Date.UTC reads the years 0–99 as 1900–1999. */
function utcMs(year: number, monthIndex: number, day: number, hour = 0, minute = 0, second = 0): number {
  const at = new Date(0);
  at.setUTCFullYear(year, monthIndex, day);
  at.setUTCHours(hour, minute, second, 0);
  return at.getTime();
}

/**
 * The instant a local wall-clock time happens in `timeZone` (two passes settle DST offsets). A time
 * that does not exist (skipped by a DST jump: midnight in Santiago or Havana on the day clocks go
 * forward) moves forward by the jump, as the clocks did, so a day always starts on that day (at
 * 01:00). One that happens twice (a jump back at midnight) is its first in zones west of UTC
 * (Havana) but its second east of it (Amman and Gaza before 2022: there /v1/usage still reads the
 * hour between the two midnights twice, a known gap). (The passes settled on the instant before a jump: Santiago's
 * 6 September 2026 began at 23:00 on the 5th.)
 */
export function zonedTime(year: number, month: number, day: number, timeZone: string, minuteOfDay = 0): Date {
  const guess = utcMs(year, month - 1, day) + minuteOfDay * 60_000;
  let t = guess;
  for (let i = 0; i < 2; i++) {
    const p = localParts(new Date(t), timeZone);
    const asUtc = utcMs(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
    t = guess - (asUtc - t);
  }
  const p = localParts(new Date(t), timeZone);
  const reads = utcMs(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  // Before the time asked for: it fell in a jump forward; the jump's end is as far ahead.
  if (reads < guess) t += guess - reads;
  return new Date(t);
}

export function isValidTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/**
 * The zone's name as Intl resolves it: "US/Pacific-New" → "America/Los_Angeles", but ICU keeps
 * some zones under names IANA has replaced since ("Asia/Kolkata" → "Asia/Calcutta").
 */
export function canonicalTimeZone(name: string): string {
  return new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
}

/**
 * The zones Intl (ICU 78, Node 20) resolves to a name that the IANA data (2025b) keeps only as a
 * link, and the zone each links to: newer PostgreSQL images ship without those links (Debian's
 * tzdata-legacy), so "Asia/Calcutta" may be unknown there while "Asia/Kolkata" is known. Read from
 * the `L` lines of tzdata.zi for the names `Intl.supportedValuesOf('timeZone')` lists.
 */
const LINKED_TO = new Map<string, string>([
  ['Africa/Asmera', 'Africa/Nairobi'],
  ['America/Buenos_Aires', 'America/Argentina/Buenos_Aires'],
  ['America/Catamarca', 'America/Argentina/Catamarca'],
  ['America/Coral_Harbour', 'America/Panama'],
  ['America/Cordoba', 'America/Argentina/Cordoba'],
  ['America/Godthab', 'America/Nuuk'],
  ['America/Indianapolis', 'America/Indiana/Indianapolis'],
  ['America/Jujuy', 'America/Argentina/Jujuy'],
  ['America/Kralendijk', 'America/Puerto_Rico'],
  ['America/Louisville', 'America/Kentucky/Louisville'],
  ['America/Lower_Princes', 'America/Puerto_Rico'],
  ['America/Marigot', 'America/Puerto_Rico'],
  ['America/Mendoza', 'America/Argentina/Mendoza'],
  ['America/St_Barthelemy', 'America/Puerto_Rico'],
  ['Arctic/Longyearbyen', 'Europe/Berlin'],
  ['Asia/Calcutta', 'Asia/Kolkata'],
  ['Asia/Katmandu', 'Asia/Kathmandu'],
  ['Asia/Rangoon', 'Asia/Yangon'],
  ['Asia/Saigon', 'Asia/Ho_Chi_Minh'],
  ['Atlantic/Faeroe', 'Atlantic/Faroe'],
  ['Europe/Bratislava', 'Europe/Prague'],
  ['Europe/Busingen', 'Europe/Zurich'],
  ['Europe/Kiev', 'Europe/Kyiv'],
  ['Europe/Mariehamn', 'Europe/Helsinki'],
  ['Europe/Podgorica', 'Europe/Belgrade'],
  ['Europe/San_Marino', 'Europe/Rome'],
  ['Europe/Vatican', 'Europe/Rome'],
  ['Pacific/Enderbury', 'Pacific/Kanton'],
  ['Pacific/Ponape', 'Pacific/Guadalcanal'],
  ['Pacific/Truk', 'Pacific/Port_Moresby'],
]);

/**
 * The names to store a zone under, best first: as given, as Intl resolves it (an alias the
 * database's zone data may lack, "US/Pacific-New"), and the zone that name links to in the IANA
 * data. TenantsService.create keeps the first the database knows: the database reads the tenant's
 * zone too (its ledger's days, `AT TIME ZONE`).
 */
export function timeZoneNames(name: string): string[] {
  const resolved = canonicalTimeZone(name);
  return [...new Set([name, resolved, LINKED_TO.get(resolved), LINKED_TO.get(name)].filter((n): n is string => n !== undefined))];
}
