import { isCalendarDay, localParts, timeZoneNames, zonedTime } from './time-zone';

describe('local wall-clock time', () => {
  it('is read to the second, in each zone, whatever was asked just before', () => {
    const at = (iso: string) => new Date(iso);
    // The same second twice (kept), then the next second, then another zone in that second.
    expect(localParts(at('2026-11-30T15:59:58.100Z'), 'Asia/Shanghai')).toMatchObject({ day: 30, hour: 23, minute: 59, second: 58 });
    expect(localParts(at('2026-11-30T15:59:58.900Z'), 'Asia/Shanghai')).toMatchObject({ day: 30, hour: 23, minute: 59, second: 58 });
    expect(localParts(at('2026-11-30T15:59:59.999Z'), 'Asia/Shanghai')).toMatchObject({ day: 30, hour: 23, minute: 59, second: 59 });
    expect(localParts(at('2026-11-30T16:00:00.000Z'), 'Asia/Shanghai')).toEqual({ year: 2026, month: 12, day: 1, hour: 0, minute: 0, second: 0, weekday: 2 });
    expect(localParts(at('2026-11-30T16:00:00.000Z'), 'UTC')).toMatchObject({ month: 11, day: 30, hour: 16 });
    // Back in time (a test clock), and before 1970.
    expect(localParts(at('2026-11-30T15:59:58.500Z'), 'Asia/Shanghai')).toMatchObject({ month: 11, second: 58 });
    expect(localParts(at('1969-12-31T23:59:59.500Z'), 'UTC')).toMatchObject({ year: 1969, second: 59 });
    expect(localParts(at('1970-01-01T00:00:00.000Z'), 'UTC')).toMatchObject({ year: 1970, second: 0 });
  });

  it('cannot be changed by a caller (the answer is shared for its second)', () => {
    const p = localParts(new Date('2026-03-08T06:59:59Z'), 'America/New_York');
    expect(() => Object.assign(p, { hour: 99 })).toThrow(TypeError);
    expect(localParts(new Date('2026-03-08T06:59:59Z'), 'America/New_York').hour).toBe(1);
    // DST starts at 02:00 local: one second later it is 03:00.
    expect(localParts(new Date('2026-03-08T07:00:00Z'), 'America/New_York').hour).toBe(3);
    expect(zonedTime(2026, 3, 9, 'America/New_York').toISOString()).toBe('2026-03-09T04:00:00.000Z');
  });

  it('starts a day whose midnight a DST jump skips at the jump, on that day, and a day whose midnight comes twice at the first', () => {
    // Santiago, Havana, Asunción move their clocks forward at midnight: 00:00 → 01:00.
    expect(zonedTime(2026, 9, 6, 'America/Santiago').toISOString()).toBe('2026-09-06T04:00:00.000Z');
    expect(zonedTime(2026, 3, 8, 'America/Havana').toISOString()).toBe('2026-03-08T05:00:00.000Z');
    expect(zonedTime(2023, 10, 1, 'America/Asuncion').toISOString()).toBe('2023-10-01T04:00:00.000Z');
    for (const [y, m, d, zone] of [[2026, 9, 6, 'America/Santiago'], [2026, 3, 8, 'America/Havana'], [2023, 10, 1, 'America/Asuncion']] as const) {
      const at = zonedTime(y, m, d, zone);
      expect(localParts(at, zone)).toMatchObject({ year: y, month: m, day: d, hour: 1, minute: 0 });
      expect(localParts(new Date(at.getTime() - 1000), zone)).toMatchObject({ hour: 23, minute: 59 }); // the day before
    }
    // Havana moves back at 01:00 → 00:00: 1 November 2026 begins at its first midnight.
    expect(zonedTime(2026, 11, 1, 'America/Havana').toISOString()).toBe('2026-11-01T04:00:00.000Z');
    // A time inside the skipped hour moves forward by the jump, as the clocks did (02:30 → 03:30); any other time is itself.
    expect(zonedTime(2026, 3, 8, 'America/New_York', 150).toISOString()).toBe('2026-03-08T07:30:00.000Z');
    expect(zonedTime(2026, 3, 8, 'America/New_York', 180).toISOString()).toBe('2026-03-08T07:00:00.000Z');
  });

  it('finds midnight in the years 0-99 as in any other (Date.UTC would put them in the 1900s)', () => {
    expect(zonedTime(1, 1, 1, 'UTC').toISOString()).toBe('0001-01-01T00:00:00.000Z');
    expect(zonedTime(99, 12, 31, 'UTC', 90).toISOString()).toBe('0099-12-31T01:30:00.000Z');
    // In a zone, the instant found reads back as that zone's midnight of that day.
    const at = zonedTime(50, 6, 15, 'Asia/Shanghai');
    expect(localParts(at, 'Asia/Shanghai')).toMatchObject({ year: 50, month: 6, day: 15, hour: 0, minute: 0 });
    expect(at.getUTCFullYear()).toBe(50);
  });

  it('tells a day of the calendar from text that only looks like one', () => {
    expect(['2026-11-01', '2028-02-29', '1969-12-31'].map(isCalendarDay)).toEqual([true, true, true]);
    expect(['2026-02-30', '2027-02-29', '2026-13-01', '2026-11-1', '2026-11-01T00:00:00Z', ' 2026-11-01', ''].map(isCalendarDay)).toEqual([false, false, false, false, false, false, false]);
    expect(['0000-01-01', '0000-02-29', '0001-01-01'].map(isCalendarDay)).toEqual([false, false, true]);
  });

  it('refuses a zone that does not exist', () => {
    expect(() => localParts(new Date(), 'Mars/Olympus_Mons')).toThrow(RangeError);
  });
});

describe('the names of a zone', () => {
  it('tries the name as given first, then as Intl resolves it, then the zone that name links to', () => {
    expect(timeZoneNames('Asia/Shanghai')).toEqual(['Asia/Shanghai']);
    expect(timeZoneNames('US/Pacific-New')).toEqual(['US/Pacific-New', 'America/Los_Angeles']);
    expect(timeZoneNames('Asia/Kolkata')).toEqual(['Asia/Kolkata', 'Asia/Calcutta']);
    expect(timeZoneNames('Asia/Calcutta')).toEqual(['Asia/Calcutta', 'Asia/Kolkata']);
    expect(timeZoneNames('Europe/Kiev')).toEqual(['Europe/Kiev', 'Europe/Kyiv']);
  });
});
