import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError, loadConfig } from './app-config';
import { loadOrCreateKeyFile, parseSecretKey, resolveSecretKeys } from './secret-key';

const base = { INKSTONE_ADMIN_TOKEN: 'a-long-enough-operator-token' };
const key = randomBytes(32);

function problemWith(env: Record<string, string>): ConfigError {
  try {
    loadConfig({ ...base, ...env });
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('the server key for stored secrets', () => {
  it('reads 32 bytes as hex or base64 (standard or url-safe, padded or not)', () => {
    for (const text of [key.toString('hex'), key.toString('hex').toUpperCase(), key.toString('base64'), key.toString('base64url'), ` ${key.toString('base64')}\n`]) {
      expect(parseSecretKey(text)?.equals(key)).toBe(true);
    }
    for (const bad of ['', 'short', key.toString('hex').slice(2), randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), `${key.toString('base64')}==`]) {
      expect(parseSecretKey(bad)).toBeNull();
    }
  });

  it('takes INKSTONE_SECRET_KEY and the previous keys from the environment', () => {
    const prev = randomBytes(32);
    const c = loadConfig({ ...base, DATABASE_URL: 'postgres://u@h/db', INKSTONE_SECRET_KEY: key.toString('base64'), INKSTONE_SECRET_KEY_PREVIOUS: ` ${prev.toString('hex')} ,` });
    expect(c.secrets.key?.equals(key)).toBe(true);
    expect(c.secrets.previous.map((p) => p.toString('hex'))).toEqual([prev.toString('hex')]);
    expect(c.secrets.keyFile).toBeUndefined();
  });

  it('with DATABASE_URL set and no key, refuses to start with one line', () => {
    const err = problemWith({ DATABASE_URL: 'postgres://u@h/db' });
    expect(err.variable).toBe('INKSTONE_SECRET_KEY');
    expect(err.message).toBe(
      'INKSTONE_SECRET_KEY is required when DATABASE_URL is set: 32 random bytes as base64 or hex, e.g. from "openssl rand -base64 32", the same on every instance',
    );
  });

  it('names a bad key without echoing it', () => {
    const bad = 'not-a-key-but-a-secret-anyway';
    const err = problemWith({ INKSTONE_SECRET_KEY: bad });
    expect(err.message).toBe(`INKSTONE_SECRET_KEY must be 32 random bytes as base64 or hex, e.g. from "openssl rand -base64 32" (got ${bad.length} characters)`);
    expect(err.message).not.toContain(bad);
    const prev = problemWith({ INKSTONE_SECRET_KEY: key.toString('hex'), INKSTONE_SECRET_KEY_PREVIOUS: `${randomBytes(32).toString('hex')},${bad}` });
    expect(prev.message).toBe('INKSTONE_SECRET_KEY_PREVIOUS must be a comma list of keys, each 32 random bytes as base64 or hex, e.g. from "openssl rand -base64 32" (entry 2 is not)');
    expect(prev.message).not.toContain(bad);
  });

  describe('the key file of the embedded default', () => {
    let dir: string;
    beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inkstone-key-'))));
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('is used when neither the key nor DATABASE_URL is set', () => {
      const c = loadConfig({ ...base, INKSTONE_DATA_DIR: dir });
      expect(c.secrets).toEqual({ previous: [], keyFile: path.join(dir, 'secret.key') });
      expect(fs.existsSync(path.join(dir, 'secret.key'))).toBe(false); // reading the config writes nothing
    });

    it('is made on first start with mode 0600 and reused after', () => {
      const file = path.join(dir, 'data', 'secret.key');
      // Whoever resolves the keys first is told the file was made (the start-up line), once.
      const told: string[] = [];
      const first = resolveSecretKeys({ previous: [], keyFile: file }, (f) => told.push(f));
      expect(first.created).toBe(true);
      expect(told).toEqual([file]);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(parseSecretKey(fs.readFileSync(file, 'utf8'))?.equals(first.current)).toBe(true);
      const again = resolveSecretKeys({ previous: [], keyFile: file }, (f) => told.push(f));
      expect(again.created).toBe(false);
      expect(told).toEqual([file]);
      expect(again.current.equals(first.current)).toBe(true);
      expect(fs.readdirSync(path.dirname(file))).toEqual(['secret.key']); // nothing left aside
    });

    it('refuses a key file other users can read, or one that holds no key', () => {
      const file = path.join(dir, 'secret.key');
      fs.writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o644 });
      fs.chmodSync(file, 0o644);
      expect(() => loadOrCreateKeyFile(file)).toThrow(`INKSTONE_SECRET_KEY is not set, and the key file ${file} can be read by other users (mode 644); run "chmod 600 ${file}"`);
      fs.chmodSync(file, 0o600);
      expect(loadOrCreateKeyFile(file).key.equals(key)).toBe(true);
      fs.writeFileSync(file, 'garbage\n');
      expect(() => loadOrCreateKeyFile(file)).toThrow(/does not hold 32 random bytes as base64 or hex/);
    });
  });
});
