import { Inject, Injectable } from '@nestjs/common';
import { AuthContext } from '../common/auth';
import { ApiError } from '../common/errors';
import { AppConfig, CONFIG } from '../config/app-config';
import { hashSecret, secretMatches } from './api-key-secret';
import { ApiKeysService } from './api-keys.service';

/**
 * Who is calling, from the Authorization header: the operator (INKSTONE_ADMIN_TOKEN) or a tenant's
 * API key. Runs in Fastify's onRequest hook, before the body is read, so a request without a valid
 * key costs no parsing; the AuthGuard then checks the route's roles.
 */
@Injectable()
export class Authenticator {
  private readonly operatorTokenHash: Buffer;

  constructor(
    private readonly apiKeys: ApiKeysService,
    @Inject(CONFIG) config: AppConfig,
  ) {
    this.operatorTokenHash = hashSecret(config.adminToken);
  }

  async identify(header: string | undefined): Promise<AuthContext> {
    if (!header) throw new ApiError('UNAUTHENTICATED', 'Missing Authorization: Bearer <key>');
    if (header.length > 512) throw new ApiError('UNAUTHENTICATED', 'Authorization must be "Bearer <key>"');
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!m) throw new ApiError('UNAUTHENTICATED', 'Authorization must be "Bearer <key>"');
    const token = m[1];
    if (secretMatches(token, this.operatorTokenHash)) return { kind: 'operator' };
    const tenant = await this.apiKeys.authenticate(token);
    if (!tenant) throw new ApiError('UNAUTHENTICATED', 'Invalid or revoked API key');
    return tenant;
  }
}
