import { cheaperPlan } from './model-router';
import type { WorkPlan } from './work-planner';

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

  it('takes the cheaper plan, and of two as cheap the one that starts sooner (never a wait for no saving)', () => {
    const now = plan('dashscope:qwen-flash', 100n, 'now', '2026-12-01T02:15:00Z');
    const later = plan('deepseek:deepseek-flash', 100n, 'off_peak', '2026-12-01T04:00:00Z');
    const cheaperLater = plan('deepseek:deepseek-flash', 99n, 'off_peak', '2026-12-01T04:00:00Z');
    expect(cheaperPlan(now, later)).toBe(true);
    expect(cheaperPlan(later, now)).toBe(false);
    expect(cheaperPlan(cheaperLater, now)).toBe(true);
    expect(cheaperPlan(now, cheaperLater)).toBe(false);
    expect(cheaperPlan(now, now)).toBe(false);
  });
});
