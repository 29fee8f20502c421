import { signPayload, verifySignature } from './signature';

describe('webhook signatures', () => {
  const secret = 'whsec_test_0123456789abcdef';
  const body = '{"id":"evt_1","type":"payment.succeeded"}';
  const now = 1_800_000_000;

  it('accepts a good signature, and one of several v1 entries', () => {
    expect(verifySignature(signPayload(secret, body, now), secret, Buffer.from(body), now)).toEqual({ ok: true });
    const rotated = `${signPayload(secret, body, now)},v1=${'0'.repeat(64)}`;
    expect(verifySignature(rotated, secret, body, now)).toEqual({ ok: true });
  });

  it.each([
    [undefined, 'missing'],
    ['garbage', 'malformed'],
    [`t=${now},v1=xyz`, 'malformed'],
    [`t=${now},v1=${'a'.repeat(64)}`, 'mismatch'],
  ])('refuses %p as %s', (header, reason) => {
    expect(verifySignature(header, secret, body, now)).toEqual({ ok: false, reason });
  });

  it('refuses a signature more than five minutes away, either way', () => {
    expect(verifySignature(signPayload(secret, body, now - 301), secret, body, now)).toEqual({ ok: false, reason: 'stale' });
    expect(verifySignature(signPayload(secret, body, now + 301), secret, body, now)).toEqual({ ok: false, reason: 'stale' });
    expect(verifySignature(signPayload(secret, body, now - 299), secret, body, now)).toEqual({ ok: true });
  });

  it('refuses a changed body or another secret', () => {
    const header = signPayload(secret, body, now);
    expect(verifySignature(header, secret, body.replace('evt_1', 'evt_2'), now).ok).toBe(false);
    expect(verifySignature(header, 'another-secret-of-some-length', body, now).ok).toBe(false);
  });
});
