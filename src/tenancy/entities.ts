import { ApiKeyEntity } from './api-key.entity';
import { TenantEntity } from './tenant.entity';

/** Every TypeORM entity of the app, listed by hand (no globbing: the app and jest see the same set). */
export const ENTITIES = [TenantEntity, ApiKeyEntity];
