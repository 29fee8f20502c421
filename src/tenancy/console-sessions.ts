import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { TtlCache } from '../common/ttl-cache';
import { AppConfig, CONFIG } from '../config/app-config';
import { keyFileCreated, resolveSecretKeys } from '../config/secret-key';
import { ClusterBus } from '../db/cluster-bus';
import { tenantQuery } from '../db/tenant-scope';

/** The console's session cookie over plain HTTP (a development server, a local network). */
export const SESSION_COOKIE = 'inkstone_session';
/**
 * Its name over HTTPS. A browser takes a cookie of a `__Host-` name only from this host itself, over
 * HTTPS, for Path=/ and without a Domain: a sibling host (another school's site under the same parent
 * domain) cannot plant one, where a lone planted `inkstone_session` signed a teacher into the
 * planter's school.
 */
export const SECURE_SESSION_COOKIE = '__Host-inkstone_session';

/** A request's scheme and headers: what says whether the client's hop was HTTPS. */
export type ClientHop = { protocol?: string; headers: Record<string, string | string[] | undefined> };

/**
 * Over HTTPS (or behind a proxy that says so) the cookie is Secure and named SECURE_SESSION_COOKIE:
 * the client's hop is the first of a list (`https,http`, or two headers joined), in any case, in
 * X-Forwarded-Proto or in Forwarded's proto= (only an exact `https` was read: a proxy that appends
 * left the cookie unsecured).
 */
export function secure(req: ClientHop): boolean {
  if (req.protocol === 'https') return true;
  const first = (v: string | string[] | undefined) => String(Array.isArray(v) ? v[0] : (v ?? '')).split(',')[0].trim().toLowerCase();
  if (first(req.headers['x-forwarded-proto']) === 'https') return true;
  return /^proto="?https"?$/.test(first(req.headers.forwarded).split(';').map((p) => p.trim()).find((p) => p.startsWith('proto=')) ?? '');
}
/** The header a state-changing request made with the session cookie must carry. */
export const CSRF_HEADER = 'x-csrf-token';
/**
 * The key id a console page was signed in with, sent on its calls: a sign-in in another tab of the
 * same browser replaces the cookie, and a page still showing the first school or role must not
 * read the other's data under its own name (its writes were already refused on the CSRF token).
 */
export const SESSION_KEY_HEADER = 'x-inkstone-session-key';
/**
 * The same key id as a query parameter, for what the browser requests without the console's code
 * (a CSV download link, an EventSource), which can carry no header of the page's own.
 */
export const SESSION_KEY_PARAM = 'sessionKey';

/**
 * A read whose URL carries SESSION_KEY_PARAM: the parameter is taken off the query (no route has it,
 * and a route's query is validated against what it declares) and read as the session-key header,
 * unless the request sends that header itself. A repeated parameter is no key id (a mismatch).
 */
export function sessionKeyFromQuery(req: { method: string; query?: unknown; headers: Record<string, string | string[] | undefined> }): void {
  const query = req.query as Record<string, unknown> | undefined;
  if (!query || typeof query !== 'object' || !(SESSION_KEY_PARAM in query)) return;
  const value = query[SESSION_KEY_PARAM];
  delete query[SESSION_KEY_PARAM];
  if (req.method !== 'GET' && req.method !== 'HEAD') return;
  if (req.headers[SESSION_KEY_HEADER] === undefined) req.headers[SESSION_KEY_HEADER] = typeof value === 'string' ? value : '';
}
/** How long a console session lasts. */
export const SESSION_TTL_S = 8 * 3600;

interface SessionClaims {
  /** the API key the session stands for (its id: never the key itself) */
  k: string;
  t: string;
  /** expiry, seconds since the epoch */
  e: number;
  /** random: what the CSRF token is derived from */
  n: string;
}

export interface ConsoleSession {
  keyId: string;
  tenantId: string;
  expiresAt: Date;
  csrfToken: string;
  /** the session's random id (its cookie's nonce): what a sign-out ends */
  id: string;
}

/** Sessions known to be live, checked again after this long (a sign-out elsewhere also says so on the bus). */
const LIVE_CHECK_MS = 30_000;
const CACHE_MAX = 100_000;
/** Expired sign-outs of the tenant removed with each sign-out, at most. */
const SWEEP = 100;

const b64url = (b: Buffer) => b.toString('base64url');

