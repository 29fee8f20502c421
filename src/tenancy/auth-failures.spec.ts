import { ApiError } from '../common/errors';
import type { AppConfig } from '../config/app-config';
import { addressKey, AuthFailures } from './auth-failures';

describe('AuthFailures', () => {
  const failures = (perMinute: number, burst: number) => new AuthFailures({ authFailures: { perMinute, burst } } as AppConfig);

  it('counts an IPv6 client by its /64 (it could change address per request), an IPv4 one by its address', () => {
    expect(addressKey('203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:fffe')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    const f = failures(60, 2);
    f.failed('2001:db8:1:2::a', 0);
    f.failed('2001:db8:1:2::b', 0);
    expect(f.refusal('2001:db8:1:2::c', 0)).not.toBeNull();
    expect(f.refusal('2001:db8:1:3::a', 0)).toBeNull();
  });

  it('guards a check: a 401 counts against the address, another error does not; past the burst only what is known good is checked', async () => {
    const f = failures(1, 2);
    const unknownKey = () => Promise.reject(new ApiError('UNAUTHENTICATED', 'Invalid or revoked API key'));
    let checks = 0;
    const counted = () => (checks++, Promise.resolve('tenant'));
    await expect(f.guard('10.0.0.9', () => false, () => Promise.reject(new ApiError('SERVICE_UNAVAILABLE', 'database away')))).rejects.toMatchObject({ code: 'SERVICE_UNAVAILABLE' });
    await expect(f.guard('10.0.0.9', () => false, counted)).resolves.toBe('tenant');
    for (let i = 0; i < 2; i++) await expect(f.guard('10.0.0.9', () => false, unknownKey)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    // The burst is spent: an unknown credential is not even checked; a known good one is.
    await expect(f.guard('10.0.0.9', () => false, counted)).rejects.toMatchObject({ code: 'RATE_LIMITED' });
    expect(checks).toBe(1);
    await expect(f.guard('10.0.0.9', () => true, counted)).resolves.toBe('tenant');
    expect(checks).toBe(2);
  });

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
