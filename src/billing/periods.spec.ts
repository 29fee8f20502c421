import { forecast, ratio } from './budget.service';
import { periodBounds, periodOf } from './periods';

describe('budget periods', () => {
  it("follow the tenant's time zone", () => {
    const at = new Date('2026-11-30T17:30:00Z'); // 01:30 on Dec 1 in Shanghai
    expect(periodOf(at, 'Asia/Shanghai')).toBe('2026-12');
    expect(periodOf(at, 'UTC')).toBe('2026-11');
    expect(periodOf(at, 'America/New_York')).toBe('2026-11');
  });

  it('change at the first instant of the month, however the calls before were answered', () => {
    // 16:00:00.000Z on Nov 30 is midnight of Dec 1 in Shanghai; the millisecond before is November.
    const before = new Date('2026-11-30T15:59:59.999Z');
    for (const ms of [0, 500, 999]) expect(periodOf(new Date(before.getTime() - 999 + ms), 'Asia/Shanghai')).toBe('2026-11');
    expect(periodOf(new Date('2026-11-30T16:00:00.000Z'), 'Asia/Shanghai')).toBe('2026-12');
    expect(periodOf(before, 'Asia/Shanghai')).toBe('2026-11'); // back in time (a test clock): asked again
    // Kathmandu is UTC+05:45: its month starts at 18:15Z.
    expect(periodOf(new Date('2026-11-30T18:14:59.999Z'), 'Asia/Kathmandu')).toBe('2026-11');
    expect(periodOf(new Date('2026-11-30T18:15:00.000Z'), 'Asia/Kathmandu')).toBe('2026-12');
  });

  it('start and end at local midnight of the first', () => {
    const { start, end } = periodBounds('2026-12', 'Asia/Shanghai');
    expect(start.toISOString()).toBe('2026-11-30T16:00:00.000Z');
    expect(end.toISOString()).toBe('2026-12-31T16:00:00.000Z');
    const ny = periodBounds('2026-03', 'America/New_York'); // DST starts on March 8
    expect(ny.start.toISOString()).toBe('2026-03-01T05:00:00.000Z');
    expect(ny.end.toISOString()).toBe('2026-04-01T04:00:00.000Z');
  });
});

describe('forecast', () => {
  it('projects month-end spend from the burn rate and the day the cap is reached', () => {
    // 10 of 30 days gone in a UTC November, 1,000 CNY spent: 3,000 by month end; a 2,000 cap is hit on day 20.
    const f = forecast('2026-11', 'UTC', 1_000_000_000_000n, 2_000_000_000_000n, new Date('2026-11-11T00:00:00Z'));
    expect(f).toEqual({ monthEnd: '3000.00', exhaustsOn: '2026-11-21' });
    expect(forecast('2026-11', 'UTC', 0n, 1n, new Date('2026-11-11T00:00:00Z'))).toEqual({ monthEnd: '0.00', exhaustsOn: null });
    // A cap of zero is reached already: today, in the tenant's zone.
    expect(forecast('2026-11', 'Asia/Kolkata', 0n, 0n, new Date('2026-11-10T20:00:00Z'))).toEqual({ monthEnd: '0.00', exhaustsOn: '2026-11-11' });
  });

  it('computes utilization exactly', () => {
    expect(ratio(1n, 3n)).toBe('0.3333');
    expect(ratio(12_940_000n, 12_940_000n)).toBe('1.0000');
    expect(ratio(0n, 0n)).toBe('0.0000');
  });
});
