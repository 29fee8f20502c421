import type { DataSource } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { Clock } from '../common/clock';
import { Catalog, isRetired } from '../llm/catalog';
import type { LlmModels } from '../llm/llm-models';
import { AdvisorService } from './advisor.service';

const catalog = Catalog.load();
const entry = (key: string) => ({ model: catalog.models.get(key)!, weight: 1 });
const auth = { kind: 'tenant', tenantId: '00000000-0000-4000-8000-000000000001', keyId: 'k', role: 'admin' } as unknown as TenantAuth;

describe('AdvisorService.costEstimate', () => {
  it('prices the mix on the first model of each tier the gateway would still call, and offers no retired model', async () => {
    const turbo = catalog.models.get('dashscope:qwen-turbo')!;
    expect(isRetired(turbo, new Date())).toBe(true); // retired by its provider on 2026-10-10
    // A tier whose first model retired while the service ran (the start's check passed before it did).
    const models = {
      catalog,
      providers: new Map(),
      tiers: { standard: [[entry('dashscope:qwen-turbo')], [entry('dashscope:qwen-flash')]], deep: [[entry('dashscope:qwen3-max')]] },
    } as unknown as LlmModels;
    const advisor = new AdvisorService(null as unknown as DataSource, models, new Clock());
    const r = await advisor.costEstimate(auth, { dailyCalls: 1000 });
    expect(r.mix).toMatchObject({ standardModel: 'dashscope:qwen-flash', deepModel: 'dashscope:qwen3-max' });
    expect(r.models.map((m) => m.model)).not.toContain('dashscope:qwen-turbo');
    expect(r.models.find((m) => m.model === 'dashscope:qwen-flash')?.tiers).toEqual(['standard']);
  });
});
