import { retryBackoffMs } from './grading.worker';

describe('retryBackoffMs', () => {
  it('doubles from the base with each attempt, ±25%', () => {
    expect(retryBackoffMs(1, 5_000, 600_000, 0.5)).toBe(5_000);
    expect(retryBackoffMs(3, 5_000, 600_000, 0.5)).toBe(20_000);
    expect(retryBackoffMs(3, 5_000, 600_000, 0)).toBe(15_000);
    expect(retryBackoffMs(3, 5_000, 600_000, 1)).toBe(25_000);
  });

  it('never waits past the ceiling, however many attempts (a finite number even at the 50th)', () => {
    for (const attempt of [19, 42, 50, 10_000]) {
      for (const r of [0, 0.5, 0.999]) {
        const ms = retryBackoffMs(attempt, 3_600_000, 600_000, r);
        expect(Number.isFinite(ms)).toBe(true);
        expect(ms).toBeGreaterThanOrEqual(360_000);
        expect(ms).toBeLessThanOrEqual(600_000);
      }
    }
    // spread at the ceiling too: jobs that failed together do not all come back together
    expect(retryBackoffMs(40, 3_600_000, 600_000, 0.6)).toBeLessThan(retryBackoffMs(40, 3_600_000, 600_000, 0.9));
  });
});
