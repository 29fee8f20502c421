import type { AppConfig } from '../config/app-config';
import { AuthFailures } from './auth-failures';

describe('AuthFailures', () => {
  const failures = (perMinute: number, burst: number) => new AuthFailures({ authFailures: { perMinute, burst } } as AppConfig);

  it('refuses an address once it has spent its burst of failures, until the refill gives one back', () => {
    const f = failures(60, 3); // one a second
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) {
      expect(f.refusal('10.0.0.1', t0)).toBeNull();
      f.failed('10.0.0.1', t0);
    }
    const refused = f.refusal('10.0.0.1', t0) as Error & { headers?: Record<string, string> };
    expect(refused).not.toBeNull();
    expect(refused.message).toMatch(/failed authentications/);
    expect(f.refusal('10.0.0.1', t0 + 999)).not.toBeNull();
    // A second later one failure is back: one, not the burst.
    expect(f.refusal('10.0.0.1', t0 + 1_000)).toBeNull();
    f.failed('10.0.0.1', t0 + 1_000);
    expect(f.refusal('10.0.0.1', t0 + 1_000)).not.toBeNull();
    // Another address has its own bucket.
    expect(f.refusal('10.0.0.2', t0)).toBeNull();
    // Given time, the bucket is full again (never more than the burst).
    expect(f.refusal('10.0.0.1', t0 + 60_000)).toBeNull();
    for (let i = 0; i < 3; i++) f.failed('10.0.0.1', t0 + 60_000);
    expect(f.refusal('10.0.0.1', t0 + 60_000)).not.toBeNull();
  });
});
