import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import type { TenantsRepository } from './tenants.repository';

/**
 * The premium tier is reached through a deep-review order (SPEC §2). Directly — an essay submitted
 * with tier "deep", a chat call to the deep tier — only with an admin key, and only when the admin
 * turned on `directDeep`; otherwise 403 saying so (`what`: what was asked, e.g. `submitting tier "deep"`).
 * A teacher is refused without reading the tenant's settings.
 */
export async function refuseDirectPremium(auth: TenantAuth, tenants: TenantsRepository, what: string): Promise<void> {
  if (auth.role === 'admin' && (await tenants.grading(auth.tenantId)).directDeep) return;
  throw new ApiError(
    'FORBIDDEN',
    `The premium tier is reached through a deep-review order (POST /v1/essays/:id/deep-review); ${what} needs an admin key and directDeep turned on in the grading settings`,
  );
}
