import { cny, cnyExact, cnySmall, dateIn, day, percent, wallTimeToIso } from './format';

describe('console money and dates', () => {
  it("counts days in the school's calendar, whatever the browser's zone", () => {
    // 09:00 on 7 December in Shanghai is still 6 December in New York and already the 7th in UTC+14.
    const at = new Date('2026-12-07T01:00:00Z');
    expect(dateIn(at, 'Asia/Shanghai')).toBe('2026-12-07');
    expect(dateIn(at, 'America/New_York')).toBe('2026-12-06');
    expect(dateIn(new Date('2026-12-06T23:30:00Z'), 'Asia/Shanghai')).toBe('2026-12-07');
    expect(dateIn(new Date('2026-12-06T23:30:00Z'), 'UTC')).toBe('2026-12-06');
  });

  it('shows a charged or booked amount with every digit the API gave, never rounded', () => {
    expect(cnyExact('9.999')).toBe('¥9.999');
    expect(cnyExact('0.0026025')).toBe('¥0.0026025');
    expect(cnyExact('5000')).toBe('¥5,000.00');
    expect(cnyExact('12345.600000')).toBe('¥12,345.60');
    expect(cnyExact('-0.000001')).toBe('-¥0.000001');
    expect(cnyExact('0.000000')).toBe('¥0.00');
    expect(cnyExact(null)).toBe('—');
    expect(cnyExact('abc')).toBe('abc');
  });

  it('formats CNY decimal strings by string arithmetic, rounding half away from zero', () => {
    expect(cny('12345.678901')).toBe('¥12,345.68');
    expect(cny('0.005')).toBe('¥0.01');
    expect(cny('0.004999')).toBe('¥0.00');
    expect(cny('999.995')).toBe('¥1,000.00');
    expect(cny('-3.10')).toBe('-¥3.10');
    expect(cny('-0.001')).toBe('¥0.00');
    expect(cny('5000')).toBe('¥5,000.00');
    // beyond a float's 15–17 significant digits nothing is lost
    expect(cny('123456789012345678.125')).toBe('¥123,456,789,012,345,678.13');
    expect(cny(null)).toBe('—');
    expect(cny('abc')).toBe('abc');
  });

  it('keeps significant digits of small amounts', () => {
    expect(cnySmall('0.000613')).toBe('¥0.000613');
    expect(cnySmall('0.0061584')).toBe('¥0.00616');
    expect(cnySmall('2.5')).toBe('¥2.50');
    expect(cnySmall('0')).toBe('¥0.00');
  });

  it('shows ratios as percentages', () => {
    expect(percent('0.4375')).toBe('43.8%');
    expect(percent('1.0000')).toBe('100.0%');
    expect(percent('0')).toBe('0.0%');
  });

  it('shows a calendar day without moving it across a time zone', () => {
    expect(day('2026-11-30', 'en-US')).toBe('Nov 30, 2026');
    expect(day('2026-11-30', 'zh-CN')).toBe('2026年11月30日');
  });
});

describe('wallTimeToIso', () => {
  it("reads a datetime-local value as a wall time in the school's zone, across a change of summer time", () => {
    expect(wallTimeToIso('2026-12-06T08:00', 'Asia/Shanghai')).toBe('2026-12-06T00:00:00.000Z');
    expect(wallTimeToIso('2026-12-06T08:00', 'UTC')).toBe('2026-12-06T08:00:00.000Z');
    expect(wallTimeToIso('2026-07-01T09:30', 'Europe/London')).toBe('2026-07-01T08:30:00.000Z'); // summer time
    expect(wallTimeToIso('2026-01-01T09:30', 'Europe/London')).toBe('2026-01-01T09:30:00.000Z');
    expect(wallTimeToIso('2026-03-30T12:00', 'Europe/London')).toBe('2026-03-30T11:00:00.000Z'); // the day after the change
    expect(wallTimeToIso('', 'Asia/Shanghai')).toBeNull();
    expect(wallTimeToIso('tomorrow', 'Asia/Shanghai')).toBeNull();
  });
});
