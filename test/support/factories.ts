import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import type { TenantAuth } from '../../src/common/auth';
import type { ApiKeyRole } from '../../src/tenancy/api-key.entity';
import { ApiKeysService } from '../../src/tenancy/api-keys.service';
import { TenantsService } from '../../src/tenancy/tenants.service';
import { generateEssay, Lang } from './essays';
import { waitForEssays } from './grading';

export interface TestTenant {
  tenantId: string;
  adminKey: string;
  adminKeyId: string;
  admin: TenantAuth;
}

/** What an essay is submitted with: a generated essay (`seed`, `language`) unless `text` is given. */
export interface EssayInput {
  seed?: number;
  language?: Lang;
  text?: string;
  [field: string]: unknown;
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

  /** Submits an essay as a teacher would (POST /v1/essays, expecting 202); its id. */
  async essay(key: string, input: EssayInput = {}): Promise<string> {
    const { seed = 1, language = 'zh', ...body } = input;
    const res = await request(this.app.getHttpServer())
      .post('/v1/essays')
      .set(bearer(key))
      .send({ ...body, text: body.text ?? generateEssay(seed, language).text });
    if (res.status !== 202) throw new Error(`POST /v1/essays answered ${res.status}: ${res.text}`);
    return res.body.id as string;
  }

  /** Submits an essay and waits for its final status; its view (GET /v1/essays/:id). */
  async gradedEssay(key: string, input: EssayInput = {}): Promise<any> {
    return (await waitForEssays(this.app, key, [await this.essay(key, input)]))[0];
  }

  async newKey(tenant: TestTenant, role: ApiKeyRole = 'teacher'): Promise<{ id: string; key: string; auth: TenantAuth }> {
    const k = await this.app.get(ApiKeysService).create(tenant.tenantId, { name: `${role} ${++seq}`, role });
    return { id: k.id, key: k.key, auth: { kind: 'tenant', tenantId: tenant.tenantId, keyId: k.id, role } };
  }
}

export const bearer = (key: string) => ({ Authorization: `Bearer ${key}` });
