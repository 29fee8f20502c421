import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AUTH_METADATA, Principal, PUBLIC_ROUTE } from '../common/auth';
import { ApiError } from '../common/errors';
import { Authenticator } from './authenticator';

/**
 * Checks every request against the route's roles. Routes declare who may call them with
 * @Auth(...); a route that declares nothing is closed. The caller was usually identified already,
 * before its body was read (app.factory.ts); otherwise it is identified here.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly authenticator: Authenticator,
  ) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const allowed = this.reflector.getAllAndOverride<Principal[] | typeof PUBLIC_ROUTE | undefined>(AUTH_METADATA, [
      ctx.getHandler(),
      ctx.getClass(),
    ]);
    if (allowed === PUBLIC_ROUTE) return true;
    const req = ctx.switchToHttp().getRequest<FastifyRequest>();
    const auth = req.auth ?? (await this.authenticator.identify(req));
    if (!allowed || !allowed.includes(auth.kind === 'operator' ? 'operator' : auth.role)) {
      throw new ApiError('FORBIDDEN', 'This key is not allowed to do that');
    }
    req.auth = auth;
    return true;
  }
}