/**
 * Console sessions (SPEC §11): a person pastes an API key once and gets a signed, short-lived
 * cookie that stands for that key, so the page never holds the key. The cookie names the key by its
 * id; every request made with it checks that the key is still active, so revoking the key ends its
 * sessions. State-changing requests must also carry the session's CSRF token (double submit, on top
 * of SameSite=Strict). The signing key is derived (HKDF) from the server key INKSTONE_SECRET_KEY,
 * which every instance shares: a session works on any instance, and changing the key ends every
 * session (a key being rotated, INKSTONE_SECRET_KEY_PREVIOUS, still verifies). Signing
 * out ends the session on the server too (`end`): its id is kept in console_sessions_ended until the
 * session would have expired, so a copy of the cookie is refused on every instance.
 */
@Injectable()
export class ConsoleSessions {
  /** the signing keys: the current one first (signs), then those of INKSTONE_SECRET_KEY_PREVIOUS (still verify) */
  private readonly keys: Buffer[];
  /** session ids read as not signed out lately, and ids signed out (this instance's and the bus's) */
  private readonly live = new TtlCache<string, true>(LIVE_CHECK_MS, CACHE_MAX);
  private readonly ended = new TtlCache<string, true>(SESSION_TTL_S * 1000, CACHE_MAX);

  constructor(
    @Inject(CONFIG) config: AppConfig,
    private readonly ds: DataSource,
    private readonly bus: ClusterBus,
  ) {
    // Signed with a key derived from the server key (INKSTONE_SECRET_KEY, or the embedded default's
    // key file: 32 random bytes, the same on every instance). Derived from the operator's token, a
    // teacher's own cookie let them test guesses at that token offline, as fast as they could hash.
    // A key being rotated (INKSTONE_SECRET_KEY_PREVIOUS) still verifies the cookies it signed: a
    // rolling rotation signs no one out.
    const server = resolveSecretKeys(config.secrets, keyFileCreated);
    this.keys = [server.current, ...server.previous].map((k) => Buffer.from(hkdfSync('sha256', k, Buffer.alloc(0), 'inkstone console session v1', 32)));
    bus.on<{ id: string }>('console-session-ended', ({ id }) => {
      this.live.delete(id);
      this.ended.set(id, true);
    });
    bus.on('resync', () => this.live.clear());
  }

