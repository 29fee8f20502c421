import { CircuitBreaker } from './circuit-breaker';

describe('CircuitBreaker', () => {
  let now = 0;
  const clock = () => now;

  beforeEach(() => (now = 1_000));

  it('opens after the threshold of consecutive failures and refuses calls while open', () => {
    const b = new CircuitBreaker(3, 10_000, clock);
    b.failure('m');
    b.failure('m');
    b.success('m'); // a success resets the count
    b.failure('m');
    b.failure('m');
    expect(b.allow('m')).toBe(true);
    b.failure('m');
    expect(b.state('m')).toBe('open');
    expect(b.allow('m')).toBe(false);
  });

  it('lets one probe through after the cooldown, closes on its success', () => {
    const b = new CircuitBreaker(1, 10_000, clock);
    b.failure('m');
    now += 9_999;
    expect(b.allow('m')).toBe(false);
    now += 1;
    expect(b.allow('m')).toBe(true); // the probe
    expect(b.allow('m')).toBe(false); // only one at a time
    b.success('m');
    expect(b.state('m')).toBe('closed');
    expect(b.allow('m')).toBe(true);
  });

  it('opens again when the probe fails', () => {
    const b = new CircuitBreaker(5, 1_000, clock);
    b.trip('p');
    now += 1_000;
    expect(b.allow('p')).toBe(true);
    b.failure('p');
    expect(b.state('p')).toBe('open');
    expect(b.allow('p')).toBe(false);
  });

  it('lets the next call probe at once when a probe ended without a verdict', () => {
    const b = new CircuitBreaker(1, 1_000, clock);
    b.trip('p');
    now += 1_000;
    expect(b.allow('p')).toBe(true);
    b.abandon('p');
    expect(b.allow('p')).toBe(true);
  });

  it('keeps keys apart', () => {
    const b = new CircuitBreaker(1, 1_000, clock);
    b.failure('a');
    expect(b.allow('a')).toBe(false);
    expect(b.allow('b')).toBe(true);
  });
});

describe('CircuitBreaker.reopensInMs', () => {
  it('says how long an open breaker stays shut, and 0 when calls may go', () => {
    let now = 1_000;
    const b = new CircuitBreaker(1, 30_000, () => now);
    expect(b.reopensInMs('m')).toBe(0);
    b.failure('m');
    expect(b.reopensInMs('m')).toBe(30_000);
    now += 12_000;
    expect(b.reopensInMs('m')).toBe(18_000);
    now += 18_000;
    expect(b.reopensInMs('m')).toBe(0);
  });
});
