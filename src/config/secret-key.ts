import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { SECRET_KEY_BYTES } from '../common/secret-box';
import { ConfigError, EnvReader } from './env-reader';

/**
 * The server key that seals stored secrets (src/common/secret-box.ts). `INKSTONE_SECRET_KEY` is
 * 32 bytes as base64 or hex; `INKSTONE_SECRET_KEY_PREVIOUS` lists keys that still open older values
 * while a key is rotated. With DATABASE_URL set the key is required (every instance needs the same
 * one); with the embedded database it may be left unset, and the service keeps a generated key in
 * its data directory instead.
 */
export interface SecretKeyConfig {
  key?: Buffer;
  previous: Buffer[];
  /** Where the generated key lives when INKSTONE_SECRET_KEY is unset (embedded database only). */
  keyFile?: string;
}

const HOW = `32 random bytes as base64 or hex, e.g. from "openssl rand -base64 ${SECRET_KEY_BYTES}"`;

export function readSecretKeys(e: EnvReader, dataDir: string): SecretKeyConfig {
  const text = e.optionalSecret('INKSTONE_SECRET_KEY');
  const previous = (e.optionalSecret('INKSTONE_SECRET_KEY_PREVIOUS') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s, i) => {
      const k = parseSecretKey(s);
      if (!k) throw new ConfigError('INKSTONE_SECRET_KEY_PREVIOUS', `must be a comma list of keys, each ${HOW} (entry ${i + 1} is not)`);
      return k;
    });
  if (text !== undefined) {
    const key = parseSecretKey(text);
    if (!key) throw new ConfigError('INKSTONE_SECRET_KEY', `must be ${HOW} (got ${text.length} characters)`);
    return { key, previous };
  }
  if (e.has('DATABASE_URL')) {
    throw new ConfigError('INKSTONE_SECRET_KEY', `is required when DATABASE_URL is set: ${HOW}, the same on every instance`);
  }
  return { previous, keyFile: path.join(dataDir, 'secret.key') };
}

/** 32 bytes from 64 hex digits or from base64 (standard or url-safe, padded or not); null otherwise. */
export function parseSecretKey(text: string): Buffer | null {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) return null;
  const key = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return key.length === SECRET_KEY_BYTES ? key : null;
}

export interface ResolvedSecretKeys {
  current: Buffer;
  previous: Buffer[];
  /** Set when the key came from (or was just written to) the key file. */
  keyFile?: string;
  created: boolean;
}

/**
 * The keys to seal and open with: from the environment, or from the key file (made on first start;
 * `onCreated` is told, whoever resolves the keys first: the sealing of secrets, or the console's
 * session cookies).
 */
export function resolveSecretKeys(c: SecretKeyConfig, onCreated?: (keyFile: string) => void): ResolvedSecretKeys {
  if (c.key) return { current: c.key, previous: c.previous, created: false };
  if (!c.keyFile) throw new ConfigError('INKSTONE_SECRET_KEY', `is required: ${HOW}`);
  const { key, created } = loadOrCreateKeyFile(c.keyFile);
  if (created) onCreated?.(c.keyFile);
  return { current: key, previous: c.previous, keyFile: c.keyFile, created };
}

/** The start-up line for a key file made now (it must be backed up with the data). */
export function keyFileCreated(keyFile: string): void {
  new Logger('Secrets').log({ msg: 'INKSTONE_SECRET_KEY is not set: generated a key for stored secrets (back it up with the data directory)', keyFile });
}

/**
 * Reads the key file, or creates it (mode 0600, in a directory only its owner can enter when the
 * directory is new) with a fresh random key. The new file appears whole or not at all: it is written
 * aside and linked into place, so a crash cannot leave half a key, and two processes cannot both
 * create one.
 */
export function loadOrCreateKeyFile(file: string): { key: Buffer; created: boolean } {
  const problem = (what: string) => new ConfigError('INKSTONE_SECRET_KEY', `is not set, and the key file ${file} ${what}`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    try {
      const fd = fs.openSync(tmp, 'wx', 0o600);
      try {
        fs.fchmodSync(fd, 0o600); // whatever the umask
        fs.writeSync(fd, `${randomBytes(SECRET_KEY_BYTES).toString('base64')}\n`);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      try {
        fs.linkSync(tmp, file);
        const key = parseSecretKey(fs.readFileSync(file, 'utf8'));
        if (key) return { key, created: true };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // another process made it first: read theirs
      }
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw problem(`cannot be created: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  let stat: fs.Stats;
  let text: string;
  try {
    stat = fs.statSync(file);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw problem(`cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if ((stat.mode & 0o077) !== 0) {
    throw problem(`can be read by other users (mode ${(stat.mode & 0o777).toString(8)}); run "chmod 600 ${file}"`);
  }
  const key = parseSecretKey(text);
  if (!key) throw problem(`does not hold ${HOW}`);
  return { key, created: false };
}
