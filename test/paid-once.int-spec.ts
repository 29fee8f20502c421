import { createHash, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { BudgetService } from '../src/billing/budget.service';
import { LedgerService } from '../src/billing/ledger.service';
import { Job, JobQueue } from '../src/jobs/job-queue';
import { GatewayError, GatewayRequest, GatewayService } from '../src/llm/gateway.service';
import { FakeProvider } from './fake-provider/fake-provider';
import { bearer, Factory, TestTenant } from './support/factories';
import { generateEssay } from './support/essays';
import { TestApp } from './support/test-app';
import { startAppWithFake } from './support/app-with-fake';
import { expectBooksBalanced } from './support/books';

/**
 * A job's provider calls are paid once: the answer becomes durable in the statement that settles
 * the call, a retry of the job reuses it, a retry waits while the first call is in flight, and a
 * worker whose lease ran out cannot start a call at all.
 */
describe('paid once: guarded provider calls of a job (real PostgreSQL, fake provider over HTTP)', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let gw: GatewayService;
  let queue: JobQueue;
  let ds: DataSource;
  let tenant: TestTenant;
  let job: Job;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake({ WORKERS_ENABLED: 'false', LLM_STANDARD_MODELS: 'dashscope:qwen-flash', LLM_BATCH_WINDOW_MS: '50', LLM_BATCH_POLL_MS: '50' }));
    gw = t.app.get(GatewayService);
    queue = t.app.get(JobQueue);
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
    await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(7, 'zh').text }).expect(202);
    [job] = (await queue.claim(1, 60_000)).filter((j) => j.tenantId === tenant.tenantId);
    expect(job).toBeDefined();
  });

  const messages = [{ role: 'user' as const, content: '请给这篇作文打分。' }];
  const call = (holder = job.holder, extra: Partial<GatewayRequest> = {}) =>
    gw.complete({
      tenantId: tenant.tenantId,
      essayId: job.essayId,
      purpose: 'grading',
      target: { tier: 'standard' },
      messages,
      maxTokens: 100,
      once: { scope: `job:${job.id}`, lease: { jobId: job.id, holder } },
      ...extra,
    });
  /** Another worker takes the job over (the first one's lease ran out while it was starved). */
  const takeOver = (holder: string) => ds.query(`UPDATE jobs SET locked_by = $2, locked_until = now() + interval '1 minute' WHERE id = $1`, [job.id, holder]);
  const ledger = () =>
    ds.query(`SELECT outcome, cache_status, cost_nanos::text AS cost FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`, [tenant.tenantId]);
  const booksBalanced = async () => (await expectBooksBalanced(ds, tenant.tenantId)).spent;

  it('reuses the answer a dead worker paid for: the retry makes no provider call and costs nothing more', async () => {
    const first = await call();
    expect(fake.requests).toHaveLength(1);
    const spent = await booksBalanced();
    // The first worker died before storing the grade; another one runs the job again.
    await takeOver('second-worker');
    const again = await call('second-worker');
    expect(fake.requests).toHaveLength(1);
    expect(again.content).toBe(first.content);
    expect(again.costNanos).toBe(first.costNanos); // what the grade cost, paid once
    expect(await ledger()).toEqual([
      { outcome: 'ok', cache_status: 'bypass', cost: first.costNanos.toString() },
      { outcome: 'replayed', cache_status: 'replay', cost: '0' },
    ]);
    expect(await booksBalanced()).toBe(spent);
    // The replay is neither a provider call nor a failure in the tenant's figures.
    const ledgerService = t.app.get(LedgerService);
    expect(await ledgerService.stats(tenant.tenantId)).toMatchObject({ totalCalls: 2, providerCalls: 1, failedCalls: 0 });
    const [day] = await ledgerService.usage(tenant.tenantId, new Date(Date.now() - 86_400_000), new Date(Date.now() + 60_000), 'provider', 'Asia/Shanghai'); // the tenant's zone, as /v1/usage reads it (its roll-up days are the tenant's)
    expect(day).toMatchObject({ calls: 2, failures: 0 });
  });

  it("replays the answer a dead worker paid for even when the answer cache holds it too: the grading's cost is what was paid, not a hit that saved it", async () => {
    const cache = { key: `paid-once-${job.id}`, lookup: true, store: true };
    const first = await call(job.holder, { cache });
    expect(fake.requests).toHaveLength(1);
    // The worker died before storing the grade; the retry asks the cache first (it holds the answer).
    await takeOver('second-worker');
    const again = await call('second-worker', { cache });
    expect(fake.requests).toHaveLength(1);
    expect(again.content).toBe(first.content);
    expect(again.costNanos).toBe(first.costNanos);
    const rows = await ds.query(`SELECT outcome, cache_status, cost_nanos::text AS cost, saved_nanos::text AS saved FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`, [tenant.tenantId]);
    expect(rows).toEqual([
      { outcome: 'ok', cache_status: 'miss', cost: first.costNanos.toString(), saved: '0' },
      { outcome: 'replayed', cache_status: 'replay', cost: '0', saved: '0' },
    ]);
    // Another request with the same text and no job of its own is a cache hit, as ever.
    const other = await gw.complete({ tenantId: tenant.tenantId, purpose: 'grading', target: { tier: 'standard' }, messages, maxTokens: 100, cache });
    expect(other.cache).toBe('hit');
    await booksBalanced();
  });

  it('says what a replayed answer of scheduled work saved, as its first run did (the replay row claims nothing again)', async () => {
    // Scheduled work sent through the Batch API: half the real-time price at the moment it was planned.
    const scheduled = { batch: true, priceAsOf: new Date() };
    const first = await call(job.holder, scheduled);
    expect(first.scheduleSavedNanos).toBeGreaterThan(0n);
    await takeOver('second-worker');
    const again = await call('second-worker', scheduled);
    expect(fake.requests.filter((r) => r.batchId)).toHaveLength(1);
    expect(again.scheduleSavedNanos).toBe(first.scheduleSavedNanos);
    const rows = await ds.query(`SELECT outcome, schedule_saved_nanos::text AS saved FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`, [tenant.tenantId]);
    expect(rows).toEqual([
      { outcome: 'ok', saved: first.scheduleSavedNanos!.toString() },
      { outcome: 'replayed', saved: null },
    ]);
  });

  it("a call that joined an identical one in flight makes its own when that one's lease was lost: the leader's lost lease is not the follower's", async () => {
    const cache = { key: `joined-${job.id}`, lookup: true, store: true };
    // The leader's first try fails slowly; meanwhile its job is taken over by a worker whose call
    // joins the leader's (same tenant, same cache key). The leader's retry finds its lease gone.
    for (const p of ['deepseek', 'dashscope', 'zhipu'] as const) fake.enqueue(p, { kind: 'error', status: 500, body: { error: { message: 'Internal server error', type: 'api_error' } }, latencyMs: 400 });
    const leader = call(job.holder, { cache }).catch((e) => e);
    await new Promise((r) => setTimeout(r, 150));
    expect(fake.requests).toHaveLength(1);
    await takeOver('second-worker');
    const follower = await call('second-worker', { cache });
    expect((await leader).code).toBe('LEASE_LOST');
    // Before: the follower was answered the leader's LEASE_LOST, and its worker gave the job up while holding it.
    expect(follower.content).toBeTruthy();
    expect(follower.costNanos).toBeGreaterThan(0n);
    expect(fake.requests).toHaveLength(2);
    await booksBalanced();
  });

  it('refuses to call a provider for a worker whose lease is gone, reserving and charging nothing', async () => {
    await takeOver('second-worker');
    const err = await call().catch((e) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect(err.code).toBe('LEASE_LOST');
    expect(fake.requests).toHaveLength(0);
    expect(await ledger()).toEqual([]);
    expect(await booksBalanced()).toBe(0n);
    const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM call_guards WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(n).toBe(0);
  });

  it('makes a retry wait while the first call is still at the provider, then reuse its answer', async () => {
    fake.setLatency(1_000);
    const slow = call(); // the first worker's call, under way
    await new Promise((r) => setTimeout(r, 300));
    await takeOver('second-worker');
    const err = await call('second-worker').catch((e) => e);
    expect(err).toMatchObject({ code: 'CALL_IN_FLIGHT' });
    expect(err.retryAfterMs).toBeGreaterThan(0);
    const first = await slow; // it settles even though its worker lost the job: the money was spent
    fake.setLatency(0);
    const again = await call('second-worker');
    expect(again.content).toBe(first.content);
    expect(fake.requests).toHaveLength(1);
    await booksBalanced();
  });

  it('charges a call that settles after its guard was taken over nothing: the retry\'s call is the one charge, the first returned as lost in flight', async () => {
    fake.setLatency(1_500);
    const slow = call(); // the first worker's call: the worker stalls, its lease and the guard's time run out
    await new Promise((r) => setTimeout(r, 300));
    await takeOver('second-worker');
    await ds.query(`UPDATE call_guards SET expires_at = now() - interval '1 second' WHERE tenant_id = $1`, [tenant.tenantId]);
    fake.setLatency(0);
    const retried = await call('second-worker');
    await slow; // its answer comes, and is settled late
    expect(fake.requests).toHaveLength(2); // the provider ran both (the platform absorbs the first)
    const rows = await ledger();
    expect(rows.filter((r: { outcome: string }) => r.outcome === 'ok')).toEqual([{ outcome: 'ok', cache_status: 'bypass', cost: retried.costNanos.toString() }]);
    expect(rows.filter((r: { outcome: string }) => r.outcome !== 'ok')).toEqual([{ outcome: 'lost_in_flight', cache_status: 'miss', cost: '0' }]);
    expect(await booksBalanced()).toBe(retried.costNanos);
    const incidents = await ds.query(`SELECT kind, charged_nanos::text AS charged FROM budget_incidents WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(incidents).toEqual([{ kind: 'lost_in_flight', charged: '0' }]);
  });

  it("lets the retry of a call whose process died reserve at once, near the cap: the dead call's reservation is returned when its guard is taken over, not minutes later", async () => {
    const budget = t.app.get(BudgetService);
    // The first worker reserved its worst case and died at the provider: its guard and reservation stay.
    const guard = { key: createHash('sha256').update(`job:${job.id}:dead-call`).digest('hex'), inFlightMs: 125_000, lease: { jobId: job.id, holder: job.holder } };
    const worst = 40_000_000n;
    const dead = await budget.reserveGuarded(tenant.tenantId, worst, guard, 420_000, { callGroup: randomUUID(), attempt: 0, essayId: job.essayId, purpose: 'grading', tier: 'standard' });
    expect(dead.kind).toBe('reserved');
    // The cap leaves room for one worst case only: the dead one's.
    const { spent, reserved } = (await ds.query(`SELECT spent_nanos::text AS spent, reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]))[0];
    await ds.query(`UPDATE budget_periods SET cap_nanos = $2 WHERE tenant_id = $1`, [tenant.tenantId, (BigInt(spent) + BigInt(reserved)).toString()]);
    // Its guard's time runs out (125 s by default); its reservation's would take minutes more. The job's retry:
    await takeOver('second-worker');
    await ds.query(`UPDATE call_guards SET expires_at = now() - interval '1 second' WHERE tenant_id = $1`, [tenant.tenantId]);
    const retry = await budget.reserveGuarded(tenant.tenantId, worst, { ...guard, lease: { jobId: job.id, holder: 'second-worker' } }, 420_000);
    expect(retry.kind).toBe('reserved');
    const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM budget_reservations WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(n).toBe(1); // the retry's; the dead one's returned
    expect(await ledger()).toEqual([{ outcome: 'lost_in_flight', cache_status: 'miss', cost: '0' }]);
    // What is held is the retry's worst case alone, within the cap.
    const [p] = await ds.query(`SELECT cap_nanos::text AS cap, spent_nanos::text AS spent, reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(BigInt(p.reserved)).toBe(worst);
    expect(BigInt(p.spent) + BigInt(p.reserved)).toBeLessThanOrEqual(BigInt(p.cap));
  });

  it('gives the guard back when the call fails, so the retry may call again', async () => {
    fake.enqueue('dashscope', Array.from({ length: 3 }, () => ({ kind: 'preset' as const, name: 'server_error' })));
    await expect(call()).rejects.toMatchObject({ code: 'NO_PROVIDER_AVAILABLE' });
    expect(fake.requests).toHaveLength(3); // the first try and two retries, each one guarded in turn
    const failedCalls = fake.requests.length;
    const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM call_guards WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(n).toBe(0);
    gw.resetHealth();
    const ok = await call();
    expect(ok.content.length).toBeGreaterThan(0);
    expect(fake.requests.length).toBe(failedCalls + 1);
    await booksBalanced();
  });

  it('leaves no guard behind when the budget cannot cover the call', async () => {
    const budget = t.app.get(BudgetService);
    await budget.update(tenant.tenantId, { monthlyCap: '0.000001' });
    await expect(call()).rejects.toMatchObject({ code: 'BUDGET_EXHAUSTED' });
    const [{ n }] = await ds.query(`SELECT count(*)::int AS n FROM call_guards WHERE tenant_id = $1`, [tenant.tenantId]);
    expect(n).toBe(0);
    expect(fake.requests).toHaveLength(0);
  });
});

describe('paid once, with two models: the retry after a crash replays the answer of the model that answered', () => {
  it('tries first the model whose guard holds the paid answer (found on a cache hit), not the usual first model: no second paid call', async () => {
    const { fake, t } = await startAppWithFake({ WORKERS_ENABLED: 'false', LLM_STANDARD_MODELS: 'deepseek:deepseek-flash,dashscope:qwen-flash', LLM_MAX_RETRIES: '0' });
    try {
      const gw = t.app.get(GatewayService);
      const queue = t.app.get(JobQueue);
      const tenant = await new Factory(t.app).newTenant({ monthlyBudget: '10.00' });
      await t.http.post('/v1/essays').set(bearer(tenant.adminKey)).send({ text: generateEssay(8, 'zh').text }).expect(202);
      const [job] = (await queue.claim(1, 60_000)).filter((j) => j.tenantId === tenant.tenantId);
      const cache = { key: `paid-once-two-${job.id}`, lookup: true, store: true };
      const call = (holder: string) =>
        gw.complete({
          tenantId: tenant.tenantId,
          essayId: job.essayId,
          purpose: 'grading',
          target: { tier: 'standard' },
          messages: [{ role: 'user' as const, content: '请给这篇作文打分。' }],
          maxTokens: 100,
          cache,
          once: { scope: `job:${job.id}`, lease: { jobId: job.id, holder } },
        });
      // deepseek fails; qwen-flash answers (paid, cached, kept on its guard). The worker then dies.
      fake.enqueue('deepseek', { kind: 'preset', name: 'server_error' });
      const first = await call(job.holder);
      expect(first.provider).toBe('dashscope');
      gw.resetHealth();
      await t.dataSource.query(`UPDATE jobs SET locked_by = 'second-worker', locked_until = now() + interval '1 minute' WHERE id = $1`, [job.id]);
      const requests = fake.requests.length;
      const again = await call('second-worker');
      expect([again.provider, again.content, again.costNanos, fake.requests.length - requests]).toEqual(['dashscope', first.content, first.costNanos, 0]);
      const rows = await t.dataSource.query(`SELECT provider, outcome FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, attempt`, [tenant.tenantId]);
      expect(rows.filter((r: { outcome: string }) => r.outcome === 'ok')).toEqual([{ provider: 'dashscope', outcome: 'ok' }]);
      await expectBooksBalanced(t.dataSource, tenant.tenantId);
    } finally {
      await t.close();
      await fake.close();
    }
  });
});
