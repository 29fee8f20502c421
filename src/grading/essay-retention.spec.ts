import { LATE_ROWS_HOURS, lateRowsHours } from './essay-retention';

describe('how far back the cleanup after erasures looks', () => {
  it('48 hours with the default settings, longer when a batch may be waited for longer or the sweeps come further apart', () => {
    expect(lateRowsHours({ batchMaxWaitMs: 86_400_000, retentionSweepMs: 3_600_000 })).toBe(LATE_ROWS_HOURS);
    // The longest the settings allow: a 48 h batch, its rows found by the sweep after next, 24 h apart.
    expect(lateRowsHours({ batchMaxWaitMs: 172_800_000, retentionSweepMs: 86_400_000 })).toBe(48 + 48 + 1);
    expect(lateRowsHours({ batchMaxWaitMs: 172_800_000, retentionSweepMs: 0 })).toBe(49);
  });
});
