import { Body, Controller, Delete, Get, HttpCode, Post, Req, Res } from '@nestjs/common';
import { ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { IsString, Length } from 'class-validator';
import { Auth, Public, TenantAuth, TenantCaller } from '../common/auth';
import { LimitsService } from '../tenancy/limits.service';
import { ApiError } from '../common/errors';
import { BodyLimit, KiB } from '../common/route-config';
import { ApiKeysService } from '../tenancy/api-keys.service';
import { hashSecret } from '../tenancy/api-key-secret';
import { AuthFailures } from '../tenancy/auth-failures';
import { ConsoleSessions } from '../tenancy/console-sessions';
import { TenantsRepository } from '../tenancy/tenants.repository';
import { ApiView } from '../docs/api-view';

export class OpenSessionDto {
  @ApiProperty({ description: 'a tenant API key (admin or teacher); it is exchanged for a session cookie and never stored in the page' })
  @IsString()
  @Length(1, 512)
  key: string;
}

export interface SessionView {
  tenantId: string;
  /** the school's name (the console shows which school it is signed in to) */
  tenantName: string;
  keyId: string;
  role: string;
  /** the tenant's time zone (IANA): the console shows dates in it */
  timezone: string;
  expiresAt: string;
  /** send it as X-CSRF-Token with every POST, PUT, PATCH and DELETE made with the session */
  csrfToken: string;
}

/**
 * Console sign-in and sign-out (SPEC §11): an API key for a short-lived, HttpOnly,
 * SameSite=Strict session cookie bound to that key; see ConsoleSessions.
 */
@ApiTags('console')
@Controller('v1/console/session')
export class ConsoleSessionController {
  constructor(
    private readonly sessions: ConsoleSessions,
    private readonly apiKeys: ApiKeysService,
    private readonly tenants: TenantsRepository,
    private readonly failures: AuthFailures,
    private readonly limits: LimitsService,
  ) {}

  /** The request takes its token from the key's and the school's buckets, as any request of the key does (they need no key to reach here). */
  private async admit(auth: { keyId: string; tenantId: string }, reply: FastifyReply): Promise<void> {
    const taken = await this.limits.admitRequest(auth.keyId, auth.tenantId);
    void reply.headers({ ...taken.headers });
    if (taken.refused) throw taken.refused;
  }

  private async view(auth: TenantAuth, session: { expiresAt: Date; csrfToken: string }): Promise<SessionView> {
    const { name, timezone } = await this.tenants.identity(auth.tenantId);
    return { tenantId: auth.tenantId, tenantName: name, keyId: auth.keyId, role: auth.role, timezone, expiresAt: session.expiresAt.toISOString(), csrfToken: session.csrfToken };
  }

  @Post()
  @Public()
  @BodyLimit(4 * KiB)
  @HttpCode(201)
  @ApiView('SessionView', { status: 201 })
  @ApiOperation({ summary: 'Sign in to the console: an API key for a session cookie (HttpOnly, SameSite=Strict, 8 hours) and its CSRF token' })
  async open(@Body() dto: OpenSessionDto, @Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): Promise<SessionView> {
    const key = dto.key.trim();
    // A sign-in is an authentication like any other: counted against the address when it fails.
    const hash = hashSecret(key);
    const auth = await this.failures.guard(
      req.ip,
      () => this.apiKeys.seenActive(hash),
      async () => (await this.apiKeys.authenticate(key, hash)) ?? Promise.reject(new ApiError('UNAUTHENTICATED', 'Invalid or revoked API key')),
    );
    // Signed in, a request of that key (a school signing in in a loop cost a read a time, unbounded).
    await this.admit(auth, reply);
    const { token, session } = this.sessions.open(auth);
    void reply.header('set-cookie', ConsoleSessions.cookie(token, req));
    void reply.header('cache-control', 'no-store');
    return this.view(auth, session);
  }

  @Get()
  @Auth('admin', 'teacher')
  @ApiOperation({ summary: "The console session's caller and its CSRF token (after a reload)" })
  @ApiView('SessionView')
  async current(@TenantCaller() auth: TenantAuth, @Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): Promise<SessionView> {
    const cookie = ConsoleSessions.fromRequest(req);
    const session = cookie ? this.sessions.read(cookie) : null;
    if (!session) throw new ApiError('UNAUTHENTICATED', 'No console session: sign in with POST /v1/console/session');
    void reply.header('cache-control', 'no-store');
    return this.view(auth, session);
  }

  @Delete()
  @Public()
  @HttpCode(204)
  @ApiOperation({ summary: 'Sign out: the session ends on the server (a copy of its cookie is refused from now on) and the cookie is cleared' })
  async close(@Req() req: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): Promise<void> {
    // Every session the request carries ends (with a planted second cookie, the teacher's own too).
    // The cookie is cleared only then: when ending fails, the answer is an error (the console says
    // "Not signed out") and the browser keeps the cookie to sign out with again (cleared first, a
    // second try carried nothing to end, and the session stayed live for any copy of the cookie).
    // A request of the session's key; one signed out already is not written again (a sign-out sent
    // in a loop with one cookie wrote a row and told every instance each time, unbounded).
    for (const cookie of ConsoleSessions.allFromRequest(req)) {
      const session = this.sessions.read(cookie);
      if (!session || (await this.sessions.isEnded(session))) continue;
      await this.admit(session, reply);
      await this.sessions.end(session);
    }
    void reply.header('set-cookie', ConsoleSessions.clearingCookies(req));
  }
}
