import { cheaperPlan } from './model-router';
import type { WorkPlan } from './work-planner';

const DAY = 24 * 3_600_000;

describe('choosing among the plans of a priority group', () => {
  const at = (iso: string) => new Date(iso);
  const plan = (model: string, expectedNanos: bigint, mode: WorkPlan['mode'], startAt: string): WorkPlan => ({
    mode,
    startAt: at(startAt),
    model,
    window: null,
    expectedNanos,
    nowNanos: expectedNanos,
    plannedAt: at('2026-12-01T02:15:00Z'),
  });

  it('takes the cheaper plan, and of two as cheap the one done sooner (never a wait for no saving)', () => {
    const now = plan('dashscope:qwen-flash', 100n, 'now', '2026-12-01T02:15:00Z');
    const later = plan('deepseek:deepseek-flash', 100n, 'off_peak', '2026-12-01T04:00:00Z');
    const cheaperLater = plan('deepseek:deepseek-flash', 99n, 'off_peak', '2026-12-01T04:00:00Z');
    expect(cheaperPlan(now, later, DAY)).toBe(true);
    expect(cheaperPlan(later, now, DAY)).toBe(false);
    expect(cheaperPlan(cheaperLater, now, DAY)).toBe(true);
    expect(cheaperPlan(now, cheaperLater, DAY)).toBe(false);
    expect(cheaperPlan(now, now, DAY)).toBe(false);
    // A batch starts now and is done a turnaround later: as cheap, a window's plan that ends sooner wins.
    const batch = plan('dashscope:qwen-flash', 100n, 'batch', '2026-12-01T02:15:00Z');
    expect(cheaperPlan(later, batch, DAY)).toBe(true);
    expect(cheaperPlan(batch, later, DAY)).toBe(false);
  });
});
