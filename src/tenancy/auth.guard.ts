import { CanActivate, ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AUTH_METADATA, AuthContext, Principal, PUBLIC_ROUTE } from '../common/auth';
import { ApiError } from '../common/errors';
import { AppConfig, CONFIG } from '../config/app-config';
import { hashSecret, secretMatches } from './api-key-secret';
import { ApiKeysService } from './api-keys.service';

/**
 * Authenticates every request. The operator presents INKSTONE_ADMIN_TOKEN; tenants present an API
 * key. Routes declare who may call them with @Auth(...); a route that declares nothing is closed.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  private readonly operatorTokenHash: Buffer;

  constructor(
    private readonly reflector: Reflector,
    private readonly apiKeys: ApiKeysService,
    @Inject(CONFIG) config: AppConfig,
  ) {
    this.operatorTokenHash = hashSecret(config.adminToken);
  }

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const allowed = this.reflector.getAllAndOverride<Principal[] | typeof PUBLIC_ROUTE | undefined>(AUTH_METADATA, [
      ctx.getHandler(),
      ctx.getClass(),
    ]);
    if (allowed === PUBLIC_ROUTE) return true;
    const req = ctx.switchToHttp().getRequest<FastifyRequest>();
    const auth = await this.identify(req);
    if (!allowed || !allowed.includes(auth.kind === 'operator' ? 'operator' : auth.role)) {
      throw new ApiError('FORBIDDEN', 'This key is not allowed to do that');
    }
    req.auth = auth;
    return true;
  }

  private async identify(req: FastifyRequest): Promise<AuthContext> {
    const header = req.headers.authorization;
    if (!header) throw new ApiError('UNAUTHENTICATED', 'Missing Authorization: Bearer <key>');
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new ApiError('UNAUTHENTICATED', 'Authorization must be "Bearer <key>"');
    const token = m[1];
    if (secretMatches(token, this.operatorTokenHash)) return { kind: 'operator' };
    const tenant = await this.apiKeys.authenticate(token);
    if (!tenant) throw new ApiError('UNAUTHENTICATED', 'Invalid or revoked API key');
    return tenant;
  }
}
