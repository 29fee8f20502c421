import { isIP } from 'node:net';
import { isValidTimeZone } from '../common/time-zone';

/**
 * Typed reads of environment variables. Every read either returns a value of the right type or
 * throws a ConfigError that names the variable and says what is wrong with it, in one line. Secret
 * values are never echoed back.
 */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    readonly problem: string,
  ) {
    super(`${variable} ${problem}`);
    this.name = 'ConfigError';
  }
}

function shown(raw: string): string {
  return raw.length > 40 ? `"${raw.slice(0, 37)}..."` : `"${raw}"`;
}

/**
 * A host name as resolvers take it: dot-separated labels of letters, digits, inner hyphens and
 * underscores (container names: `inkstone_app`), maybe a final dot, 253 characters at most.
 */
const HOST_NAME = /^(?=.{1,254}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

export class EnvReader {
  constructor(private readonly env: NodeJS.ProcessEnv) {}

  private raw(name: string): string | undefined {
    const v = this.env[name];
    if (v === undefined) return undefined;
    const t = v.trim();
    return t === '' ? undefined : t;
  }

  private fail(name: string, problem: string): never {
    throw new ConfigError(name, problem);
  }

  has(name: string): boolean {
    return this.raw(name) !== undefined;
  }

  string(name: string, opts: { default?: string; pattern?: RegExp; describe?: string } = {}): string {
    const v = this.optionalString(name, opts);
    if (v !== undefined) return v;
    return this.fail(name, 'is required but not set');
  }

  optionalString(name: string, opts: { default?: string; pattern?: RegExp; describe?: string } = {}): string | undefined {
    const v = this.raw(name);
    if (v === undefined) return opts.default;
    if (opts.pattern && !opts.pattern.test(v)) {
      this.fail(name, `must be ${opts.describe ?? `a value matching ${opts.pattern}`} (got ${shown(v)})`);
    }
    return v;
  }

  /** A secret: required, with a minimum length; its value never appears in an error. */
  secret(name: string, minLength: number): string {
    const v = this.optionalSecret(name, minLength);
    if (v === undefined) this.fail(name, 'is required but not set');
    return v;
  }

  /**
   * A secret sent as a Bearer token: also visible ASCII without spaces, and short enough for the
   * Authorization header a request may carry (512 characters, "Bearer " included). One with a space,
   * a non-ASCII character (sent as UTF-8, read back as Latin-1) or longer was taken at start and
   * matched by no request: the operator locked out, each try counted as a failed sign-in.
   */
  bearerSecret(name: string, minLength: number): string {
    const v = this.secret(name, minLength);
    if (!/^[\x21-\x7e]+$/.test(v)) this.fail(name, 'must be visible ASCII characters without spaces (it is sent as a Bearer token)');
    if (v.length > 505) this.fail(name, `must be at most 505 characters long, to fit the Authorization header (got ${v.length})`);
    return v;
  }

  optionalSecret(name: string, minLength = 1): string | undefined {
    const v = this.raw(name);
    if (v !== undefined && v.length < minLength) {
      this.fail(name, `must be at least ${minLength} characters long (got ${v.length})`);
    }
    return v;
  }

  int(name: string, opts: { min: number; max: number; default: number }): number {
    const v = this.raw(name);
    if (v === undefined) return opts.default;
    if (!/^-?\d+$/.test(v)) this.fail(name, `must be an integer (got ${shown(v)})`);
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < opts.min || n > opts.max) {
      this.fail(name, `must be an integer from ${opts.min} to ${opts.max} (got ${shown(v)})`);
    }
    return n;
  }

  /** A decimal fraction such as 0.5, given as text so it is never a float on the wire. */
  ratio(name: string, opts: { default: number; min: number; max: number }): number {
    const v = this.raw(name);
    if (v === undefined) return opts.default;
    if (!/^\d+(\.\d+)?$/.test(v)) this.fail(name, `must be a decimal number (got ${shown(v)})`);
    const n = Number(v);
    if (n < opts.min || n > opts.max) this.fail(name, `must be from ${opts.min} to ${opts.max} (got ${shown(v)})`);
    return n;
  }

  /**
   * An address to listen on: an IP address (`0.0.0.0`, `::`, `127.0.0.1`) or a host name
   * (`localhost`). A port or a scheme in it (`0.0.0.0:3000`, `http://localhost`) is refused here,
   * in one line, rather than by the listener's lookup at start.
   */
  host(name: string, def: string): string {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (isIP(v) || HOST_NAME.test(v)) return v;
    return this.fail(name, `must be an IP address or a host name, without a port (such as 0.0.0.0, :: or localhost; got ${shown(v)})`);
  }

  oneOf<T extends string>(name: string, values: readonly T[], def: T): T {
    const v = this.raw(name);
    if (v === undefined) return def;
    if (!(values as readonly string[]).includes(v)) {
      this.fail(name, `must be one of ${values.join(', ')} (got ${shown(v)})`);
    }
    return v as T;
  }

  bool(name: string, def: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return def;
    const l = v.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(l)) return true;
    if (['0', 'false', 'no', 'off'].includes(l)) return false;
    return this.fail(name, `must be true or false (got ${shown(v)})`);
  }

  url(name: string, protocols: string[], opts: { default?: string } = {}): string | undefined {
    const v = this.raw(name);
    if (v === undefined) return opts.default;
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      // (The value is not repeated: it may hold a password.)
      const starts = protocols.some((p) => v.toLowerCase().startsWith(`${p}://`));
      return this.fail(
        name,
        starts
          ? `is not a valid URL (scheme://user:password@host:port/name: a port is a number; a password with @, :, / or % must be percent-encoded)`
          : `must be a URL starting with ${protocols.map((p) => `${p}://`).join(' or ')}`,
      );
    }
    const proto = u.protocol.replace(/:$/, '');
    if (!protocols.includes(proto)) {
      this.fail(name, `must start with ${protocols.map((p) => `${p}://`).join(' or ')} (got ${proto}://)`);
    }
    return v;
  }

  list(name: string, item: RegExp, describe: string): string[] {
    const v = this.raw(name);
    if (v === undefined) return [];
    const items = v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const it of items) {
      if (!item.test(it)) this.fail(name, `must be a comma list of ${describe} (bad entry ${shown(it)})`);
    }
    return items;
  }

  timezone(name: string, def: string): string {
    const v = this.raw(name) ?? def;
    if (!isValidTimeZone(v)) this.fail(name, `must be an IANA time zone such as Asia/Shanghai (got ${shown(v)})`);
    return v;
  }
}
