import { Inject, Injectable } from '@nestjs/common';
import { AuthContext } from '../common/auth';
import { ApiError } from '../common/errors';
import { AppConfig, CONFIG } from '../config/app-config';
import { hashMatches, hashSecret } from './api-key-secret';
import { ApiKeysService } from './api-keys.service';
import { ClientHop, ConsoleSessions, CSRF_HEADER, SESSION_KEY_HEADER } from './console-sessions';
import { TenancyError } from './tenancy-errors';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Who is calling, from the Authorization header (or a console session cookie): the operator (INKSTONE_ADMIN_TOKEN) or a tenant's
 * API key. Runs in Fastify's onRequest hook, before the body is read, so a request without a valid
 * key costs no parsing; the AuthGuard then checks the route's roles.
 */
@Injectable()
export class Authenticator {
  private readonly operatorTokenHash: Buffer;

  constructor(
    private readonly apiKeys: ApiKeysService,
    private readonly sessions: ConsoleSessions,
    @Inject(CONFIG) config: AppConfig,
  ) {
    this.operatorTokenHash = hashSecret(config.adminToken);
  }

  /**
   * The caller of a request: by its Authorization header when that is a Bearer key, or else by a
   * console session cookie (ConsoleSessions) whose key is still active (without a cookie, the header
   * is refused as not Bearer); a state-changing request made with the
   * cookie must carry the session's CSRF token.
   */
  async identify(req: ClientHop & { method: string }): Promise<AuthContext> {
    const header = req.headers.authorization as string | undefined;
    const cookie = isBearer(header) ? undefined : ConsoleSessions.fromRequest(req);
    if (cookie !== undefined) return this.fromSession(cookie, req);
    return this.fromHeader(header);
  }

  /**
   * For a stream that outlives its request's check (an essay's events, a chat answer): null while
   * the caller may still be served, or the refusal once its key is revoked or its console session
   * ended. Another failure (the database away a moment) is not the caller's: it may go on.
   */
  refusalNow(req: ClientHop & { method: string }): Promise<ApiError | null> {
    return this.identify(req).then(
      () => null,
      (err: unknown) => (err instanceof ApiError && err.code === 'UNAUTHENTICATED' ? err : null),
    );
  }

  /**
   * Whether what the request presents is known to be no guess without asking the database: the
   * operator's token, a key in the auth cache, or a session cookie this service signed (which the
   * full check may still find expired, signed out or of a revoked key). For an address that failed
   * too often (AuthFailures): checked all the same, and its refusal not counted as a failure.
   */
  knownGood(req: ClientHop): boolean {
    const header = req.headers.authorization as string | undefined;
    if (!isBearer(header)) {
      const cookie = ConsoleSessions.fromRequest(req);
      return cookie !== undefined && this.sessions.signed(cookie);
    }
    const m = header.length <= 512 ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header) : null;
    if (!m) return false;
    const hash = hashSecret(m[1]);
    return hashMatches(hash, this.operatorTokenHash) || this.apiKeys.seenActive(hash);
  }

  private async fromHeader(header: string | undefined): Promise<AuthContext> {
    if (!header) throw new ApiError('UNAUTHENTICATED', 'Missing Authorization: Bearer <key>');
    if (header.length > 512) throw new ApiError('UNAUTHENTICATED', 'Authorization must be "Bearer <key>"');
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!m) throw new ApiError('UNAUTHENTICATED', 'Authorization must be "Bearer <key>"');
    const token = m[1];
    const hash = hashSecret(token); // once: compared with the operator's, then the key cache's key
    if (hashMatches(hash, this.operatorTokenHash)) return { kind: 'operator' };
    const tenant = await this.apiKeys.authenticate(token, hash);
    if (!tenant) throw new ApiError('UNAUTHENTICATED', 'Invalid or revoked API key');
    return tenant;
  }

  private async fromSession(cookie: string, req: { method: string; headers: Record<string, string | string[] | undefined> }): Promise<AuthContext> {
    const session = this.sessions.read(cookie);
    if (!session) throw new ApiError('UNAUTHENTICATED', 'The console session is not valid or has expired: sign in again');
    const expected = req.headers[SESSION_KEY_HEADER];
    if (expected !== undefined && expected !== session.keyId) {
      throw new ApiError('UNAUTHENTICATED', 'This browser signed in to the console with another key since this page was opened: sign in again');
    }
    if (await this.sessions.isEnded(session)) throw new ApiError('UNAUTHENTICATED', 'The console session was signed out: sign in again');
    const tenant = await this.apiKeys.activeById(session.keyId);
    if (!tenant) throw new ApiError('UNAUTHENTICATED', "The console session's API key was revoked: sign in again");
    if (!SAFE_METHODS.has(req.method) && !this.sessions.csrfMatches(session, req.headers[CSRF_HEADER] as string | undefined)) {
      throw new TenancyError('CSRF_TOKEN_INVALID', `A change made with the console session needs its CSRF token in the ${CSRF_HEADER} header`);
    }
    return tenant;
  }
}

/**
 * Whether an Authorization header is a Bearer key, the API's own credential. Any other scheme
 * (Basic or Negotiate of a gate an operator put in front of the console, which the browser then
 * sends with every call) is not: the console's session cookie is the credential of such a request.
 */
function isBearer(header: string | undefined): header is string {
  return header !== undefined && /^Bearer(?:[ \t]|$)/i.test(header);
}
