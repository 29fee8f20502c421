import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { BudgetService } from '../src/billing/budget.service';
import { formatCny } from '../src/common/money';
import { GatewayService } from '../src/llm/gateway.service';
import { estimatePromptTokens } from '../src/llm/tokens';
import { MAX_COUNTED_TOKENS } from '../src/llm/providers/dialect';
import { FakeProvider } from './fake-provider/fake-provider';
import { bearer, Factory, TestTenant } from './support/factories';
import { OPERATOR_TOKEN, TestApp } from './support/test-app';
import { startAppWithFake } from './support/app-with-fake';
import { expectBooksBalanced } from './support/books';
import { sessionsWaitingForLocks, withHeldTransactions } from './support/held-transactions';
import { serverUrl } from './support/test-database';
import { TenantsRepository } from '../src/tenancy/tenants.repository';
import { BooksRepository } from '../src/billing/books.repository';
import { waitFor } from './support/wait';

/**
 * Settled spend never exceeds the cap, without exceptions: admission reserves a proven upper bound
 * (the prompt's UTF-8 bytes, plus max_tokens of output); a provider that bills beyond it is an
 * incident — booked within the cap, logged, counted, alerted — and the tenant's admission is paused
 * until an admin acknowledges it.
 */
describe('budget incidents (real PostgreSQL, a provider that over-bills)', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let gw: GatewayService;
  let budget: BudgetService;
  let ds: DataSource;
  let tenant: TestTenant;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake({ WORKERS_ENABLED: 'false', LLM_STANDARD_MODELS: 'dashscope:qwen-flash' }));
    gw = t.app.get(GatewayService);
    budget = t.app.get(BudgetService);
    ds = t.dataSource;
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });
  beforeEach(async () => {
    fake.reset();
    gw.resetHealth();
    tenant = await new Factory(t.app).newTenant({ monthlyBudget: '10.00' });
  });

  const messages = [{ role: 'user' as const, content: '请用一句话评价这篇作文。' }];
  const ask = (tenantId = tenant.tenantId, model?: string) => gw.complete({ tenantId, purpose: 'chat', target: model ? { model } : { tier: 'standard' }, messages, maxTokens: 100 });
  const books = (tenantId = tenant.tenantId) => expectBooksBalanced(ds, tenantId);

  it('books a provider that reports more tokens than the bound as an incident, and pauses admission until an admin acknowledges it', async () => {
    const model = t.models.catalog.models.get('dashscope:qwen-flash')!;
    const bound = estimatePromptTokens(messages, model.tokenizer);
    fake.enqueue('dashscope', { kind: 'ok', inflateUsage: 40 });
    const r = await ask();
    expect(r.usage.inputTokens).toBeGreaterThan(bound);
    const { spent } = await books();
    expect(spent).toBe(r.costNanos); // the cap had room: charged in full

    const view = await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200);
    expect(view.body.admissionPaused).toBe(true);
    expect(view.body.incidents).toHaveLength(1);
    const incident = view.body.incidents[0];
    expect(incident).toMatchObject({
      kind: 'tokens_over_bound',
      provider: 'dashscope',
      model: 'qwen-flash',
      tokens: { boundInput: bound, reportedInput: r.usage.inputTokens, maxOutput: 100 },
      charged: formatCny(r.costNanos),
      excess: '0.00',
      pausesAdmission: true,
      acknowledgedAt: null,
    });

    // Paused: the next call is refused before any provider is asked, and no threshold alert fires.
    const before = fake.requests.length;
    const err = await ask().catch((e) => e);
    expect(err).toMatchObject({ code: 'BUDGET_EXHAUSTED', message: expect.stringContaining('paused after a billing incident') });
    expect(fake.requests.length).toBe(before);
    const [{ n: alerts }] = await ds.query(`SELECT count(*)::int AS n FROM budget_alerts WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(alerts).toBe(0);
    const metrics = await t.http.get('/metrics').set(bearer(OPERATOR_TOKEN)).expect(200);
    expect(metrics.text).toContain(`inkstone_budget_incidents_total{tenant="${tenant.tenantId}",kind="tokens_over_bound"} 1`);

    // Only an admin of this tenant acknowledges it; then calls are admitted again.
    const teacher = await new Factory(t.app).newKey(tenant, 'teacher');
    await t.http.post(`/v1/budget/incidents/${incident.id}/acknowledge`).set(bearer(teacher.key)).expect(403);
    const other = await new Factory(t.app).newTenant();
    await t.http.post(`/v1/budget/incidents/${incident.id}/acknowledge`).set(bearer(other.adminKey)).expect(404);
    // An id that is no UUID though of its length and alphabet is not found either (it was a 500: PostgreSQL refused it).
    await t.http.post(`/v1/budget/incidents/${'-'.repeat(36)}/acknowledge`).set(bearer(tenant.adminKey)).expect(404);
    const acked = await t.http.post(`/v1/budget/incidents/${incident.id}/acknowledge`).set(bearer(tenant.adminKey)).expect(200);
    expect(acked.body.acknowledgedAt).not.toBeNull();
    expect((await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body.admissionPaused).toBe(false);
    await ask();
    await books();
  });

  it("writes an incident's budget.incident webhook with the incident, or neither: an insert that fails once is tried again with the settlement, one incident, one webhook, charged once", async () => {
    await ds.query(`UPDATE tenants SET alert_webhook_url = 'https://hooks.example.com/inkstone' WHERE id = $1`, [tenant.tenantId]);
    // The first budget.incident webhook written (a sequence: not undone with the transaction) fails.
    await ds.query(`CREATE SEQUENCE IF NOT EXISTS test_incident_hook_seq`);
    await ds.query(
      `CREATE OR REPLACE FUNCTION test_refuse_first_incident_hook() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.body LIKE '%budget.incident%' AND nextval('test_incident_hook_seq') = 1 THEN RAISE EXCEPTION 'webhook insert refused (test)'; END IF;
         RETURN NEW;
       END $$`,
    );
    await ds.query(`CREATE TRIGGER test_refuse_first_incident_hook BEFORE INSERT ON outbound_webhooks FOR EACH ROW EXECUTE FUNCTION test_refuse_first_incident_hook()`);
    try {
      fake.enqueue('dashscope', { kind: 'ok', inflateUsage: 40 });
      const r = await ask();
      const { spent } = await books();
      expect(spent).toBe(r.costNanos);
      const incidents = await ds.query(`SELECT id FROM budget_incidents WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(incidents).toHaveLength(1);
      // Before, the incident was committed and its webhook, written after, lost for good.
      const hooks = await ds.query(`SELECT body FROM outbound_webhooks WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(hooks).toHaveLength(1);
      expect(JSON.parse(hooks[0].body)).toMatchObject({ type: 'budget.incident', data: { tenantId: tenant.tenantId, kind: 'tokens_over_bound', pausesAdmission: true } });
      const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1`, [tenant.tenantId]);
      expect(n).toBe(1);
      expect((await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body.admissionPaused).toBe(true);
    } finally {
      await ds.query(`DROP TRIGGER IF EXISTS test_refuse_first_incident_hook ON outbound_webhooks`);
      await ds.query(`DROP FUNCTION IF EXISTS test_refuse_first_incident_hook()`);
      await ds.query(`DROP SEQUENCE IF EXISTS test_incident_hook_seq`);
    }
  });

  it('fires at the next refused call a threshold whose alert failed to be written at its settlement (once the cap is reached, no settlement comes)', async () => {
    const model = t.models.catalog.models.get('dashscope:qwen-flash')!;
    const worst = BigInt(estimatePromptTokens(messages, model.tokenizer)) * model.ceiling.input + 100n * model.ceiling.output;
    const tight = await new Factory(t.app).newTenant({ monthlyBudget: formatCny(worst) }); // one worst case, no more
    await t.http.put('/v1/budget').set(bearer(tight.adminKey)).send({ monthlyCap: formatCny(worst), alertThresholds: [0.01] }).expect(200);
    await ds.query(`CREATE SEQUENCE IF NOT EXISTS test_threshold_seq`);
    await ds.query(
      `CREATE OR REPLACE FUNCTION test_refuse_first_threshold() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.kind = 'threshold' AND nextval('test_threshold_seq') = 1 THEN RAISE EXCEPTION 'alert insert refused (test)'; END IF;
         RETURN NEW;
       END $$`,
    );
    await ds.query(`CREATE TRIGGER test_refuse_first_threshold BEFORE INSERT ON budget_alerts FOR EACH ROW EXECUTE FUNCTION test_refuse_first_threshold()`);
    const thresholds = async () => (await ds.query(`SELECT threshold::text AS t FROM budget_alerts WHERE tenant_id = $1 AND kind = 'threshold'`, [tight.tenantId])) as Array<{ t: string }>;
    try {
      await ask(tight.tenantId); // reaches 1%: its alert's statement fails
      expect(await thresholds()).toEqual([]);
      const err = await ask(tight.tenantId).catch((e) => e); // the rest of the cap takes no worst case
      expect(err).toMatchObject({ code: 'BUDGET_EXHAUSTED' });
      await waitFor(async () => (await thresholds()).length === 1, 5_000, 'the threshold fired at the refusal');
      expect(Number((await thresholds())[0].t)).toBe(0.01);
    } finally {
      await ds.query(`DROP TRIGGER IF EXISTS test_refuse_first_threshold ON budget_alerts`);
      await ds.query(`DROP FUNCTION IF EXISTS test_refuse_first_threshold()`);
      await ds.query(`DROP SEQUENCE IF EXISTS test_threshold_seq`);
    }
  });

  it.each([
    ['dashscope', 'each count', { inflateUsage: 1e9 }],
    ['deepseek', 'the sum of its cached and uncached input', { usage: { prompt_cache_hit_tokens: 2e9, prompt_cache_miss_tokens: 2e9, prompt_tokens: 4e9 } }],
  ] as const)('holds a report of more tokens than the ledger can count (billions; %s, %s) to that, and books it as an incident like any over the bound: settled, not retried for ever', async (provider, _what, step) => {
    fake.enqueue(provider, { kind: 'ok', ...step });
    const r = await ask(tenant.tenantId, provider === 'deepseek' ? 'deepseek:deepseek-flash' : undefined);
    expect(r.usage.inputTokens).toBe(MAX_COUNTED_TOKENS);
    await books();
    const view = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
    expect(view.admissionPaused).toBe(true);
    expect(view.incidents).toEqual([expect.objectContaining({ kind: 'tokens_over_bound', tokens: expect.objectContaining({ reportedInput: MAX_COUNTED_TOKENS }) })]);
    expect(t.app.get(BudgetService).waitingSettlements()).toBe(0);
    const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM llm_calls WHERE tenant_id = $1 AND outcome = 'ok'`, [tenant.tenantId]);
    expect(n).toBe(1);
  });

  it('charges no more than the cap holds when a provider bills past it, recording the rest as absorbed', async () => {
    const model = t.models.catalog.models.get('dashscope:qwen-flash')!;
    const worst = BigInt(estimatePromptTokens(messages, model.tokenizer)) * model.ceiling.input + 100n * model.ceiling.output;
    const tight = await new Factory(t.app).newTenant({ monthlyBudget: formatCny(worst) }); // exactly one worst case
    fake.enqueue('dashscope', { kind: 'ok', inflateUsage: 200 });
    const r = await ask(tight.tenantId);
    const { spent, cap } = await books(tight.tenantId);
    expect(spent).toBe(cap); // all the cap could hold, not a nano-yuan more
    expect(r.costNanos).toBe(cap);
    const [incident] = await ds.query(`SELECT kind, cost_nanos::text AS cost, charged_nanos::text AS charged, excess_nanos::text AS excess FROM budget_incidents WHERE tenant_id = $1`, [tight.tenantId]);
    expect(incident.kind).toBe('tokens_over_bound');
    expect(BigInt(incident.charged)).toBe(cap);
    expect(BigInt(incident.excess)).toBe(BigInt(incident.cost) - cap);
    expect(BigInt(incident.excess)).toBeGreaterThan(0n);
  });

  it('keeps spend within the cap when a call settles after its reservation was swept and the room was taken (leases off)', async () => {
    // Per-call reservations (BUDGET_LEASES=false); the same for a lease swept from a stalled instance: gateway.int-spec.ts.
    const budget = (await t.another({ BUDGET_LEASES: 'false' })).get(BudgetService);
    const cap = 1_000_000n;
    const small = await new Factory(t.app).newTenant({ monthlyBudget: formatCny(cap) });
    const first = (await budget.reserve(small.tenantId, 600_000n))!;
    // The first call outlives its reservation: swept, and another call takes the room.
    await ds.query(`UPDATE budget_reservations SET expires_at = now() - interval '1 second' WHERE id = $1`, [first.id]);
    await budget.sweep();
    const second = (await budget.reserve(small.tenantId, 900_000n))!;
    expect(second).not.toBeNull();
    const entry = { tenantId: small.tenantId, callGroup: '00000000-0000-4000-8000-000000000001', attempt: 1, purpose: 'chat' as const, cacheStatus: 'bypass' as const, outcome: 'ok', inputTokens: 10, cachedInputTokens: 0, outputTokens: 10, usageSource: 'provider' as const, costNanos: 500_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 1, streamed: false };
    const charged = await budget.settle(first, 500_000n, entry);
    expect(charged).toBe(100_000n); // the cap less the other call's reservation
    await budget.settle(second, 0n, { ...entry, costNanos: 0n });
    const { spent } = await books(small.tenantId);
    expect(spent).toBe(100_000n);
    const [incident] = await ds.query(`SELECT kind, excess_nanos::text AS excess, pauses_admission FROM budget_incidents WHERE tenant_id = $1`, [small.tenantId]);
    expect(incident).toEqual({ kind: 'over_reservation', excess: '400000', pauses_admission: false });
    expect(await budget.isPaused(small.tenantId)).toBe(false);
  });

  (serverUrl() ? it : it.skip)('charges a call settling while its cap is lowered against the new cap: spend stays within it, the rest an incident (leases off)', async () => {
    const budget = (await t.another({ BUDGET_LEASES: 'false' })).get(BudgetService);
    const x = await new Factory(t.app).newTenant({ monthlyBudget: '100.00' });
    const call = (await budget.reserve(x.tenantId, 10_000_000_000n))!;
    const period = await budget.currentPeriod(x.tenantId);
    const entry = { tenantId: x.tenantId, callGroup: randomUUID(), attempt: 1, purpose: 'chat' as const, cacheStatus: 'bypass' as const, outcome: 'ok', inputTokens: 10, cachedInputTokens: 0, outputTokens: 10, usageSource: 'provider' as const, costNanos: 5_000_000_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 1, streamed: false };
    let charged = -1n;
    await withHeldTransactions(ds, 1, async ([admin]) => {
      // The admin's PUT /v1/budget, committing while the call settles.
      await t.app.get(BooksRepository).setPeriodCap(admin.manager, x.tenantId, period, 1_000_000_000n);
      const settling = budget.settle(call, 5_000_000_000n, entry);
      await waitFor(async () => (await sessionsWaitingForLocks(ds)) > 0, 10_000, 'the settlement to wait for the period');
      await admin.commitTransaction();
      charged = await settling;
    });
    // Before, the charge was computed on the statement's snapshot (cap 100): spent 5.00 against a cap of 1.00, no incident.
    expect(charged).toBe(1_000_000_000n);
    const { spent, cap } = await books(x.tenantId);
    expect([spent, cap]).toEqual([1_000_000_000n, 1_000_000_000n]);
    const [incident] = await ds.query(`SELECT kind, charged_nanos::text AS charged, excess_nanos::text AS excess FROM budget_incidents WHERE tenant_id = $1`, [x.tenantId]);
    expect(incident).toEqual({ kind: 'over_reservation', charged: '1000000000', excess: '4000000000' });
  });

  (serverUrl() ? it : it.skip)('settles a call that pauses the tenant while an admin changes the budget: each waits its turn, neither is aborted as a deadlock (leases off)', async () => {
    const budget = (await t.another({ BUDGET_LEASES: 'false' })).get(BudgetService);
    const x = await new Factory(t.app).newTenant({ monthlyBudget: '100.00' });
    const call = (await budget.reserve(x.tenantId, 1_000_000_000n))!;
    const entry = { tenantId: x.tenantId, callGroup: randomUUID(), attempt: 1, purpose: 'chat' as const, cacheStatus: 'bypass' as const, outcome: 'ok', inputTokens: 100, cachedInputTokens: 0, outputTokens: 1, usageSource: 'provider' as const, costNanos: 500_000_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 1, streamed: false };
    const errors: string[] = [];
    await withHeldTransactions(ds, 1, async ([admin]) => {
      // PUT /v1/budget's transaction: the tenant's row, then the period's.
      await t.app.get(TenantsRepository).setBudget(admin.manager, x.tenantId, { cap: 50_000_000_000n, sealedAlertSecret: null });
      const settling = budget
        .settle(call, 500_000_000n, entry, { incident: { estimatedInputTokens: 1, reportedInputTokens: 100, maxOutputTokens: 1, reportedOutputTokens: 1 } })
        .catch((e: { code?: string }) => errors.push(`settlement ${e.code}`));
      await waitFor(async () => (await sessionsWaitingForLocks(ds)) > 0, 10_000, 'the settlement to wait');
      // Before, the settlement held the period and waited for the tenant's row: this waited for the period, and one was aborted (40P01).
      await t.app.get(BooksRepository).setPeriodCap(admin.manager, x.tenantId, call.period, 50_000_000_000n).catch((e: { code?: string }) => errors.push(`admin ${e.code}`));
      if (errors.length === 0) await admin.commitTransaction();
      await settling;
    });
    expect(errors).toEqual([]);
    expect(await budget.isPaused(x.tenantId)).toBe(true);
    const { spent, cap } = await books(x.tenantId);
    expect([spent, cap]).toEqual([500_000_000n, 50_000_000_000n]);
  });

  it("charges calls within their reservations in full once the cap is lowered below what is reserved, while it has room: others' reservations are not spend (leases off)", async () => {
    const budget = (await t.another({ BUDGET_LEASES: 'false' })).get(BudgetService);
    const x = await new Factory(t.app).newTenant({ monthlyBudget: '100.00' });
    const a = (await budget.reserve(x.tenantId, 10_000_000_000n))!;
    const b = (await budget.reserve(x.tenantId, 10_000_000_000n))!;
    await t.http.put('/v1/budget').set(bearer(x.adminKey)).send({ monthlyCap: '12.00' }).expect(200);
    const entry = { tenantId: x.tenantId, callGroup: randomUUID(), attempt: 1, purpose: 'chat' as const, cacheStatus: 'bypass' as const, outcome: 'ok', inputTokens: 10, cachedInputTokens: 0, outputTokens: 10, usageSource: 'provider' as const, costNanos: 5_000_000_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 1, streamed: false };
    // Before, the first was charged 2.00 (the cap less the other's 10.00 reservation) and booked as an incident.
    expect(await budget.settle(a, 5_000_000_000n, entry)).toBe(5_000_000_000n);
    // The second: 7.00 left under the cap; a cost of 8.00 within its reservation is charged 7.00, the rest an incident.
    expect(await budget.settle(b, 8_000_000_000n, { ...entry, callGroup: randomUUID(), costNanos: 8_000_000_000n })).toBe(7_000_000_000n);
    const { spent, cap } = await books(x.tenantId);
    expect([spent, cap]).toEqual([12_000_000_000n, 12_000_000_000n]);
    const incidents = await ds.query(`SELECT kind, charged_nanos::text AS charged, excess_nanos::text AS excess FROM budget_incidents WHERE tenant_id = $1`, [x.tenantId]);
    expect(incidents).toEqual([{ kind: 'over_reservation', charged: '7000000000', excess: '1000000000' }]);
  });

  it('records a call lost in flight (ledger row, incident the platform absorbs) without charging the tenant for the crash', async () => {
    const budget = (await t.another({ BUDGET_LEASES: 'false' })).get(BudgetService);
    const tenant = await new Factory(t.app).newTenant({ monthlyBudget: '1.00' });
    const call = {
      callGroup: '00000000-0000-4000-8000-0000000000aa',
      attempt: 2,
      purpose: 'grading',
      tier: 'standard',
      provider: 'dashscope',
      model: 'qwen-flash',
      estimatedInputTokens: 1234,
      maxOutputTokens: 1500,
      batch: false,
    };
    const lost = (await budget.reserve(tenant.tenantId, 700_000n, undefined, call))!;
    await budget.reserve(tenant.tenantId, 200_000n); // no call recorded: handed back, nothing else
    // Its process dies mid-call: the reservations outlive it.
    await ds.query(`UPDATE budget_reservations SET expires_at = now() - interval '1 second' WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(await budget.sweep()).toBe(2);
    expect((await books(tenant.tenantId)).spent).toBe(0n); // the tenant pays for the grading once, when its retry succeeds
    const rows = await ds.query(
      `SELECT id, outcome, cost_nanos::text AS cost, call_group, attempt, purpose, tier, provider, model, estimated_input_tokens, usage_source, cache_status
         FROM llm_calls WHERE tenant_id = $1`,
      [tenant.tenantId],
    );
    expect(rows).toEqual([
      {
        id: lost.id,
        outcome: 'lost_in_flight',
        cost: '0',
        call_group: call.callGroup,
        attempt: 2,
        purpose: 'grading',
        tier: 'standard',
        provider: 'dashscope',
        model: 'qwen-flash',
        estimated_input_tokens: 1234,
        usage_source: 'none',
        cache_status: 'miss',
      },
    ]);
    const view = await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200);
    expect(view.body.incidents).toEqual([
      expect.objectContaining({
        kind: 'lost_in_flight',
        provider: 'dashscope',
        model: 'qwen-flash',
        tokens: { boundInput: 1234, reportedInput: null, maxOutput: 1500, reportedOutput: null },
        charged: '0.00',
        excess: formatCny(700_000n), // the most it could have cost: absorbed by the platform
        pausesAdmission: false,
      }),
    ]);
    expect(view.body.admissionPaused).toBe(false);
    // The process was only stalled: its settlement arrives late and is charged as any late settlement.
    const entry = { tenantId: tenant.tenantId, callGroup: call.callGroup, attempt: 2, purpose: 'grading' as const, cacheStatus: 'miss' as const, outcome: 'ok', inputTokens: 1000, cachedInputTokens: 0, outputTokens: 300, usageSource: 'provider' as const, costNanos: 600_000n, savedNanos: 0n, compressionSavedTokens: 0, latencyMs: 1, streamed: false };
    expect(await budget.settle(lost, 600_000n, entry)).toBe(600_000n);
    expect((await books(tenant.tenantId)).spent).toBe(600_000n);
  });

  it('resumes admission when the last two open incidents are acknowledged at the same moment', async () => {
    // Each acknowledgement alone sees the other incident still open; together they must not leave
    // the tenant paused. Ten tenants, two acknowledgements each, all at once.
    const tenants = await Promise.all(Array.from({ length: 10 }, () => new Factory(t.app).newTenant({ monthlyBudget: '10.00' })));
    const pairs = await Promise.all(
      tenants.map(async (x) => {
        const ids = [randomUUID(), randomUUID()];
        for (const id of ids) {
          await ds.query(
            `INSERT INTO budget_incidents (tenant_id, id, period, kind, reserved_nanos, cost_nanos, charged_nanos, excess_nanos, pauses_admission)
             VALUES ($1, $2, '2026-11', 'tokens_over_bound', 0, 0, 0, 0, true)`,
            [x.tenantId, id],
          );
        }
        await ds.query(`UPDATE tenants SET admission_paused = true WHERE id = $1`, [x.tenantId]);
        return { x, ids };
      }),
    );
    await Promise.all(pairs.flatMap(({ x, ids }) => ids.map((id) => budget.acknowledge(x.tenantId, x.adminKeyId, id))));
    for (const { x } of pairs) expect(await budget.isPaused(x.tenantId)).toBe(false);
    const view = await t.http.get('/v1/budget').set(bearer(pairs[0].x.adminKey)).expect(200);
    expect(view.body.incidents.map((i: { acknowledgedAt: string | null }) => i.acknowledgedAt)).toEqual([expect.any(String), expect.any(String)]);
  });

  // Server only: the embedded database runs one transaction at a time.
  (serverUrl() ? it : it.skip)('moves a lease into a reservation locking the period before the lease, as a settlement does (the two never wait on each other in a circle)', async () => {
    await ask();
    const [lease] = await ds.query(`SELECT period, instance_id FROM budget_leases WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(lease).toBeDefined();
    const key = [tenant.tenantId, lease.period, lease.instance_id];
    await withHeldTransactions(ds, 2, async ([settlement, next]) => {
      // A settlement of the tenant holds its period (it locks periods first, then their leases).
      await settlement.query(`SELECT 1 FROM budget_periods WHERE tenant_id = $1 AND period = $2 FOR UPDATE`, key.slice(0, 2));
      const moving = t.app.get(BooksRepository).leaseToReservation(tenant.tenantId, lease.period, lease.instance_id, randomUUID(), 1n, 60_000);
      await waitFor(async () => (await sessionsWaitingForLocks(ds)) === 1, 10_000, 'the move waiting for the period');
      // Waiting for the period, the move holds nothing of the lease: the settlement's next step,
      // locking the lease, is not kept waiting (before, the move had locked it: a deadlock).
      await next.query(`SET LOCAL lock_timeout = '2s'`);
      await next.query(`SELECT 1 FROM budget_leases WHERE tenant_id = $1 AND period = $2 AND instance_id = $3 FOR UPDATE`, key);
      await next.rollbackTransaction();
      await settlement.rollbackTransaction();
      expect(await moving).toBe('moved');
    });
  });

  // Server only: the embedded database runs one transaction at a time.
  (serverUrl() ? it : it.skip)('lets the tenant write while an acknowledgement holds its row (its lock leaves the key alone)', async () => {
    const tenants = t.app.get(TenantsRepository);
    await withHeldTransactions(ds, 1, async ([ack]) => {
      await tenants.lockForAdmission(ack.manager, tenant.tenantId);
      // A row of the tenant's (its foreign key takes a KEY SHARE lock on the tenant's row): written
      // at once, not after the acknowledgement ends (FOR UPDATE made it wait).
      const id = randomUUID();
      await ds.transaction(async (tx) => {
        await tx.query(`SET LOCAL lock_timeout = '2s'`);
        await tx.query(
          `INSERT INTO budget_incidents (tenant_id, id, period, kind, reserved_nanos, cost_nanos, charged_nanos, excess_nanos, pauses_admission)
           VALUES ($1, $2, '2026-11', 'tokens_over_bound', 0, 0, 0, 0, false)`,
          [tenant.tenantId, id],
        );
      });
      const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM budget_incidents WHERE tenant_id = $1 AND id = $2`, [tenant.tenantId, id]);
      expect(n).toBe(1);
    });
  });
});
