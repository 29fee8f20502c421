import { loadConfig, type AppConfig } from '../config/app-config';
import type { ClusterBus } from '../db/cluster-bus';
import type { JobQueue } from '../jobs/job-queue';
import { LimitsService } from './limits.service';
import type { TenantsRepository } from './tenants.repository';

const TENANT = '00000000-0000-4000-8000-000000000001';

/**
 * LimitsService with its tenant repository held in memory and a read of the tenant's limits that the
 * test can hold open: what the operator's PUT does while a request is between reading the limits and
 * waiting for its slot.
 */
function limitsWithHeldReads() {
  let stored: Record<string, number> = { providerCalls: 1 };
  let gate: Promise<void> | null = null;
  let open = () => undefined as void;
  const tenants = {
    limits: async () => {
      const read = { ...stored }; // what the database held when the read began
      if (gate) await gate;
      return read;
    },
    setLimits: async (_: string, set: Record<string, number>) => {
      stored = { ...stored, ...set };
    },
  } as unknown as TenantsRepository;
  const handlers = new Map<string, (m?: unknown) => void>();
  const bus = { on: (name: string, fn: (m?: unknown) => void) => handlers.set(name, fn), publish: () => undefined } as unknown as ClusterBus;
  const config: AppConfig = loadConfig({ INKSTONE_ADMIN_TOKEN: 'operator-token-0123456789abcdef' });
  const limits = new LimitsService(null as unknown as JobQueue, tenants, bus, config);
  return {
    limits,
    resync: () => handlers.get('resync')!(),
    holdReads: () => {
      gate = new Promise<void>((r) => (open = () => r()));
    },
    releaseReads: () => {
      gate = null;
      open();
    },
  };
}

const settled = (p: Promise<unknown>) => Promise.race([p.then(() => 'taken'), new Promise((r) => setTimeout(() => r('still waiting'), 200))]);

describe('LimitsService: a raise of a tenant limit reaches requests already waiting', () => {
  it('lets in a request whose read of the limits was under way when the operator raised them, and those after it', async () => {
    const t = limitsWithHeldReads();
    const held = await t.limits.providerSlot(TENANT); // the one slot of the old limit
    t.resync(); // the limits are read again (a reconnect; or their minute in the cache ran out)
    t.holdReads();
    const waiting = t.limits.providerSlot(TENANT); // reads the limits: 1
    await new Promise((r) => setImmediate(r));
    const raised = t.limits.set(TENANT, { providerCalls: 5 }); // the operator's PUT lands meanwhile
    t.releaseReads();
    await raised;
    expect(await settled(waiting)).toBe('taken');
    // …and a request after the raise is not held behind it.
    expect(await settled(t.limits.providerSlot(TENANT))).toBe('taken');
    held();
  });

  it('holds requests waiting to a lowered limit: one is let in only once the slots in use are under it', async () => {
    const t = limitsWithHeldReads();
    await t.limits.set(TENANT, { providerCalls: 3 });
    const held = [await t.limits.providerSlot(TENANT), await t.limits.providerSlot(TENANT), await t.limits.providerSlot(TENANT)];
    const waiting = t.limits.providerSlot(TENANT);
    await t.limits.set(TENANT, { providerCalls: 1 });
    held[0]();
    expect(await settled(waiting)).toBe('still waiting'); // 2 in use, the limit 1
    held[1]();
    expect(await settled(waiting)).toBe('still waiting'); // 1 in use
    held[2]();
    expect(await settled(waiting)).toBe('taken');
  });
});
