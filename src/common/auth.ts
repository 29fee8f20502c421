import { applyDecorators, createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import { RouteLimits } from './route-config';

/** The roles of a tenant's API keys. */
export const API_KEY_ROLES = ['admin', 'teacher'] as const;
export type ApiKeyRole = (typeof API_KEY_ROLES)[number];

export type Principal = 'operator' | ApiKeyRole;

/** Who is calling: the operator, or a tenant's key with its role. */
export type AuthContext =
  | { kind: 'operator' }
  | { kind: 'tenant'; tenantId: string; keyId: string; role: ApiKeyRole };

export type TenantAuth = Extract<AuthContext, { kind: 'tenant' }>;

export const AUTH_METADATA = 'inkstone:auth';
export const PUBLIC_ROUTE = 'public';

/** Declares who may call a route. A route without @Auth or @Public is refused to everyone. */
export const Auth = (...principals: Principal[]) => SetMetadata(AUTH_METADATA, principals);
/** No key needed; such a route is also skipped by the key check that runs before the body is read. */
export const Public = () => applyDecorators(SetMetadata(AUTH_METADATA, PUBLIC_ROUTE), RouteLimits({ public: true }));

declare module 'fastify' {
  interface FastifyRequest {
    auth?: AuthContext;
  }
}

/** The caller, as the guard established it. */
export const CurrentAuth = createParamDecorator((_: unknown, ctx: ExecutionContext): AuthContext => {
  const req = ctx.switchToHttp().getRequest<{ auth?: AuthContext }>();
  if (!req.auth) throw new Error('CurrentAuth used on a route without @Auth');
  return req.auth;
});

/** The calling tenant key; only on routes restricted to tenant roles. */
export const TenantCaller = createParamDecorator((_: unknown, ctx: ExecutionContext): TenantAuth => {
  const req = ctx.switchToHttp().getRequest<{ auth?: AuthContext }>();
  if (!req.auth || req.auth.kind !== 'tenant') throw new Error('TenantCaller used on a route open to the operator');
  return req.auth;
});
