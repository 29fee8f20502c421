import { formatCny } from '../common/money';
import { Catalog } from './catalog';
import { costOf, priceAt, worstCaseCost } from './pricing';

const catalog = Catalog.load();
/** An instant given as Beijing wall-clock time (UTC+8, no daylight saving). */
const beijing = (local: string) => new Date(`${local}+08:00`);

describe('pricing', () => {
  const qwen = catalog.models.get('dashscope:qwen-flash')!.pricing; // 0.15 / 0.03 / 1.5 CNY per million

  it('prices uncached input, cached input and output each at its own rate, exactly', () => {
    // 1,000 uncached × 0.15e-6 + 200 cached × 0.03e-6 + 300 output × 1.5e-6 = 0.00015 + 0.000006 + 0.00045
    expect(formatCny(costOf({ inputTokens: 1200, cachedInputTokens: 200, outputTokens: 300 }, qwen))).toBe('0.000606');
    expect(costOf({ inputTokens: 1, cachedInputTokens: 1, outputTokens: 0 }, qwen)).toBe(30n); // 0.03 CNY/M = 30 nano-yuan a token
  });

  it('never counts more cached tokens than input tokens', () => {
    expect(costOf({ inputTokens: 10, cachedInputTokens: 50, outputTokens: 0 }, qwen)).toBe(10n * 30n);
  });

  it('adds up without drift over many calls (integers, not floats)', () => {
    let total = 0n;
    for (let i = 0; i < 100_000; i++) total += costOf({ inputTokens: 7, cachedInputTokens: 3, outputTokens: 1 }, qwen);
    // per call: 4×150 + 3×30 + 1×1500 = 2190 nano-yuan
    expect(total).toBe(219_000_000n);
    expect(formatCny(total)).toBe('0.219');
  });

  it('takes the worst case as every input token uncached and the whole output allowance', () => {
    expect(worstCaseCost(1000, 500, qwen)).toBe(1000n * 150n + 500n * 1500n);
  });
});

describe('time-of-day prices (DeepSeek: peak Monday–Friday 09–12 and 14–18 Beijing time, except public holidays)', () => {
  const flash = catalog.models.get('deepseek:deepseek-flash')!;
  const at = (local: string) => priceAt(flash, beijing(local));
  const usage = { inputTokens: 1000, cachedInputTokens: 500, outputTokens: 200 };

  it.each([
    ['2026-11-30T08:59:59', null, 'a Monday, a second before the morning peak'],
    ['2026-11-30T09:00:00', 'peak', 'the morning peak starts'],
    ['2026-11-30T11:59:59', 'peak', 'the last second of the morning peak'],
    ['2026-11-30T12:00:00', null, 'the lunch break'],
    ['2026-11-30T13:59:59', null, 'a second before the afternoon peak'],
    ['2026-11-30T14:00:00', 'peak', 'the afternoon peak starts'],
    ['2026-11-30T17:59:59', 'peak', 'the last second of the afternoon peak'],
    ['2026-11-30T18:00:00', null, 'the evening'],
    ['2026-11-27T17:59:59', 'peak', 'Friday afternoon'],
    ['2026-11-28T10:00:00', null, 'Saturday morning'],
    ['2026-11-29T15:00:00', null, 'Sunday afternoon'],
    ['2026-10-01T10:00:00', null, 'National Day, a Thursday'],
    ['2026-10-07T15:00:00', null, 'the last day of the National Day holiday, a Wednesday'],
    ['2026-10-08T10:00:00', 'peak', 'the Thursday after the holiday'],
    ['2026-10-10T10:00:00', null, 'a Saturday made a working day (调休): DeepSeek names Monday to Friday only'],
  ] as Array<[string, string | null, string]>)('%s is %s (%s)', (local, window) => {
    expect(at(local).window).toBe(window);
  });

  it('charges the peak price in the window and half of it outside', () => {
    const peak = costOf(usage, at('2026-11-30T10:00:00').pricing);
    const offPeak = costOf(usage, at('2026-11-30T12:30:00').pricing);
    // peak: 500 × 2000 + 500 × 40 + 200 × 8000 nano-yuan
    expect(peak).toBe(500n * 2000n + 500n * 40n + 200n * 8000n);
    expect(offPeak * 2n).toBe(peak);
  });

  it('prices a weekend call off-peak and the next Monday morning at peak', () => {
    const friday = costOf(usage, at('2026-11-27T16:00:00').pricing);
    const sunday = costOf(usage, at('2026-11-29T16:00:00').pricing);
    const monday = costOf(usage, at('2026-11-30T16:00:00').pricing);
    expect(sunday * 2n).toBe(friday);
    expect(monday).toBe(friday);
  });

  it('reserves at the highest price of any window, and takes the batch price for a batch call', () => {
    expect(flash.ceiling.output).toBe(8000n);
    expect(flash.floor.output).toBe(4000n);
    const qwenFlash = catalog.models.get('dashscope:qwen-flash')!;
    expect(priceAt(qwenFlash, beijing('2026-11-30T10:00:00'), true)).toEqual({ pricing: qwenFlash.batchPricing, window: null });
    expect(priceAt(qwenFlash, beijing('2026-11-30T10:00:00')).pricing).toBe(qwenFlash.pricing);
  });
});
