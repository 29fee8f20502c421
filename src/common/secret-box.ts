import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * Secrets Inkstone has to read back (webhook signing secrets) are stored sealed with AES-256-GCM
 * under the server key, as text:
 *
 *     enc:v1:<key id>:<nonce>:<tag>:<ciphertext>
 *
 * key id: 8 hex digits naming the key (a hash of it, so no key is ever stored or logged); nonce:
 * 12 random bytes; tag: the 16-byte GCM tag; nonce, tag and ciphertext in base64url. The context
 * (which secret of which tenant) is authenticated too, so a sealed value copied to another row or
 * column does not open. Values are always sealed with the current key; the previous keys only open.
 */
export const SEALED_PREFIX = 'enc:v1:';
const SEALED = /^enc:v1:([0-9a-f]{8}):([A-Za-z0-9_-]{16}):([A-Za-z0-9_-]{22}):([A-Za-z0-9_-]*)$/;

export const SECRET_KEY_BYTES = 32;

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

/** The id a key is stored under: 8 hex digits of a SHA-256 of it (not enough to learn anything). */
export function keyIdOf(key: Buffer): string {
  return createHash('sha256').update('inkstone secret key id\0').update(key).digest('hex').slice(0, 8);
}

/** The key id a sealed value names, or null when the text is not a sealed value. */
export function sealedKeyId(sealed: string): string | null {
  return SEALED.exec(sealed)?.[1] ?? null;
}

export class SecretBox {
  readonly currentKeyId: string;
  private readonly current: Buffer;
  private readonly keys = new Map<string, Buffer[]>();

  /**
   * @param source where the current key came from, for messages ("INKSTONE_SECRET_KEY", or the key file)
   */
  constructor(
    current: Buffer,
    previous: readonly Buffer[] = [],
    readonly source = 'INKSTONE_SECRET_KEY',
  ) {
    for (const k of [current, ...previous]) {
      if (k.length !== SECRET_KEY_BYTES) throw new SecretBoxError(`a secret key must be ${SECRET_KEY_BYTES} bytes (got ${k.length})`);
      const id = keyIdOf(k);
      const same = this.keys.get(id) ?? [];
      if (!same.some((s) => s.equals(k))) same.push(k);
      this.keys.set(id, same);
    }
    this.currentKeyId = keyIdOf(current);
    this.current = current;
  }

  /** Whether a key with this id is configured (current or previous). */
  knows(keyId: string): boolean {
    return this.keys.has(keyId);
  }

  seal(plaintext: string, context: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.current, nonce);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return `${SEALED_PREFIX}${this.currentKeyId}:${nonce.toString('base64url')}:${cipher.getAuthTag().toString('base64url')}:${ct.toString('base64url')}`;
  }

  open(sealed: string, context: string): string {
    const m = SEALED.exec(sealed);
    if (!m) throw new SecretBoxError('a stored secret is not in the sealed format (enc:v1:…)');
    const [, keyId, nonce, tag, ct] = m;
    const candidates = this.keys.get(keyId);
    if (!candidates) {
      throw new SecretBoxError(
        `a stored secret was sealed with key ${keyId}, which is neither ${this.source} (key ${this.currentKeyId}) nor in INKSTONE_SECRET_KEY_PREVIOUS`,
      );
    }
    for (const key of candidates) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'));
        decipher.setAAD(Buffer.from(context, 'utf8'));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        /* another key with the same id, or a value that was altered */
      }
    }
    throw new SecretBoxError(`a stored secret sealed with key ${keyId} does not open: it was altered or belongs to another record`);
  }

  /** Whether a sealed value is under the current key (otherwise it is due to be sealed again). */
  isCurrent(sealed: string): boolean {
    return sealedKeyId(sealed) === this.currentKeyId;
  }
}
