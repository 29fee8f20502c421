import { randomUUID } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { DataSource, QueryRunner } from 'typeorm';
import { BudgetService } from '../src/billing/budget.service';
import { BudgetLeases } from '../src/billing/budget-leases';
import { BooksRepository } from '../src/billing/books.repository';
import { LedgerEntry } from '../src/billing/ledger.service';
import { GatewayService } from '../src/llm/gateway.service';
import { MetricsService } from '../src/metrics/metrics.service';
import { startAppWithFake } from './support/app-with-fake';
import { expectBooksBalanced } from './support/books';
import { Factory, TestTenant } from './support/factories';
import { serverUrl } from './support/test-database';
import { TestApp } from './support/test-app';
import { FakeProvider } from './fake-provider/fake-provider';

/**
 * A cache hit costs nothing, so its ledger row is written behind its answer (BudgetLeases.recordBehind):
 * the answer does not wait for the group commit; the row follows with the next statement, is
 * written before the instance shuts down, and no more than `maxBehind` rows wait at once (then a
 * hit waits for its row). A failed write is tried once more, then logged. Real PostgreSQL (or the
 * embedded one); the lock that holds writes back needs a second session, so a server.
 */
describe('cache hits: ledger rows written behind their answers (real PostgreSQL)', () => {
  let fake: FakeProvider;
  let t: TestApp;
  let f: Factory;
  let ds: DataSource;
  let budget: BudgetService;
  let tenant: TestTenant;
  let period: string;

  beforeAll(async () => {
    ({ fake, t } = await startAppWithFake());
    f = new Factory(t.app);
    ds = t.dataSource;
    budget = t.app.get(BudgetService);
  });
  afterAll(async () => {
    await t.close();
    await fake.close();
  });
  beforeEach(async () => {
    tenant = await f.newTenant({ monthlyBudget: '100.00' });
    period = await budget.currentPeriod(tenant.tenantId);
  });

  const hitEntry = (savedNanos = 7n, of = { tenantId: tenant.tenantId, period }): LedgerEntry & { period: string } => ({
    tenantId: of.tenantId, period: of.period, callGroup: randomUUID(), attempt: 1, purpose: 'chat', cacheStatus: 'hit', outcome: 'ok', inputTokens: 10, cachedInputTokens: 0,
    outputTokens: 10, usageSource: 'provider', costNanos: 0n, savedNanos, compressionSavedTokens: 0, latencyMs: 0, streamed: false,
  });
  const rows = async (tenantId = tenant.tenantId): Promise<Array<{ cache_status: string; cost: string; saved: string }>> =>
    ds.query(`SELECT cache_status, cost_nanos::text AS cost, saved_nanos::text AS saved FROM llm_calls WHERE tenant_id = $1 ORDER BY created_at, id`, [tenantId]);
  /** rows given up, as each BudgetLeases of the test counted them */
  let lostCount = 0;
  const leasesOf = (maxBehind = 1_024, maxBehindPerTenant = 128) =>
    new BudgetLeases(
      t.app.get(BooksRepository),
      { ttlMs: 60_000, rateWindowMs: 2_000, flushRows: 64, idleMs: 60_000, maxBehind, maxBehindPerTenant },
      () => Promise.reject(new Error('no lease is swept here')),
      () => lostCount++,
    );
  /** Another session holds back every insert into the ledger until release(). */
  async function holdLedger(): Promise<{ release(): Promise<void> }> {
    const qr: QueryRunner = ds.createQueryRunner();
    await qr.connect();
    await qr.startTransaction();
    await qr.query('LOCK TABLE llm_calls IN EXCLUSIVE MODE');
    return {
      release: async () => {
        await qr.commitTransaction();
        await qr.release();
      },
    };
  }
  /** Whether `p` settles within `ms` (it is not waiting on the database). */
  const settlesWithin = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  const onServer = serverUrl() ? it : it.skip;

  onServer('answers a hit while the ledger is held back, and writes its row once it is free: the books balance', async () => {
    const gw = t.app.get(GatewayService);
    const ask = () =>
      gw.complete({ tenantId: tenant.tenantId, purpose: 'chat', target: { tier: 'standard' }, messages: [{ role: 'user', content: 'what is 6+6?' }], maxTokens: 200, cache: { key: 'k-behind', lookup: true, store: true } });
    const first = await ask();
    expect(first.cache).toBe('miss');
    const held = await holdLedger();
    let hit: Awaited<ReturnType<typeof ask>> | undefined;
    try {
      const answer = ask().then((r) => (hit = r));
      expect(await settlesWithin(answer, 5_000)).toBe(true);
      expect(hit).toMatchObject({ cache: 'hit', costNanos: 0n, savedNanos: first.costNanos, content: first.content });
      // Its row waits behind the lock.
      expect((await rows()).map((r) => r.cache_status)).toEqual(['miss']);
    } finally {
      await held.release();
    }
    await budget.ledgerWritten();
    expect(await rows()).toEqual([
      { cache_status: 'miss', cost: first.costNanos.toString(), saved: '0' },
      { cache_status: 'hit', cost: '0', saved: first.costNanos.toString() },
    ]);
    expect(fake.requests).toHaveLength(1);
    await expectBooksBalanced(ds, tenant.tenantId);
  });

  it('writes the rows still waiting before the instance shuts down', async () => {
    const leases = leasesOf();
    // Not awaited one by one: all five are waiting when the close begins.
    const submitted = [1n, 2n, 3n, 4n, 5n].map((n) => leases.recordBehind(hitEntry(n)));
    await leases.close();
    await Promise.all(submitted);
    expect((await rows()).map((r) => [r.cache_status, r.cost, r.saved])).toEqual(
      expect.arrayContaining([1, 2, 3, 4, 5].map((n) => ['hit', '0', String(n)])),
    );
    expect(await rows()).toHaveLength(5);
    // After the close, a hit's row is written before its answer leaves.
    await leases.recordBehind(hitEntry(6n));
    expect(await rows()).toHaveLength(6);
    await expectBooksBalanced(ds, tenant.tenantId);
  });

  /**
   * Floods one tenant's hits past a bound of 2 while the ledger is held: the first two go behind,
   * the third waits; `duringHold` runs before the release. Then every row is written (1–3), and
   * with them written a fourth hit goes behind again.
   */
  async function floodPastBound(leases: BudgetLeases, duringHold: (leases: BudgetLeases) => Promise<void> = async () => {}) {
    const held = await holdLedger();
    let third: Promise<void>;
    try {
      expect(await settlesWithin(leases.recordBehind(hitEntry(1n)), 2_000)).toBe(true);
      expect(await settlesWithin(leases.recordBehind(hitEntry(2n)), 2_000)).toBe(true);
      third = leases.recordBehind(hitEntry(3n));
      expect(await settlesWithin(third, 1_000)).toBe(false);
      await duringHold(leases);
      expect(await rows()).toEqual([]);
    } finally {
      await held.release();
    }
    await third!;
    await leases.written();
    expect((await rows()).map((r) => r.saved).sort()).toEqual(['1', '2', '3']);
    expect(await settlesWithin(leases.recordBehind(hitEntry(4n)), 2_000)).toBe(true);
    await leases.close();
    expect(await rows()).toHaveLength(4);
  }

  onServer('keeps at most maxBehind rows waiting: the next hit waits for its row, and every row is written once the ledger is free', async () => {
    await floodPastBound(leasesOf(2));
    await expectBooksBalanced(ds, tenant.tenantId);
  });

  onServer('keeps at most maxBehindPerTenant of one tenant waiting: its next hit waits, another tenant still goes behind', async () => {
    const other = await f.newTenant({ monthlyBudget: '100.00' });
    const otherPeriod = await budget.currentPeriod(other.tenantId);
    const otherHit = (n: bigint) => hitEntry(n, { tenantId: other.tenantId, period: otherPeriod });
    await floodPastBound(leasesOf(1_024, 2), async (leases) => {
      // The flood is the first tenant's: the other's hits still leave at once.
      expect(await settlesWithin(leases.recordBehind(otherHit(10n)), 2_000)).toBe(true);
      expect(await settlesWithin(leases.recordBehind(otherHit(11n)), 2_000)).toBe(true);
    });
    expect((await rows(other.tenantId)).map((r) => r.saved).sort()).toEqual(['10', '11']);
    await expectBooksBalanced(ds, tenant.tenantId);
    await expectBooksBalanced(ds, other.tenantId);
  });

  describe('when the write fails', () => {
    let errors: jest.SpyInstance;
    /** The name of the test tenant's trigger, its function and its sequence. */
    const failing = () => `fail_${tenant.tenantId.replace(/-/g, '')}`;
    /** The next `times` inserts of the tenant's ledger rows fail (a sequence: its count survives the rollback). */
    async function failNext(times: number): Promise<void> {
      const id = failing().slice('fail_'.length);
      await ds.query(`CREATE SEQUENCE fail_${id}`);
      await ds.query(
        `CREATE FUNCTION fail_${id}() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN IF nextval('fail_${id}') <= ${times} THEN RAISE EXCEPTION 'injected: the ledger refuses this row'; END IF; RETURN NEW; END $$`,
      );
      await ds.query(`CREATE TRIGGER fail_${id} BEFORE INSERT ON llm_calls FOR EACH ROW WHEN (NEW.tenant_id = '${tenant.tenantId}') EXECUTE FUNCTION fail_${id}()`);
    }
    beforeEach(() => {
      errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    });
    afterEach(async () => {
      errors.mockRestore();
      await ds.query(`DROP TRIGGER IF EXISTS ${failing()} ON llm_calls`);
      await ds.query(`DROP FUNCTION IF EXISTS ${failing()}()`);
      await ds.query(`DROP SEQUENCE IF EXISTS ${failing()}`);
    });
    /** One hit's row written behind on a new instance whose next `failures` writes fail, until all of them are over. */
    async function hitWithFailures(failures: number): Promise<{ leases: BudgetLeases; entry: LedgerEntry & { period: string } }> {
      lostCount = 0;
      await failNext(failures);
      const leases = leasesOf();
      const entry = hitEntry(9n);
      await leases.recordBehind(entry);
      await leases.written();
      return { leases, entry };
    }
    const lost = () => errors.mock.calls.filter(([m]) => typeof m === 'object' && /cache hit's ledger row could not be written/.test((m as { msg: string }).msg));

    it('tries a failed write once more and the row is written', async () => {
      const { leases } = await hitWithFailures(1);
      expect(await rows()).toEqual([{ cache_status: 'hit', cost: '0', saved: '9' }]);
      expect(lost()).toHaveLength(0);
      expect(lostCount).toBe(0);
      // The failed statement was logged, by its count of calls, with no essay text.
      expect(errors.mock.calls.some(([m]) => (m as { msg?: string }).msg === 'a group commit of leased calls failed')).toBe(true);
      await leases.close();
      await expectBooksBalanced(ds, tenant.tenantId);
    });

    it('gives up after the second failure: the answer had left, the row is lost, logged by its ids and counted, nothing is charged', async () => {
      const { leases, entry } = await hitWithFailures(2);
      expect(await rows()).toEqual([]);
      expect(lost()).toEqual([[expect.objectContaining({ tenantId: tenant.tenantId, callGroup: entry.callGroup })]]);
      expect(lostCount).toBe(1);
      // The service's own instance counts what it gives up, for /metrics.
      const counted = async () => (await t.app.get(MetricsService).registry.getSingleMetricAsString('inkstone_ledger_hit_rows_lost_total')).match(/^inkstone_ledger_hit_rows_lost_total (\d+)$/m)?.[1];
      const before = Number(await counted());
      await ds.query(`ALTER SEQUENCE ${failing()} RESTART`);
      await budget.leases!.recordBehind(hitEntry(11n));
      await budget.ledgerWritten();
      expect(Number(await counted())).toBe(before + 1);
      // The next hit is written (the trigger lets it through).
      await leases.recordBehind(hitEntry(10n));
      await leases.close();
      expect(await rows()).toEqual([{ cache_status: 'hit', cost: '0', saved: '10' }]);
      const [p] = await ds.query(`SELECT spent_nanos::text AS spent, reserved_nanos::text AS reserved FROM budget_periods WHERE tenant_id = $1 AND period = $2`, [tenant.tenantId, period]);
      expect(p).toEqual({ spent: '0', reserved: '0' });
      await expectBooksBalanced(ds, tenant.tenantId);
    });
  });
});
