import { DataSource } from 'typeorm';
import { BudgetService } from '../src/billing/budget.service';
import { GatewayService } from '../src/llm/gateway.service';
import { estimatePromptTokens } from '../src/llm/tokens';
import { worstCaseCost } from '../src/llm/pricing';
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

  it("a call that fits what the tenant has left is admitted on an instance while another holds a slice of it idle: that one gives it back when asked", async () => {
    const tenant = await f.newTenant({ monthlyBudget: '1.00' });
    const gw = t.app.get(GatewayService);
    const messages = [{ role: 'user' as const, content: '请用一句话评价这篇作文。' }];
    const target = { model: 'deepseek:deepseek-flash' };
    await gw.complete({ tenantId: tenant.tenantId, purpose: 'chat', target, messages, maxTokens: 100 });
    await t.app.get(BudgetService).ledgerWritten();
    // Nothing in flight: what is reserved is this instance's idle slice.
    const [p] = await ds.query(`SELECT cap_nanos::text AS cap, spent_nanos::text AS spent, reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
    const room = BigInt(p.cap) - BigInt(p.spent);
    const idle = BigInt(p.reserved);
    expect(idle).toBeGreaterThan(0n);
    const model = t.models.catalog.models.get(target.model)!;
    const estimate = BigInt(estimatePromptTokens(messages, model.tokenizer));
    const maxTokens = Number((room - estimate * model.ceiling.input) / model.ceiling.output);
    const worst = worstCaseCost(Number(estimate), maxTokens, model.ceiling);
    expect(worst).toBeLessThanOrEqual(room);
    expect(worst).toBeGreaterThan(room - idle); // it fits only with the idle slice back
    const other = await t.another();
    try {
      const result = await other.get(GatewayService).complete({ tenantId: tenant.tenantId, purpose: 'chat', target, messages, maxTokens });
      expect(result.content).toBeTruthy();
      await other.get(BudgetService).ledgerWritten();
      await t.app.get(BudgetService).ledgerWritten();
      const books = await expectBooksBalanced(ds, tenant.tenantId);
      expect(books.spent).toBeLessThanOrEqual(BigInt(p.cap));
    } finally {
      await other.close();
    }
  });
});
