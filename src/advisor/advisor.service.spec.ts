import type { DataSource } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { Clock } from '../common/clock';
import type { BudgetService } from '../billing/budget.service';
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
    const advisor = new AdvisorService(null as unknown as DataSource, models, new Clock(), null as unknown as BudgetService);
    const r = await advisor.costEstimate(auth, { dailyCalls: 1000 });
    expect(r.mix).toMatchObject({ standardModel: 'dashscope:qwen-flash', deepModel: 'dashscope:qwen3-max' });
    expect(r.models.map((m) => m.model)).not.toContain('dashscope:qwen-turbo');
    expect(r.models.find((m) => m.model === 'dashscope:qwen-flash')?.tiers).toEqual(['standard']);
  });

  it("refuses (409) a tier whose configured models are all retired, rather than estimating on a model the deployment would not call; with none configured, the catalog's default tier", async () => {
    const estimate = (tiers: Record<string, unknown>) =>
      new AdvisorService(null as unknown as DataSource, { catalog, providers: new Map(), tiers } as unknown as LlmModels, new Clock(), null as unknown as BudgetService).costEstimate(auth, { dailyCalls: 1000 });
    await expect(estimate({ standard: [[entry('dashscope:qwen-turbo')]], deep: [[entry('dashscope:qwen3-max')]] })).rejects.toMatchObject({ code: 'CONFLICT' });
    const defaults = await estimate({ standard: [], deep: [] });
    const live = (tier: 'standard' | 'deep') => catalog.defaultTiers[tier].map((k) => catalog.models.get(k)!).find((m) => !isRetired(m, new Date()))!.key;
    expect(defaults.mix).toMatchObject({ standardModel: live('standard'), deepModel: live('deep') });
  });
});
