import { DataSource } from 'typeorm';
import { BudgetService } from '../src/billing/budget.service';
import { startAppWithFake } from './support/app-with-fake';
import { expectBooksBalanced } from './support/books';
import { bearer, Factory } from './support/factories';
import { waitFor } from './support/wait';
import { TestApp } from './support/test-app';
import { FakeProvider } from './fake-provider/fake-provider';

/**
 * A budget lease no call used for BUDGET_LEASE_IDLE_MS goes back to the tenant's period at the
 * instance's next housekeeping tick, instead of being renewed again (renewing thousands of quiet
 * tenants' leases held the database from the busy ones' calls; README, budget leases). Here the
 * lease lives 3 s (a tick every second) and goes back after 1 s unused.
 */
describe('budget leases: a quiet tenant\'s lease goes back after BUDGET_LEASE_IDLE_MS', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let f: Factory;
  let ds: DataSource;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake({ BUDGET_LEASE_TTL_MS: '3000', BUDGET_LEASE_IDLE_MS: '1000' }));
    f = new Factory(t.app);
    ds = t.dataSource;
  });
  afterAll(async () => {
    try {
      await t.close();
    } finally {
      await fake.close();
    }
  });

  it('gives a quiet tenant\'s lease back at the next tick after it; the next call takes a new one and is charged once', async () => {
    const leases = t.app.get(BudgetService).leases!;
    const tenant = await f.newTenant({ monthlyBudget: '100.00' });
    const teacher = (await f.newKey(tenant, 'teacher')).key;
    const call = (i: number) =>
      t.http
        .post('/v1/chat/completions')
        .set(bearer(teacher))
        .set('cache-control', 'no-cache')
        .send({ model: 'inkstone-standard', messages: [{ role: 'user', content: `quiet ${i}` }], max_tokens: 32 })
        .expect(200);
    await call(1);
    const held = await expectBooksBalanced(ds, tenant.tenantId);
    expect(held.leased).toBeGreaterThan(0n);
    expect(leases.holding(tenant.tenantId).available).toBeGreaterThan(0n);
    // Quiet: given back within the idle time and a tick or two (never renewed for the 15 s default or the 60 s before).
    // (The instance forgets the lease once the statement that gave it back has answered, a moment
    // after its commit is visible here: on PGlite the books were seen at 0 before it had.)
    await waitFor(
      async () => (await expectBooksBalanced(ds, tenant.tenantId)).leased === 0n && leases.holding(tenant.tenantId).held === 0n,
      8_000,
      'the quiet lease given back',
    );
    expect(leases.holding(tenant.tenantId)).toEqual({ available: 0n, held: 0n });
    expect((await expectBooksBalanced(ds, tenant.tenantId)).leased).toBe(0n);
    // The next call takes a new slice; every call charged once, nothing left reserved.
    await call(2);
    const after = await expectBooksBalanced(ds, tenant.tenantId);
    expect(after.leased).toBeGreaterThan(0n);
    const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(n).toBe(2);
    expect(after.spent).toBeGreaterThan(held.spent);
  });
});
