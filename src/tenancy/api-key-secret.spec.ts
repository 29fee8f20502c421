import { createHash } from 'node:crypto';
import { generateApiKey, hashMatches, hashSecret, parseApiKey, secretMatches } from './api-key-secret';

describe('API key secrets', () => {
  it('generates keys of 32 random bytes behind a lookup prefix', () => {
    const a = generateApiKey();
    const b = generateApiKey();
    expect(a.key).toMatch(/^isk_[A-Za-z0-9_-]{12}_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.key.slice(-43), 'base64url')).toHaveLength(32);
    expect(a.key).not.toBe(b.key);
    expect(a.prefix).not.toBe(b.prefix);
    expect(parseApiKey(a.key)).toEqual({ prefix: a.prefix });
  });

  it('stores only the SHA-256 of the key', () => {
    const k = generateApiKey();
    expect(k.hash.equals(createHash('sha256').update(k.key).digest())).toBe(true);
    expect(k.hash.toString('utf8')).not.toContain(k.key.slice(-43));
  });

  it('matches the right key and nothing else', () => {
    const k = generateApiKey();
    expect(secretMatches(k.key, k.hash)).toBe(true);
    const tampered = k.key.slice(0, -1) + (k.key.endsWith('A') ? 'B' : 'A');
    expect(secretMatches(tampered, k.hash)).toBe(false);
    expect(secretMatches(k.key, Buffer.alloc(16))).toBe(false); // wrong digest length: no throw
    expect(secretMatches('', hashSecret('x'))).toBe(false);
    // The same, from a digest computed once by the caller.
    expect(hashMatches(hashSecret(k.key), k.hash)).toBe(true);
    expect(hashMatches(hashSecret(tampered), k.hash)).toBe(false);
    expect(hashMatches(hashSecret(k.key), Buffer.alloc(16))).toBe(false);
  });

  it('rejects malformed keys before any lookup', () => {
    expect(parseApiKey('isk_short_x')).toBeNull();
    expect(parseApiKey('Bearer isk_')).toBeNull();
    expect(parseApiKey('')).toBeNull();
  });
});
