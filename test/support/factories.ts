import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { TenantAuth } from '../../src/common/auth';
import type { ApiKeyRole } from '../../src/tenancy/api-key.entity';
import { ApiKeysService } from '../../src/tenancy/api-keys.service';
import { TenantsService } from '../../src/tenancy/tenants.service';

export interface TestTenant {
  tenantId: string;
  adminKey: string;
  adminKeyId: string;
  admin: TenantAuth;
}

let seq = 0;

/** Test data made through the real services, so it is exactly what the API would make. */
export class Factory {
  constructor(private readonly app: NestFastifyApplication) {}

  async newTenant(opts: { name?: string; timezone?: string; monthlyBudget?: string } = {}): Promise<TestTenant> {
    const created = await this.app.get(TenantsService).create({
      name: opts.name ?? `School ${++seq}`,
      timezone: opts.timezone,
      monthlyBudget: opts.monthlyBudget,
    });
    return {
      tenantId: created.tenant.id,
      adminKey: created.adminKey,
      adminKeyId: created.adminKeyId,
      admin: { kind: 'tenant', tenantId: created.tenant.id, keyId: created.adminKeyId, role: 'admin' },
    };
  }

  async newKey(tenant: TestTenant, role: ApiKeyRole = 'teacher'): Promise<{ id: string; key: string; auth: TenantAuth }> {
    const k = await this.app.get(ApiKeysService).create(tenant.admin, { name: `${role} ${++seq}`, role });
    return { id: k.id, key: k.key, auth: { kind: 'tenant', tenantId: tenant.tenantId, keyId: k.id, role } };
  }
}

export const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });
