import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * API keys look like `isk_<prefix>_<secret>`: the prefix (12 url-safe characters) finds the row,
 * the secret is 32 random bytes. Only SHA-256 of the whole key is stored: the key has 256 bits of
 * entropy, so a slow password hash would add cost and no safety.
 */
const KEY_PATTERN = /^isk_([A-Za-z0-9_-]{12})_([A-Za-z0-9_-]{43})$/;

export interface NewApiKeySecret {
  key: string;
  prefix: string;
  hash: Buffer;
}

export function generateApiKey(): NewApiKeySecret {
  const prefix = randomBytes(9).toString('base64url');
  const secret = randomBytes(32).toString('base64url');
  const key = `isk_${prefix}_${secret}`;
  return { key, prefix, hash: hashSecret(key) };
}

export function hashSecret(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** The prefix of a well-formed key, or null for anything else. */
export function parseApiKey(presented: string): { prefix: string } | null {
  const m = KEY_PATTERN.exec(presented);
  return m ? { prefix: m[1] } : null;
}

/** Constant-time comparison of a presented secret against a stored SHA-256 digest. */
export function secretMatches(presented: string, storedHash: Buffer): boolean {
  return hashMatches(hashSecret(presented), storedHash);
}

/** Constant-time comparison of two SHA-256 digests (a presented secret's, hashed once, and a stored one). */
export function hashMatches(presentedHash: Buffer, storedHash: Buffer): boolean {
  return storedHash.length === presentedHash.length && timingSafeEqual(presentedHash, storedHash);
}
