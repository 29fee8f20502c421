import { Catalog } from './catalog';
import { planWork, PlanInput } from './work-planner';

const catalog = Catalog.load();
const beijing = (local: string) => new Date(`${local}+08:00`);
const HOUR = 3_600_000;

// DeepSeek's flash model: peak (double price) Monday–Friday 09–12 and 14–18 Beijing time; no batch.
const flash = catalog.models.get('deepseek:deepseek-flash')!;
// DashScope's qwen-flash: one real-time price, half price through the Batch API.
const qwen = catalog.models.get('dashscope:qwen-flash')!;

const plan = (over: Partial<PlanInput>) =>
  planWork({ model: flash, now: beijing('2026-12-01T10:15:00'), dueBy: beijing('2026-12-02T08:00:00'), inputTokens: 1500, outputTokens: 800, batchTurnaroundMs: 24 * HOUR, marginMs: 30 * 60_000, ...over });

describe('planWork: the cheapest start that still meets the deadline', () => {
  it('waits for the off-peak window when the deadline allows, and starts at the minute it opens', () => {
    // Tuesday 10:15 is peak; 12:00 opens the lunchtime off-peak window, half the price.
    const p = plan({});
    expect(p.mode).toBe('off_peak');
    expect(p.startAt.toISOString()).toBe(beijing('2026-12-01T12:00:00').toISOString());
    expect(p.window).toBeNull(); // the base (off-peak) price
    expect(p.expectedNanos * 2n).toBe(p.nowNanos);
  });

  it('finds the same minute from any moment, and the same plan when asked again (the prices remembered)', () => {
    const odd = plan({ now: beijing('2026-12-01T10:17:23.456') });
    expect(odd.startAt.toISOString()).toBe(beijing('2026-12-01T12:00:00').toISOString());
    expect(plan({ now: beijing('2026-12-01T10:17:23.456') })).toEqual(odd);
    // A window that opens between two grid points of the clock: 11:58 is on no 5-minute mark.
    expect(plan({ now: beijing('2026-12-01T11:56:10') }).startAt.toISOString()).toBe(beijing('2026-12-01T12:00:00').toISOString());
  });

  it('runs now when now is already the cheapest (off-peak)', () => {
    const p = plan({ now: beijing('2026-12-01T20:00:00') });
    expect(p.mode).toBe('now');
    expect(p.expectedNanos).toBe(p.nowNanos);
  });

  it('never waits past the deadline minus the margin: a deadline inside the peak runs now, at peak price', () => {
    // Due 12:20: the window opens at 12:00, but 12:20 − 30 min is 11:50.
    const p = plan({ dueBy: beijing('2026-12-01T12:20:00') });
    expect(p.mode).toBe('now');
    expect(p.window).toBe('peak');
    // With a 15-minute margin the 12:00 window is reachable.
    expect(plan({ dueBy: beijing('2026-12-01T12:20:00'), marginMs: 15 * 60_000 }).startAt.toISOString()).toBe(beijing('2026-12-01T12:00:00').toISOString());
  });

  it('runs now when the deadline has passed or is within the margin', () => {
    expect(plan({ dueBy: beijing('2026-12-01T09:00:00') }).mode).toBe('now');
    expect(plan({ dueBy: beijing('2026-12-01T10:30:00') }).mode).toBe('now');
  });

  it('uses the Batch API only when its whole turnaround fits before the deadline', () => {
    const now = beijing('2026-12-01T16:00:00');
    // Due tomorrow morning: 16 hours away, the 24-hour batch does not fit → real time now.
    expect(plan({ model: qwen, now, dueBy: beijing('2026-12-02T08:00:00') }).mode).toBe('now');
    // Due the day after: it fits → batch, half price, sent now.
    const p = plan({ model: qwen, now, dueBy: beijing('2026-12-03T08:00:00') });
    expect(p.mode).toBe('batch');
    expect(p.startAt.toISOString()).toBe(now.toISOString());
    expect(p.expectedNanos * 2n).toBe(p.nowNanos);
    // A faster promised turnaround (an operator's setting) makes tomorrow morning reachable.
    expect(plan({ model: qwen, now, dueBy: beijing('2026-12-02T08:00:00'), batchTurnaroundMs: 6 * HOUR }).mode).toBe('batch');
  });

  it('finds the weekend when the weekday windows are all peak until the deadline', () => {
    // Friday 09:30, due Monday: every minute after Friday 18:00 is off-peak; the first is chosen.
    const p = plan({ now: beijing('2026-12-04T09:30:00'), dueBy: beijing('2026-12-07T09:00:00') });
    expect(p.mode).toBe('off_peak');
    expect(p.startAt.toISOString()).toBe(beijing('2026-12-04T12:00:00').toISOString());
  });

  it('never plans a start after the deadline, over a grid of times and deadlines', () => {
    for (let h = 0; h < 48; h += 1.25) {
      // (off the clock's 5-minute marks by an odd number of milliseconds)
      const now = new Date(beijing('2026-12-01T00:00:00').getTime() + h * HOUR + 437_123);
      for (const ahead of [0.2, 0.6, 1, 2.5, 7, 30]) {
        const dueBy = new Date(now.getTime() + ahead * HOUR);
        const p = plan({ now, dueBy, model: h % 2 ? flash : qwen });
        expect(p.startAt.getTime()).toBeGreaterThanOrEqual(now.getTime());
        if (p.mode !== 'now') expect(p.startAt.getTime()).toBeLessThanOrEqual(dueBy.getTime() - 30 * 60_000);
        if (p.mode === 'batch') expect(now.getTime() + 24 * HOUR).toBeLessThanOrEqual(dueBy.getTime() - 30 * 60_000);
        expect(p.expectedNanos).toBeLessThanOrEqual(p.nowNanos);
      }
    }
  });
});
