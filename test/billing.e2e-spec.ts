import { BudgetService } from '../src/billing/budget.service';
import { FakeProvider } from './fake-provider/fake-provider';
import { bearer, Factory, TestTenant } from './support/factories';
import { providerEnv } from './support/providers';
import { freePort, hasExited, startService } from './support/spawn-service';
import { OPERATOR_TOKEN, TestApp } from './support/test-app';
import { waitFor } from './support/wait';
import { sessionsWaitingForLocks, withHeldTransactions } from './support/held-transactions';
import { serverUrl } from './support/test-database';
import { BooksRepository } from '../src/billing/books.repository';
import { TenantsRepository } from '../src/tenancy/tenants.repository';
import { startAppWithFake } from './support/app-with-fake';

describe('budget, usage and stats over HTTP', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let f: Factory;
  let tenant: TestTenant;
  let teacher: string;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake());
    f = new Factory(t.app);
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });
  beforeEach(async () => {
    fake.reset();
    tenant = await f.newTenant({ monthlyBudget: '5000.00' });
    teacher = (await f.newKey(tenant, 'teacher')).key;
  });

  const chat = (key: string, content: string, model = 'inkstone-standard') =>
    t.http.post('/v1/chat/completions').set(bearer(key)).send({ model, messages: [{ role: 'user', content }] });

  it('shows the budget of the current month in the tenant time zone', async () => {
    const res = await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200);
    expect(res.body).toMatchObject({
      timezone: 'Asia/Shanghai',
      monthlyCap: '5000.00',
      spent: '0.00',
      reserved: '0.00',
      remaining: '5000.00',
      utilization: '0.0000',
      whenExhausted: 'offline',
      alertThresholds: [0.8, 1],
      forecast: { monthEnd: '0.00', exhaustsOn: null },
    });
    expect(res.body.period).toMatch(/^\d{4}-\d{2}$/);
  });

  it('sets the cap exactly to the nano-yuan, and the policy and thresholds', async () => {
    const res = await t.http
      .put('/v1/budget')
      .set(bearer(tenant.adminKey))
      .send({ monthlyCap: '0.012940', whenExhausted: 'reject', alertThresholds: [0.5, 0.9, 1] })
      .expect(200);
    expect(res.body).toMatchObject({ monthlyCap: '0.01294', remaining: '0.01294', whenExhausted: 'reject', alertThresholds: [0.5, 0.9, 1] });
    const [row] = await t.dataSource.query(`SELECT cap_nanos FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(row.cap_nanos).toBe('12940000');
  });

  it('saves a new cap even when its alert check after the change cannot read the period (the database away a moment): 200, the cap kept', async () => {
    const books = t.app.get(BooksRepository);
    const spy = jest.spyOn(books, 'period').mockRejectedValueOnce(new Error('Connection terminated unexpectedly'));
    try {
      const res = await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '123.45' }).expect(200);
      expect(res.body.monthlyCap).toBe('123.45');
      expect(spy).toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
    const [row] = await t.dataSource.query(`SELECT cap_nanos::text AS cap FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(row.cap).toBe('123450000000');
  });

  it('sets the cap of a later period already opened too (a change made across the turn of the month)', async () => {
    const { period } = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
    const next = new Date(Date.parse(`${period}-01T00:00:00Z`) + 32 * 86_400_000).toISOString().slice(0, 7);
    // The next month's row, opened by a call just after midnight, before the change committed.
    await t.dataSource.query(`INSERT INTO budget_periods (tenant_id, period, cap_nanos) VALUES ($1, $2, 5000000000000)`, [tenant.tenantId, next]);
    await t.http.put('/v1/budget').set(bearer(tenant.adminKey)).send({ monthlyCap: '12.00' }).expect(200);
    const rows = await t.dataSource.query(`SELECT period, cap_nanos FROM budget_periods WHERE tenant_id = $1 ORDER BY period`, [tenant.tenantId]);
    expect(rows).toEqual([
      { period, cap_nanos: '12000000000' },
      { period: next, cap_nanos: '12000000000' },
    ]);
  });

  // (On a PostgreSQL server: the embedded database runs one transaction at a time.)
  (serverUrl() ? it : it.skip)('opens a new month on the cap of a budget change committing at that moment (the opening waits for it)', async () => {
    const { period } = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
    const next = new Date(Date.parse(`${period}-01T00:00:00Z`) + 63 * 86_400_000).toISOString().slice(0, 7);
    const books = t.app.get(BooksRepository);
    await withHeldTransactions(t.dataSource, 1, async ([change]) => {
      // The change, as BudgetService.update makes it: the tenant's cap, then the periods already opened.
      await t.app.get(TenantsRepository).setBudget(change.manager, tenant.tenantId, { cap: 13_000_000_000n, sealedAlertSecret: null });
      await books.setPeriodCap(change.manager, tenant.tenantId, period, 13_000_000_000n);
      // A call opens the next month meanwhile.
      let opened = false;
      const opening = books.openPeriod(tenant.tenantId, next).then(() => (opened = true));
      await waitFor(async () => opened || (await sessionsWaitingForLocks(t.dataSource)) > 0, 5_000, 'the opening done or waiting');
      await change.commitTransaction();
      await opening;
    });
    const [row] = await t.dataSource.query(`SELECT cap_nanos FROM budget_periods WHERE tenant_id = $1 AND period = $2`, [tenant.tenantId, next]);
    expect(row).toEqual({ cap_nanos: '13000000000' });
  });

  (serverUrl() ? it : it.skip)('opens a period that exists already without waiting on it: no deadlock with an incident settling on it (period, then tenant)', async () => {
    const { period } = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
    const books = t.app.get(BooksRepository);
    await withHeldTransactions(t.dataSource, 1, async ([incident]) => {
      // An incident's settlement: its period's row first…
      await incident.query(`UPDATE budget_periods SET updated_at = now() WHERE tenant_id = $1 AND period = $2`, [tenant.tenantId, period]);
      // …while a new instance opens the periods it has not seen.
      let opened = false;
      const opening = books.openPeriod(tenant.tenantId, period).then(() => (opened = true));
      await waitFor(async () => opened || (await sessionsWaitingForLocks(t.dataSource)) > 0, 5_000, 'the opening done or waiting');
      // …then its tenant (admission paused).
      await incident.query(`SET LOCAL lock_timeout = '3s'`);
      await incident.query(`UPDATE tenants SET admission_paused = admission_paused WHERE id = $1`, [tenant.tenantId]);
      await incident.commitTransaction();
      await opening;
      expect(opened).toBe(true);
    });
  });

  it('opens a period once more when its statement was chosen as a deadlock victim', async () => {
    const { period } = (await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200)).body;
    const next = new Date(Date.parse(`${period}-01T00:00:00Z`) + 95 * 86_400_000).toISOString().slice(0, 7);
    // The pool the group statements go to (TypeORM's driver's master pool).
    const pool = (t.dataSource.driver as unknown as { master: { query: (...a: unknown[]) => Promise<unknown> } }).master;
    const real = pool.query.bind(pool);
    let victims = 0;
    const query = jest.spyOn(pool, 'query').mockImplementation(async (...args: unknown[]) => {
      const sql = typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string }).text);
      if (/INSERT INTO budget_periods/.test(sql) && victims++ === 0) throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
      return real(...args);
    });
    try {
      await t.app.get(BooksRepository).openPeriod(tenant.tenantId, next);
    } finally {
      query.mockRestore();
    }
    expect(victims).toBe(2);
    expect(await t.dataSource.query(`SELECT count(*)::int AS n FROM budget_periods WHERE tenant_id = $1 AND period = $2`, [tenant.tenantId, next])).toEqual([{ n: 1 }]);
  });

  it('rejects bad budget input, field by field, and changes nothing', async () => {
    const res = await t.http
      .put('/v1/budget')
      .set(bearer(tenant.adminKey))
      .send({ monthlyCap: 5000, whenExhausted: 'panic', alertThresholds: [1.5] })
      .expect(400);
    expect(res.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual(['alertThresholds', 'monthlyCap', 'whenExhausted']);
    const after = await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200);
    expect(after.body.monthlyCap).toBe('5000.00');
  });

  it('keeps the budget and reports to admins (teachers get 403)', async () => {
    await t.http.get('/v1/budget').set(bearer(teacher)).expect(403);
    await t.http.put('/v1/budget').set(bearer(teacher)).send({ monthlyCap: '1.00' }).expect(403);
    await t.http.get('/v1/usage').set(bearer(teacher)).expect(403);
    await t.http.get('/v1/stats').set(bearer(teacher)).expect(403);
  });

  it('reports usage and stats from the ledger, equal to the spend', async () => {
    await chat(teacher, 'one').expect(200);
    await chat(teacher, 'one').expect(200); // cache hit
    await chat(tenant.adminKey, 'two', 'qwen-flash').expect(200);
    fake.enqueue('deepseek', { kind: 'preset', name: 'context_length' });
    await chat(teacher, 'three').expect(200); // a failed attempt, then dashscope
    await t.app.get(BudgetService).ledgerWritten(); // (the hit's row is written behind its answer)

    const budget = await t.http.get('/v1/budget').set(bearer(tenant.adminKey)).expect(200);
    const stats = await t.http.get('/v1/stats').set(bearer(tenant.adminKey)).expect(200);
    expect(stats.body).toMatchObject({ totalCalls: 5, cacheHits: 1, providerCalls: 4, failedCalls: 1, cost: budget.body.spent, outcomes: { ok: 4, fallback: 1 } });
    expect(stats.body.cacheHitRate).toBe(0.2);
    expect(stats.body.savedByCache).not.toBe('0.00');

    const byModel = await t.http.get('/v1/usage?groupBy=model').set(bearer(tenant.adminKey)).expect(200);
    const keys = byModel.body.data.map((r: { key: string }) => r.key);
    expect(keys).toEqual(['dashscope:qwen-flash', 'deepseek:deepseek-flash']);
    const byTeacher = await t.http.get('/v1/usage?groupBy=teacher').set(bearer(tenant.adminKey)).expect(200);
    expect(byTeacher.body.data).toHaveLength(2);
    const byDay = await t.http.get('/v1/usage?groupBy=day').set(bearer(tenant.adminKey)).expect(200);
    expect(byDay.body.data).toHaveLength(1);
    expect(byDay.body.data[0]).toMatchObject({ calls: 5, cacheHits: 1, cost: budget.body.spent });
  });

  it('counts a call the budget refused as a failed call, not a provider call: none was sent', async () => {
    const poor = await f.newTenant({ monthlyBudget: '0.000001' });
    expect((await chat(poor.adminKey, 'hello').expect(402)).body.error.code).toBe('BUDGET_EXHAUSTED');
    await t.app.get(BudgetService).ledgerWritten();
    expect(fake.requests).toHaveLength(0);
    const stats = (await t.http.get('/v1/stats').set(bearer(poor.adminKey)).expect(200)).body;
    expect(stats.totalCalls).toBeGreaterThan(0); // one row for each model of the tier it did not fit
    expect(stats).toMatchObject({ providerCalls: 0, failedCalls: stats.totalCalls, cacheHits: 0, cost: '0.00', outcomes: { budget_exhausted: stats.totalCalls } });
  });

  it('rejects bad usage queries', async () => {
    await t.http.get('/v1/usage?groupBy=color').set(bearer(tenant.adminKey)).expect(400);
    await t.http.get('/v1/usage?from=yesterday').set(bearer(tenant.adminKey)).expect(400);
    // A time must name its offset: without one it would be read in the server's zone, not the tenant's.
    const naive = await t.http.get('/v1/usage?to=2026-01-31T23:59:59').set(bearer(tenant.adminKey)).expect(400);
    expect(naive.body.error.details).toEqual([{ field: 'to', message: expect.stringContaining('offset') }]);
    await t.http.get(`/v1/usage?from=2026-01-01&to=${encodeURIComponent('2026-01-31T23:59:59+08:00')}`).set(bearer(tenant.adminKey)).expect(200);
    await t.http.get('/v1/usage?from=2026-01-01&to=2026-01-31T15:59:59Z').set(bearer(tenant.adminKey)).expect(200);
    await t.http.get('/v1/usage?from=2026-02-01&to=2026-01-01').set(bearer(tenant.adminKey)).expect(400);
    await t.http.get('/v1/usage?from=0000-01-01').set(bearer(tenant.adminKey)).expect(400);
    await t.http.get('/v1/stats?period=2026-13').set(bearer(tenant.adminKey)).expect(400);
    // A day that does not exist, with a time and offset too (it was read as 2 March, 1 December).
    for (const from of ['2026-02-30T00:00:00Z', encodeURIComponent('2026-11-31T00:00:00+05:30')]) {
      expect((await t.http.get(`/v1/usage?from=${from}`).set(bearer(tenant.adminKey)).expect(400)).body.error.details[0].field).toBe('from');
    }
  });

  it("never shows one tenant's usage to another", async () => {
    await chat(teacher, 'mine').expect(200);
    const other = await f.newTenant();
    const stats = await t.http.get('/v1/stats').set(bearer(other.adminKey)).expect(200);
    expect(stats.body.totalCalls).toBe(0);
    const budget = await t.http.get('/v1/budget').set(bearer(other.adminKey)).expect(200);
    expect(budget.body.spent).toBe('0.00');
  });
});

