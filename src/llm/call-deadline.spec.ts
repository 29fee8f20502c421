import { CallDeadline } from './provider-client';

describe('CallDeadline: the total timeout of a provider call, and its caller going away', () => {
  afterEach(() => jest.useRealTimers());

  it('aborts with a TimeoutError when the time is up', () => {
    jest.useFakeTimers();
    const d = new CallDeadline(1_000);
    jest.advanceTimersByTime(999);
    expect(d.signal.aborted).toBe(false);
    jest.advanceTimersByTime(1);
    expect(d.signal.aborted).toBe(true);
    expect(d.timedOut).toBe(true);
    expect((d.signal.reason as DOMException).name).toBe('TimeoutError');
    expect(d.callerWentAway).toBe(false);
  });

  it("aborts when the caller's signal does (also one aborted before), and says so", () => {
    const caller = new AbortController();
    const d = new CallDeadline(60_000, caller.signal);
    caller.abort(new Error('client closed'));
    expect(d.signal.aborted).toBe(true);
    expect(d.callerWentAway).toBe(true);
    expect(d.timedOut).toBe(false);
    d.clear();
    const gone = new AbortController();
    gone.abort();
    const late = new CallDeadline(60_000, gone.signal);
    expect([late.signal.aborted, late.callerWentAway]).toEqual([true, true]);
    late.clear();
  });

  it('once cleared, neither the timer nor the caller aborts it, and nothing is left waiting', () => {
    jest.useFakeTimers();
    const caller = new AbortController();
    const d = new CallDeadline(1_000, caller.signal);
    d.clear();
    expect(jest.getTimerCount()).toBe(0);
    jest.advanceTimersByTime(5_000);
    caller.abort();
    expect(d.signal.aborted).toBe(false);
    expect([d.timedOut, d.callerWentAway]).toEqual([false, false]);
  });
});
