import { deadlineProblem, MAX_DEADLINE_DAYS, resolveDeadline, tomorrowMorning } from './deadline';

const NOW = new Date('2026-12-01T02:15:00Z'); // 10:15 in Beijing, a Tuesday

describe('deadlines', () => {
  it('takes an instant: a date-time with its offset (Z or ±hh:mm), to the second or finer', () => {
    for (const text of ['2026-12-02T08:00:00+08:00', '2026-12-02T00:00:00Z', '2026-12-02T00:00:00.123456Z', '2026-12-02T08:00+0800', '2026-12-01t20:00:00z']) {
      expect(deadlineProblem(text, NOW)).toBeNull();
    }
    expect(resolveDeadline('2026-12-02T08:00:00+08:00', NOW, 'Europe/London')).toEqual({ dueBy: new Date('2026-12-02T00:00:00Z') });
  });

  it('refuses what names no instant or no date at all: no offset, a date alone, words, impossible dates', () => {
    for (const text of ['2026-12-02T08:00:00', '2026-12-02', '2026-12-02 08:00:00+08:00', 'tomorrow', '', '2026-13-02T08:00:00Z', '2026-12-02T25:00:00Z', '2026-11-31T08:00:00+08:00', '2027-02-29T08:00:00Z', '12/02/2026']) {
      expect(deadlineProblem(text, NOW)).toBe('dueBy must be an ISO 8601 date-time with its offset, e.g. 2026-12-03T08:00:00+08:00');
    }
  });

  it('refuses an offset no time zone has (past ±14:00): the database refused it after the check passed it', () => {
    for (const text of ['2026-12-02T08:00:00+16:00', '2026-12-02T08:00:00-23:59', '2026-12-02T08:00:00+14:01']) {
      expect(deadlineProblem(text, NOW)).toBe('dueBy has an offset no time zone has (at most ±14:00)');
    }
    for (const text of ['2026-12-02T08:00:00+14:00', '2026-12-02T08:00:00-12:00', '2026-12-02T08:00:00+05:45']) expect(deadlineProblem(text, NOW)).toBeNull();
  });

  it('refuses a deadline not in the future, or more than MAX_DEADLINE_DAYS ahead', () => {
    expect(deadlineProblem(NOW.toISOString(), NOW)).toBe('dueBy must be in the future');
    expect(deadlineProblem('2026-11-30T00:00:00Z', NOW)).toBe('dueBy must be in the future');
    const last = new Date(NOW.getTime() + MAX_DEADLINE_DAYS * 86_400_000);
    expect(deadlineProblem(last.toISOString(), NOW)).toBeNull();
    expect(deadlineProblem(new Date(last.getTime() + 1000).toISOString(), NOW)).toBe(`dueBy must be within ${MAX_DEADLINE_DAYS} days`);
  });

  it('"tomorrow_morning" is 08:00 of the next local day in the school\'s zone, across a day boundary and a clock change', () => {
    expect(resolveDeadline('tomorrow_morning', NOW, 'Asia/Shanghai')).toEqual({ dueBy: new Date('2026-12-02T00:00:00Z') });
    // 23:59 in Beijing on the 1st: the 2nd at 08:00.
    expect(tomorrowMorning(new Date('2026-12-01T15:59:00Z'), 'Asia/Shanghai')).toEqual(new Date('2026-12-02T00:00:00Z'));
    // 00:30 and 03:59 on the 2nd, still up: the morning not slept to yet, the 2nd at 08:00 (not 31.5 hours away).
    expect(tomorrowMorning(new Date('2026-12-01T16:30:00Z'), 'Asia/Shanghai')).toEqual(new Date('2026-12-02T00:00:00Z'));
    expect(tomorrowMorning(new Date('2026-12-01T19:59:00Z'), 'Asia/Shanghai')).toEqual(new Date('2026-12-02T00:00:00Z'));
    // From 04:00 it is the next day's.
    expect(tomorrowMorning(new Date('2026-12-01T20:00:00Z'), 'Asia/Shanghai')).toEqual(new Date('2026-12-03T00:00:00Z'));
    // New York, the evening before clocks go back (1 November 2026): 08:00 EST is 13:00 UTC.
    expect(tomorrowMorning(new Date('2026-10-31T23:00:00Z'), 'America/New_York')).toEqual(new Date('2026-11-01T13:00:00Z'));
    // London, the evening before clocks go forward (29 March 2026): 08:00 BST is 07:00 UTC.
    expect(tomorrowMorning(new Date('2026-03-28T20:00:00Z'), 'Europe/London')).toEqual(new Date('2026-03-29T07:00:00Z'));
  });
});
