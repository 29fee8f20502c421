import { ApiKeyEntity } from '../tenancy/api-key.entity';
import { TenantEntity } from '../tenancy/tenant.entity';

/** Every entity, listed by hand (no globbing: the app, the CLI and jest see the same set). */
export const ENTITIES = [TenantEntity, ApiKeyEntity];