  /** Signs the session out on the server: a copy of its cookie is refused from now on, on every instance. */
  async end(session: ConsoleSession): Promise<void> {
    // The other processes are told by a NOTIFY in the same transaction, delivered with its commit (sent
    // after it, a failed or lost send left the session live elsewhere for up to 30 s).
    const told = await this.ds.transaction(async (m) => {
      await tenantQuery(
        m,
        session.tenantId,
        `DELETE FROM console_sessions_ended WHERE tenant_id = $1 AND session_id IN (
           SELECT session_id FROM console_sessions_ended WHERE tenant_id = $1 AND expires_at < now() LIMIT $2)`,
        [SWEEP],
      );
      await tenantQuery(
        m,
        session.tenantId,
        `INSERT INTO console_sessions_ended (tenant_id, session_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
        [session.id, session.expiresAt.toISOString()],
      );
      return this.bus.publishWith(m, 'console-session-ended', { id: session.id });
    });
    this.live.delete(session.id);
    this.ended.set(session.id, true);
    told();
  }

  /** Whether the session was signed out (read from the database at most every 30 s while it is live). */
  async isEnded(session: ConsoleSession): Promise<boolean> {
    if (this.ended.get(session.id)) return true;
    if (this.live.get(session.id)) return false;
    const rows = await tenantQuery(this.ds.manager, session.tenantId, `SELECT 1 FROM console_sessions_ended WHERE tenant_id = $1 AND session_id = $2`, [session.id]);
    if (rows.length) {
      this.ended.set(session.id, true);
      return true;
    }
    this.live.set(session.id, true);
    return false;
  }

  private mac(text: string, key = this.keys[0]): Buffer {
    return createHmac('sha256', key).update(text).digest();
  }

  /** A new session for a key the caller has just authenticated; the cookie's value and the session. */
  open(auth: TenantAuth, now = Date.now()): { token: string; session: ConsoleSession } {
    const claims: SessionClaims = { k: auth.keyId, t: auth.tenantId, e: Math.floor(now / 1000) + SESSION_TTL_S, n: b64url(randomBytes(16)) };
    const body = b64url(Buffer.from(JSON.stringify(claims)));
    return { token: `${body}.${b64url(this.mac(body))}`, session: this.sessionOf(claims) };
  }

  /** The session a cookie value stands for, or null when it is forged, malformed or expired. */
  read(token: string, now = Date.now()): ConsoleSession | null {
    const signed = this.verified(token);
    if (!signed || signed.claims.e * 1000 <= now) return null;
    return this.sessionOf(signed.claims, signed.key);
  }

  /**
   * Whether this service signed the cookie value (with a key it still holds), expired or not: no
   * guess, whatever its session has become since (AuthFailures does not count its refusal).
   */
  signed(token: string): boolean {
    return this.verified(token) !== null;
  }

  /** The claims of a cookie value this service signed, and the key it signed them with; null otherwise. */
  private verified(token: string): { claims: SessionClaims; key: Buffer } | null {
    if (token.length > 1024) return null;
    const [body, sig, extra] = token.split('.');
    if (!body || !sig || extra !== undefined) return null;
    const given = Buffer.from(sig, 'base64url');
    const key = this.keys.find((k) => {
      const expected = this.mac(body, k);
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
    if (!key) return null;
    let claims: SessionClaims;
    try {
      claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as SessionClaims;
    } catch {
      return null;
    }
    if (typeof claims.k !== 'string' || typeof claims.t !== 'string' || typeof claims.n !== 'string' || typeof claims.e !== 'number') return null;
    return { claims, key };
  }

  /** Whether a request's CSRF header is its session's token. */
  csrfMatches(session: ConsoleSession, header: string | undefined): boolean {
    if (!header) return false;
    const a = Buffer.from(header);
    const b = Buffer.from(session.csrfToken);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  private sessionOf(c: SessionClaims, key = this.keys[0]): ConsoleSession {
    return { keyId: c.k, tenantId: c.t, expiresAt: new Date(c.e * 1000), csrfToken: b64url(this.mac(`csrf:${c.n}`, key)), id: c.n };
  }

  /**
   * The Set-Cookie value: HttpOnly, SameSite=Strict; over HTTPS Secure and named
   * SECURE_SESSION_COOKIE; an empty token clears it.
   */
  static cookie(token: string, req: ClientHop): string {
    const https = secure(req);
    return ConsoleSessions.setCookie(https ? SECURE_SESSION_COOKIE : SESSION_COOKIE, token, https);
  }

  /** Sign-out's Set-Cookie values: both names cleared (the request's own first), whichever the browser holds. */
  static clearingCookies(req: ClientHop): string[] {
    const hostOnly = ConsoleSessions.setCookie(SECURE_SESSION_COOKIE, '', true);
    const plain = ConsoleSessions.setCookie(SESSION_COOKIE, '', false);
    return secure(req) ? [hostOnly, plain] : [plain, hostOnly];
  }

  private static setCookie(name: string, token: string, https: boolean): string {
    return `${name}=${token}; Path=/; Max-Age=${token ? SESSION_TTL_S : 0}; HttpOnly; SameSite=Strict${https ? '; Secure' : ''}`;
  }

  /**
   * The request's session cookie, or undefined — also when it carries it more than once: ours is
   * one cookie, and a second is one planted from elsewhere (a sibling domain, a network that could
   * write a response), which a browser sends first when its path is longer; taking the first would
   * have signed the teacher into the planter's session (and tenant). The `__Host-` name
   * (SECURE_SESSION_COOKIE), which only this host can have set and only over HTTPS, is read on any
   * request (a proxy that says "https" on some requests only does not sign the teacher out on the
   * others); the plain name only on a request not over HTTPS, and only without a `__Host-` one (a
   * plain one may have been planted).
   */
  static fromRequest(req: ClientHop): string | undefined {
    const hostOnly = ConsoleSessions.named(req, SECURE_SESSION_COOKIE);
    const found = hostOnly.length || secure(req) ? hostOnly : ConsoleSessions.named(req, SESSION_COOKIE);
    return found.length === 1 ? found[0] : undefined;
  }

  /** Every session cookie's value the request carries, of either name (sign-out ends each that is a session). */
  static allFromRequest(req: ClientHop): string[] {
    return [...ConsoleSessions.named(req, SECURE_SESSION_COOKIE), ...ConsoleSessions.named(req, SESSION_COOKIE)];
  }

  private static named(req: ClientHop, name: string): string[] {
    const header = req.headers.cookie;
    if (typeof header !== 'string' || header.length > 8192) return [];
    const found: string[] = [];
    for (const part of header.split(';')) {
      const i = part.indexOf('=');
      if (i > 0 && part.slice(0, i).trim() === name) found.push(part.slice(i + 1).trim());
    }
    return found;
  }
}
