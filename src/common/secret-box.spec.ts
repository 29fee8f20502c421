import { randomBytes } from 'node:crypto';
import { keyIdOf, SecretBox, SecretBoxError, sealedKeyId } from './secret-box';

describe('SecretBox (AES-256-GCM sealed secrets)', () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const secret = 'whsec_0123456789abcdef-secret';
  const ctx = 'inkstone:tenants.payment_webhook_secret_enc:6f1c1a43-2f5e-4d4f-9a41-0d0f4b0d2a11';

  it('seals to a versioned text with key id, nonce, tag and ciphertext, and opens it again', () => {
    const box = new SecretBox(k1);
    const sealed = box.seal(secret, ctx);
    expect(sealed).toMatch(/^enc:v1:[0-9a-f]{8}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22}:[A-Za-z0-9_-]+$/);
    expect(sealedKeyId(sealed)).toBe(keyIdOf(k1));
    expect(box.open(sealed, ctx)).toBe(secret);
    // A fresh nonce every time: the same secret never seals to the same text.
    expect(box.seal(secret, ctx)).not.toBe(sealed);
  });

  it('shows nothing of the secret: not the plaintext, nor its base64, base64url or hex', () => {
    const sealed = new SecretBox(k1).seal(secret, ctx);
    for (const form of [secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url'), Buffer.from(secret).toString('hex')]) {
      expect(sealed).not.toContain(form);
      expect(sealed).not.toContain(form.slice(0, 12));
    }
  });

  it('opens a value sealed with a previous key, and always seals with the current one', () => {
    const old = new SecretBox(k1).seal(secret, ctx);
    const rotated = new SecretBox(k2, [k1]);
    expect(rotated.open(old, ctx)).toBe(secret);
    expect(rotated.isCurrent(old)).toBe(false);
    const resealed = rotated.seal(secret, ctx);
    expect(sealedKeyId(resealed)).toBe(keyIdOf(k2));
    expect(rotated.isCurrent(resealed)).toBe(true);
  });

  it('fails clearly with a wrong key, naming the key ids and not the secret', () => {
    const sealed = new SecretBox(k1).seal(secret, ctx);
    const wrong = new SecretBox(k2);
    expect(() => wrong.open(sealed, ctx)).toThrow(SecretBoxError);
    expect(() => wrong.open(sealed, ctx)).toThrow(
      `a stored secret was sealed with key ${keyIdOf(k1)}, which is neither INKSTONE_SECRET_KEY (key ${keyIdOf(k2)}) nor in INKSTONE_SECRET_KEY_PREVIOUS`,
    );
  });

  it('refuses a value that was altered, or moved to another tenant or column', () => {
    const box = new SecretBox(k1);
    const sealed = box.seal(secret, ctx);
    const parts = sealed.split(':');
    const ct = Buffer.from(parts[5], 'base64url');
    ct[0] ^= 1;
    const altered = [...parts.slice(0, 5), ct.toString('base64url')].join(':');
    expect(() => box.open(altered, ctx)).toThrow(/does not open: it was altered or belongs to another record/);
    expect(() => box.open(sealed, ctx.replace('payment', 'alert'))).toThrow(/does not open/);
    expect(() => box.open(sealed, ctx.replace('6f1c1a43', '00000000'))).toThrow(/does not open/);
    expect(() => box.open(secret, ctx)).toThrow(/not in the sealed format/);
  });

  it('takes only 32-byte keys', () => {
    expect(() => new SecretBox(randomBytes(16))).toThrow(/32 bytes/);
    expect(() => new SecretBox(k1, [randomBytes(31)])).toThrow(/32 bytes/);
  });
});
