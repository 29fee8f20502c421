/**
 * A circuit breaker per key (a model, or a provider). Closed: calls pass and consecutive failures
 * are counted. After `threshold` of them it opens: calls are refused for `cooldownMs`. Then one
 * probe is let through (half-open): success closes it, failure opens it again. `trip` opens it at
 * once (a provider with no balance is out until a probe succeeds).
 */
type State = { state: 'closed' | 'open' | 'half_open'; failures: number; openedAt: number };

export class CircuitBreaker {
  private readonly states = new Map<string, State>();

  constructor(
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  private get(key: string): State {
    let s = this.states.get(key);
    if (!s) {
      s = { state: 'closed', failures: 0, openedAt: 0 };
      this.states.set(key, s);
    }
    return s;
  }

  /** May a call go to `key` now? Letting a half-open probe through counts as its start. */
  allow(key: string): boolean {
    const s = this.get(key);
    if (s.state === 'closed') return true;
    if (s.state === 'open' && this.now() - s.openedAt >= this.cooldownMs) {
      s.state = 'half_open';
      return true;
    }
    return false;
  }

  state(key: string): 'closed' | 'open' | 'half_open' {
    const s = this.get(key);
    if (s.state === 'open' && this.now() - s.openedAt >= this.cooldownMs) return 'half_open';
    return s.state;
  }

  /** How long until `key` lets a call (or a probe) through again: 0 when it does now. */
  reopensInMs(key: string): number {
    const s = this.states.get(key);
    if (!s || s.state !== 'open') return 0;
    return Math.max(0, this.cooldownMs - (this.now() - s.openedAt));
  }

  success(key: string): void {
    const s = this.get(key);
    s.state = 'closed';
    s.failures = 0;
  }

  failure(key: string): void {
    const s = this.get(key);
    if (s.state === 'half_open') return this.trip(key);
    s.failures++;
    if (s.failures >= this.threshold) this.trip(key);
  }

  trip(key: string): void {
    const s = this.get(key);
    s.state = 'open';
    s.openedAt = this.now();
  }

  /** A half-open probe that ended without a verdict (it never reached the provider). */
  abandon(key: string): void {
    const s = this.get(key);
    if (s.state === 'half_open') {
      s.state = 'open';
      s.openedAt = this.now() - this.cooldownMs; // the next call may probe again at once
    }
  }
}