describe('a service process killed in the middle of a model call', () => {
  let fake: FakeProvider;
  let t: TestApp;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake({ BUDGET_RESERVATION_TTL_MS: '1000' }));
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });

  it('leaves a reservation that expires and is swept back: nothing charged, nothing lost', async () => {
    const env = {
      INKSTONE_ADMIN_TOKEN: OPERATOR_TOKEN,
      DATABASE_URL: t.config.databaseUrl!,
      LOG_LEVEL: 'warn',
      ...providerEnv(fake, { LLM_FIRST_BYTE_TIMEOUT_MS: '60000', LLM_TOTAL_TIMEOUT_MS: '60000' }),
      BUDGET_RESERVATION_TTL_MS: '1000',
    };
    const service = await startService(env, await freePort());
    try {
      const created = await fetch(`${service.url}/v1/tenants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${OPERATOR_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Doomed School', monthlyBudget: '10.00' }),
      });
      const { tenant, adminKey } = (await created.json()) as { tenant: { id: string }; adminKey: string };
      fake.enqueue('deepseek', { kind: 'hang' });
      void fetch(`${service.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'inkstone-standard', messages: [{ role: 'user', content: 'never answered' }] }),
      }).catch(() => undefined);
      await waitFor(() => fake.requestCount === 1, 10_000, 'the call to reach the provider');
      const [held] = await t.dataSource.query(`SELECT reserved_nanos FROM budget_periods WHERE tenant_id = $1`, [tenant.id]);
      expect(BigInt(held.reserved_nanos)).toBeGreaterThan(0n);

      await service.stop('SIGKILL');

      const budget = t.app.get(BudgetService);
      await waitFor(async () => (await budget.sweep()) === 1, 5_000, 'the expired reservation to be swept');
      const [after] = await t.dataSource.query(`SELECT reserved_nanos, spent_nanos FROM budget_periods WHERE tenant_id = $1`, [tenant.id]);
      expect(after).toEqual({ reserved_nanos: '0', spent_nanos: '0' });
      const [{ n }] = await t.dataSource.query(`SELECT count(*)::int AS n FROM budget_reservations WHERE tenant_id = $1`, [tenant.id]);
      expect(n).toBe(0);
    } finally {
      if (!hasExited(service.child)) await service.stop('SIGKILL');
    }
  }, 60_000);
});
