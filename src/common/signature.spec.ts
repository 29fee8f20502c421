import { createHmac } from 'node:crypto';
import { signPayload, verifySignature } from './signature';

/**
 * A fixed vector written from the webhook spec, not from signature.ts: `X-Inkstone-Signature:
 * t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` keyed with the tenant's webhook secret.
 * The hex strings were computed once with openssl, e.g.
 *   printf '%s' "1800000000.$BODY" | openssl dgst -sha256 -hmac "$SECRET"
 */
const VECTOR = {
  secret: 'whsec_fixed_vector_7f3a9c2e41d85b60',
  t: 1_800_000_000,
  body: '{"id":"evt_vector_1","type":"payment.succeeded","data":{"orderId":"ord_42","amount":"199.00","payer":"晨光教育"}}',
  /** HMAC-SHA256 of "1800000000." followed by the body's UTF-8 bytes. */
  v1: '6c9b7f484236e5cac4f751fb65f34ee5ae540cad3af198cb52c2c31c71e178c2',
  /** HMAC-SHA256 of the body alone: what a signer that drops "<t>." would send. */
  v1BodyOnly: '6fac01f0d1d0a0cf37a390b3e8a5dddfefb84a5a3bdb882520fd55e42300d6b8',
};

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

  describe('fixed test vector from the spec', () => {
    const header = `t=${VECTOR.t},v1=${VECTOR.v1}`;

    it('is what HMAC-SHA256 of "<t>.<raw body>" gives (the vector checks itself with node:crypto)', () => {
      expect(createHmac('sha256', VECTOR.secret).update(`${VECTOR.t}.${VECTOR.body}`, 'utf8').digest('hex')).toBe(VECTOR.v1);
      expect(createHmac('sha256', VECTOR.secret).update(VECTOR.body, 'utf8').digest('hex')).toBe(VECTOR.v1BodyOnly);
    });

    it('signPayload produces exactly that header', () => {
      expect(signPayload(VECTOR.secret, VECTOR.body, VECTOR.t)).toBe(header);
    });

    it('verifySignature accepts exactly that header, on the raw bytes or the text', () => {
      expect(verifySignature(header, VECTOR.secret, Buffer.from(VECTOR.body, 'utf8'), VECTOR.t)).toEqual({ ok: true });
      expect(verifySignature(header, VECTOR.secret, VECTOR.body, VECTOR.t)).toEqual({ ok: true });
    });

    it('refuses a v1 that signs the body without "<t>."', () => {
      const bodyOnly = `t=${VECTOR.t},v1=${VECTOR.v1BodyOnly}`;
      expect(verifySignature(bodyOnly, VECTOR.secret, Buffer.from(VECTOR.body, 'utf8'), VECTOR.t)).toEqual({ ok: false, reason: 'mismatch' });
    });

    it('refuses the vector under another timestamp (the timestamp is signed)', () => {
      const moved = `t=${VECTOR.t + 1},v1=${VECTOR.v1}`;
      expect(verifySignature(moved, VECTOR.secret, VECTOR.body, VECTOR.t)).toEqual({ ok: false, reason: 'mismatch' });
    });
  });
});
