import { randomUUID } from 'node:crypto';
import { LedgerDailySchedule1766800000000 } from '../migrations/1766800000000-LedgerDailySchedule';
import { LedgerDailyOrder1767000000000 } from '../migrations/1767000000000-LedgerDailyOrder';
import { LedgerDailyTenantByKey1767100000000 } from '../migrations/1767100000000-LedgerDailyTenantByKey';
import { TenantZonesKnown1769400000000 } from '../migrations/1769400000000-TenantZonesKnown';
import { DataSource } from 'typeorm';
import { TenantsRepository } from '../src/tenancy/tenants.repository';
import { LedgerService } from '../src/billing/ledger.service';
import { formatCny } from '../src/common/money';
import { bearer, Factory, TestTenant } from './support/factories';
import { createTestApp, TestApp } from './support/test-app';

/** The calendar day `n` days after `day` (YYYY-MM-DD). */
const shiftDay = (day: string, n: number) => new Date(Date.parse(`${day}T00:00:00Z`) + n * 86_400_000).toISOString().slice(0, 10);

/**
 * The ledger's daily roll-up (ledger_daily, kept by a statement trigger on llm_calls) answers
 * usage, stats and the monthly report exactly as a scan of the ledger would: for whole days, part
 * days at either end, every grouping, a time zone far from UTC, and multi-row inserts.
 */
describe('the daily roll-up of the ledger', () => {
  let t: TestApp;
  let tenant: TestTenant;
  let other: TestTenant;
  const TZ = 'America/Los_Angeles';
  const keys = [randomUUID(), randomUUID()];

  beforeAll(async () => {
    t = await createTestApp({ WORKERS_ENABLED: 'false' });
    const f = new Factory(t.app);
    tenant = await f.newTenant({ timezone: TZ });
    other = await f.newTenant();
    // 600 calls over 45 days ending now, in statements of 1 to 40 rows; another tenant's calls beside them.
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const purposes = ['grading', 'grading', 'deep_review', 'chat', 'escalation', 'shadow'];
    const models = [['deepseek', 'deepseek-flash', 'standard'], ['dashscope', 'qwen-flash', 'standard'], ['dashscope', 'qwen3-max', 'deep'], [null, null, null]];
    const now = Date.now();
    for (const who of [tenant, other]) {
      let left = who === tenant ? 600 : 50;
      while (left > 0) {
        const n = Math.min(left, 1 + Math.floor(rnd() * 40));
        left -= n;
        const rows: unknown[][] = [];
        for (let i = 0; i < n; i++) {
          const at = new Date(now - Math.floor(rnd() * 45 * 86_400_000));
          const [provider, model, tier] = models[Math.floor(rnd() * models.length)];
          const hit = provider !== null && rnd() < 0.2;
          const ok = provider === null || rnd() < 0.9;
          const input = Math.floor(rnd() * 2000);
          rows.push([
            who.tenantId, randomUUID(), `${at.getUTCFullYear()}-${String(at.getUTCMonth() + 1).padStart(2, '0')}`, at.toISOString(), randomUUID(), 1,
            rnd() < 0.2 ? null : keys[Math.floor(rnd() * keys.length)], purposes[Math.floor(rnd() * purposes.length)], tier, provider, model,
            provider === null ? 'bypass' : hit ? 'hit' : 'miss', ok ? 'ok' : 'fallback', input, Math.floor(input / 3), Math.floor(rnd() * 800),
            hit ? 0 : Math.floor(rnd() * 5_000_000), hit ? Math.floor(rnd() * 3_000_000) : 0, Math.floor(rnd() * 100), Math.floor(rnd() * 3000), rnd() < 0.1,
            // a third of the paid calls scheduled: what waiting saved (now and then a little more expensive)
            !hit && provider !== null && rnd() < 0.35 ? Math.floor(rnd() * 2_000_000) - 200_000 : null,
          ]);
        }
        const cols = 22;
        await t.dataSource.query(
          `INSERT INTO llm_calls (tenant_id, id, period, created_at, call_group, attempt, api_key_id, purpose, tier, provider, model, cache_status, outcome,
                                  input_tokens, cached_input_tokens, output_tokens, cost_nanos, saved_nanos, compression_saved_tokens, latency_ms, batch,
                                  schedule_saved_nanos)
           VALUES ${rows.map((_, r) => `(${Array.from({ length: cols }, (__, c) => `$${r * cols + c + 1}`).join(', ')})`).join(', ')}`,
          rows.flat(),
        );
      }
    }
  });
  afterAll(() => t.close());

  const GROUP = {
    day: `to_char(created_at AT TIME ZONE '${TZ}', 'YYYY-MM-DD')`,
    model: `coalesce(provider || ':' || model, 'none')`,
    provider: `coalesce(provider, 'none')`,
    tier: `coalesce(tier, 'none')`,
    teacher: `coalesce(api_key_id::text, 'none')`,
  };

  /** What a scan of the ledger says, in the API's shape. */
  async function scanned(groupBy: keyof typeof GROUP, from: Date, to: Date) {
    const rows = await t.dataSource.query(
      `SELECT ${GROUP[groupBy]} AS key, count(*)::int AS calls, count(*) FILTER (WHERE cache_status = 'hit')::int AS "cacheHits",
              count(*) FILTER (WHERE outcome <> 'ok')::int AS failures,
              count(*) FILTER (WHERE purpose IN ('grading', 'deep_review') AND outcome = 'ok')::int AS gradings,
              coalesce(sum(cost_nanos) FILTER (WHERE purpose IN ('grading', 'deep_review', 'escalation', 'shadow')), 0)::text AS grading_cost,
              sum(input_tokens)::int AS "inputTokens", sum(cached_input_tokens)::int AS "cachedInputTokens", sum(output_tokens)::int AS "outputTokens",
              sum(cost_nanos)::text AS cost, sum(saved_nanos)::text AS saved
         FROM llm_calls WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 GROUP BY 1 ORDER BY 1`,
      [tenant.tenantId, from, to],
    );
    return rows.map(({ grading_cost, cost, saved, ...r }: Record<string, string & number>) => ({
      ...r,
      costPerGrading: r.gradings > 0 ? formatCny(BigInt(grading_cost) / BigInt(r.gradings)) : null,
      cost: formatCny(BigInt(cost)),
      savedByCache: formatCny(BigInt(saved)),
    }));
  }

  it('answers usage for every grouping and window exactly as a scan of the ledger', async () => {
    const now = Date.now();
    const windows: Array<[Date, Date]> = [
      [new Date(now - 50 * 86_400_000), new Date(now + 1000)], // all of it
      [new Date(now - 20.3 * 86_400_000), new Date(now - 3.7 * 86_400_000)], // part days at both ends
      [new Date(now - 5.2 * 86_400_000), new Date(now - 4.9 * 86_400_000)], // inside one or two days, no whole day
      [new Date('2020-01-01T00:00:00Z'), new Date('2020-02-01T00:00:00Z')], // nothing
    ];
    for (const [from, to] of windows) {
      for (const groupBy of Object.keys(GROUP) as Array<keyof typeof GROUP>) {
        const res = await t.http.get(`/v1/usage?groupBy=${groupBy}&from=${from.toISOString()}&to=${to.toISOString()}`).set(bearer(tenant.adminKey)).expect(200);
        expect({ groupBy, from, data: res.body.data }).toEqual({ groupBy, from, data: await scanned(groupBy, from, to) });
      }
    }
  });

  it('answers usage over whole local days from the roll-up (midnight in the tenant zone to midnight)', async () => {
    const [{ from, to }] = await t.dataSource.query(
      `SELECT ((now() AT TIME ZONE $1)::date - 10)::timestamp AT TIME ZONE $1 AS from, ((now() AT TIME ZONE $1)::date - 2)::timestamp AT TIME ZONE $1 AS to`,
      [TZ],
    );
    const res = await t.http.get(`/v1/usage?groupBy=day&from=${from.toISOString()}&to=${to.toISOString()}`).set(bearer(tenant.adminKey)).expect(200);
    expect(res.body.data).toHaveLength(8);
    expect(res.body.data).toEqual(await scanned('day', from, to));
  });

  it('takes a date alone as midnight in the tenant zone: whole local days, each from the roll-up', async () => {
    const [{ d1, d2, from, to }] = await t.dataSource.query(
      `SELECT to_char((now() AT TIME ZONE $1)::date - 10, 'YYYY-MM-DD') AS d1, to_char((now() AT TIME ZONE $1)::date - 2, 'YYYY-MM-DD') AS d2,
              ((now() AT TIME ZONE $1)::date - 10)::timestamp AT TIME ZONE $1 AS from, ((now() AT TIME ZONE $1)::date - 2)::timestamp AT TIME ZONE $1 AS to`,
      [TZ],
    );
    const res = await t.http.get(`/v1/usage?groupBy=day&from=${d1}&to=${d2}`).set(bearer(tenant.adminKey)).expect(200);
    expect(res.body.from).toBe(new Date(from).toISOString());
    expect(res.body.to).toBe(new Date(to).toISOString());
    expect(res.body.data.map((r: { key: string }) => r.key)).toEqual(Array.from({ length: 8 }, (_, i) => shiftDay(d1, i)));
    expect(res.body.data).toEqual(await scanned('day', from, to));
    // Not a day of the calendar: refused.
    const bad = await t.http.get('/v1/usage?from=2026-02-30').set(bearer(tenant.adminKey)).expect(400);
    expect(bad.body.error.details[0]).toMatchObject({ field: 'from' });
    // Before the ledger could hold anything (the year 0 was read a year off): refused too.
    for (const early of ['0000-01-01', '1969-12-31T23:00:00Z']) {
      const old = await t.http.get(`/v1/usage?from=${early}`).set(bearer(tenant.adminKey)).expect(400);
      expect(old.body.error.details).toEqual([{ field: 'from', message: 'from must be from 1970 on' }]);
    }
    // Past what a day of the calendar can be in every zone (a local day of the year 10000 was a 500):
    // refused; up to two days before, read.
    for (const [query, field] of [
      ['from=9999-12-31T16:00:00Z&to=9999-12-31T18:00:00Z', 'from'],
      ['from=9999-12-28&to=9999-12-31T23:00:00-14:00', 'to'],
      ['from=9999-12-30&to=9999-12-31', 'from'],
    ]) {
      const late = await t.http.get(`/v1/usage?${query}`).set(bearer(tenant.adminKey)).expect(400);
      expect(late.body.error.details).toEqual([{ field, message: `${field} must be before 9999-12-30` }]);
    }
    await t.http.get('/v1/usage?from=9999-12-27&to=9999-12-29T23:59:00Z').set(bearer(tenant.adminKey)).expect(200);
    // An offset no zone has (past 14 hours) is no time: before, -23:59 was read as the next day.
    for (const past of ['-23:59', '-14:59', '%2B14:01', '-1500']) {
      const offset = await t.http.get(`/v1/usage?from=2026-01-01T00:00:00${past}`).set(bearer(tenant.adminKey)).expect(400);
      expect(offset.body.error.details[0]).toMatchObject({ field: 'from', message: expect.stringContaining('with its offset') });
    }
    await t.http.get('/v1/usage?from=2026-01-01T00:00:00-14:00&to=2026-01-03T00:00:00%2B14:00').set(bearer(tenant.adminKey)).expect(200);
    // A month before the ledger could hold anything, as a date before 1970: refused on every route that takes one.
    for (const route of ['/v1/stats', '/v1/reports/month', '/v1/reports/month.csv']) {
      for (const period of ['0000-01', '1969-12']) {
        const early = await t.http.get(`${route}?period=${period}`).set(bearer(tenant.adminKey)).expect(400);
        expect(early.body.error.details).toEqual([{ field: 'period', message: 'period must be from 1970 on' }]);
      }
      const shape = await t.http.get(`${route}?period=2026-13`).set(bearer(tenant.adminKey)).expect(400);
      expect(shape.body.error.details).toEqual([{ field: 'period', message: 'period must be YYYY-MM' }]);
    }
    await t.http.get('/v1/stats?period=1970-01').set(bearer(tenant.adminKey)).expect(200);
  });

  it('reads the day to falls in from the roll-up while to is still ahead of the clock, from the ledger once it has passed', async () => {
    const busy = await new Factory(t.app).newTenant({ timezone: 'Asia/Shanghai' });
    // Today's calls, written as the service writes them (created_at is the database's clock).
    await t.dataSource.query(
      `INSERT INTO llm_calls (tenant_id, id, period, call_group, attempt, purpose, tier, provider, model, cache_status, outcome,
                              input_tokens, cached_input_tokens, output_tokens, cost_nanos, saved_nanos, compression_saved_tokens, latency_ms, batch)
       SELECT $1, gen_random_uuid(), to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM'), gen_random_uuid(), 1, 'grading', 'standard', 'deepseek',
              'deepseek-flash', 'miss', 'ok', 100, 0, 50, 1000, 0, 0, 10, false
         FROM generate_series(1, 30)`,
      [busy.tenantId],
    );
    const [{ passed }] = await t.dataSource.query(`SELECT clock_timestamp() AS passed`);
    // The roll-up told apart from the ledger: its rows for today say 1,000 calls more than the ledger holds.
    const [tampered] = await t.dataSource.query(
      `WITH u AS (UPDATE ledger_daily SET calls = calls + 1000 WHERE tenant_id = $1 AND day = (now() AT TIME ZONE 'Asia/Shanghai')::date RETURNING 1)
       SELECT count(*)::int AS n FROM u`,
      [busy.tenantId],
    );
    expect(tampered.n).toBe(1);
    const calls = async (query: string) => {
      const res = await t.http.get(`/v1/usage?groupBy=model${query}`).set(bearer(busy.adminKey)).expect(200);
      return res.body.data.map((r: { key: string; calls: number }) => [r.key, r.calls]);
    };
    // Until now (the default, and a to ahead of the clock): today from the roll-up.
    expect(await calls('')).toEqual([['deepseek:deepseek-flash', 1030]]);
    expect(await calls(`&to=${new Date(Date.now() + 3_600_000).toISOString()}`)).toEqual([['deepseek:deepseek-flash', 1030]]);
    // A to the clock has passed: today's part from the ledger's own rows.
    expect(await calls(`&to=${new Date(passed).toISOString()}`)).toEqual([['deepseek:deepseek-flash', 30]]);
    // The clock passing to between the service's two statements (the first made to see it ahead):
    // the second sees it has passed and today is read again from the ledger.
    const ledger = t.app.get(LedgerService);
    const ds = t.app.get(DataSource);
    const query = ds.query.bind(ds);
    const spy = jest.spyOn(ds, 'query').mockImplementationOnce(async (sql: string, params?: any) => {
      const [bounds] = await query(sql, params);
      expect(bounds.open).toBe(false);
      return [{ ...bounds, open: true }];
    });
    try {
      const raced = await ledger.usage(busy.tenantId, new Date(Date.now() - 40 * 86_400_000), new Date(passed), 'model', 'Asia/Shanghai');
      expect(spy).toHaveBeenCalled();
      expect(raced.map((r) => [r.key, r.calls])).toEqual([['deepseek:deepseek-flash', 30]]);
    } finally {
      spy.mockRestore();
    }
    // from an hour ago: inside today (not at midnight), no day of the roll-up fits and the ledger's rows
    // answer, the clock ahead or not; in the first hour of the day, from falls yesterday and today is rolled up.
    const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
    const [{ sameDay }] = await t.dataSource.query(
      `SELECT ($1::timestamptz AT TIME ZONE 'Asia/Shanghai')::date = (now() AT TIME ZONE 'Asia/Shanghai')::date AS "sameDay"`,
      [hourAgo],
    );
    expect(await calls(`&from=${hourAgo}`)).toEqual([['deepseek:deepseek-flash', sameDay ? 30 : 1030]]);
  });

  it('answers stats and the monthly report from the roll-up, equal to the ledger', async () => {
    const [p] = await t.dataSource.query(`SELECT period FROM llm_calls WHERE tenant_id = $1 GROUP BY 1 ORDER BY count(*) DESC LIMIT 1`, [tenant.tenantId]);
    const [raw] = await t.dataSource.query(
      `SELECT count(*)::int AS calls, count(*) FILTER (WHERE cache_status = 'hit')::int AS hits, count(*) FILTER (WHERE outcome <> 'ok')::int AS failed,
              sum(cost_nanos)::text AS cost, sum(compression_saved_tokens)::int AS comp,
              coalesce(sum(schedule_saved_nanos) FILTER (WHERE NOT batch), 0)::text AS scheduled,
              round(avg(latency_ms) FILTER (WHERE cache_status <> 'hit' AND outcome = 'ok'))::int AS latency
         FROM llm_calls WHERE tenant_id = $1 AND period = $2`,
      [tenant.tenantId, p.period],
    );
    const stats = (await t.http.get(`/v1/stats?period=${p.period}`).set(bearer(tenant.adminKey)).expect(200)).body;
    expect(stats).toMatchObject({ totalCalls: raw.calls, cacheHits: raw.hits, failedCalls: raw.failed, cost: formatCny(BigInt(raw.cost)), compressionSavedTokens: raw.comp });
    expect(Math.abs(stats.averageLatencyMs - raw.latency)).toBeLessThanOrEqual(1);
    const all = (await t.http.get('/v1/stats').set(bearer(tenant.adminKey)).expect(200)).body;
    expect(all.totalCalls).toBe(600);
    const report = (await t.http.get(`/v1/reports/month?period=${p.period}`).set(bearer(tenant.adminKey)).expect(200)).body;
    expect(report.modelCost).toBe(formatCny(BigInt(raw.cost)));
    expect(report.ledgerCalls).toBe(raw.calls);
    expect(BigInt(raw.scheduled)).toBeGreaterThan(0n);
    expect(report.savedByScheduling).toBe(formatCny(BigInt(raw.scheduled)));
  });

  it('fills in what scheduling saved for the days rolled up before the roll-up kept it (its migration, down and up again, with the roll-up key order and its tenant looked up by key undone before and redone after)', async () => {
    const period = async () => (await t.dataSource.query(`SELECT period FROM llm_calls WHERE tenant_id = $1 GROUP BY 1 ORDER BY count(*) DESC LIMIT 1`, [tenant.tenantId]))[0].period;
    const p = await period();
    const before = (await t.http.get(`/v1/reports/month?period=${p}`).set(bearer(tenant.adminKey)).expect(200)).body;
    const q = t.dataSource.createQueryRunner();
    try {
      const m = new LedgerDailySchedule1766800000000();
      const ordered = new LedgerDailyOrder1767000000000();
      const byKey = new LedgerDailyTenantByKey1767100000000();
      const triggerSql = async () => (await q.query(`SELECT pg_get_functiondef('ledger_daily_add'::regproc) AS def`))[0].def as string;
      expect(await triggerSql()).toContain('ORDER BY');
      expect(await triggerSql()).toContain('CROSS JOIN LATERAL');
      await byKey.down(q);
      expect(await triggerSql()).not.toContain('CROSS JOIN LATERAL');
      expect(await triggerSql()).toContain('ORDER BY');
      await ordered.down(q);
      expect(await triggerSql()).not.toContain('ORDER BY');
      await m.down(q);
      const columns = await q.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'ledger_daily' AND column_name = 'schedule_saved_nanos'`);
      expect(columns).toHaveLength(0);
      await m.up(q);
      await ordered.up(q);
      expect(await triggerSql()).toContain('ORDER BY');
      await byKey.up(q);
      expect(await triggerSql()).toContain('CROSS JOIN LATERAL');
    } finally {
      await q.release();
    }
    const after = (await t.http.get(`/v1/reports/month?period=${p}`).set(bearer(tenant.adminKey)).expect(200)).body;
    expect(after.savedByScheduling).not.toBe('0.00');
    expect(after).toEqual(before);
  });

  it('counts each call once, on its local day, where a DST jump skips midnight or brings it twice (Havana)', async () => {
    const havana = await new Factory(t.app).newTenant({ timezone: 'America/Havana' });
    // 1 November 2026 begins at 04:00Z (DST) and midnight comes again at 05:00Z; on 8 March clocks
    // jump from 00:00 to 01:00, so the 8th begins at 05:00Z and 04:30Z is still the 7th.
    const at = ['2026-11-01T04:30:00Z', '2026-03-08T04:30:00Z', '2026-03-08T05:30:00Z'];
    await t.dataSource.query(
      `INSERT INTO llm_calls (tenant_id, id, period, created_at, call_group, attempt, purpose, tier, provider, model, cache_status, outcome,
                              input_tokens, cached_input_tokens, output_tokens, cost_nanos, saved_nanos, compression_saved_tokens, latency_ms, batch)
       SELECT $1, gen_random_uuid(), to_char(a AT TIME ZONE 'America/Havana', 'YYYY-MM'), a, gen_random_uuid(), 1, 'grading', 'standard', 'deepseek',
              'deepseek-flash', 'miss', 'ok', 100, 0, 50, 1000, 0, 0, 10, false
         FROM unnest($2::timestamptz[]) AS a`,
      [havana.tenantId, at],
    );
    const usage = async (query: string) => (await t.http.get(`/v1/usage?groupBy=day&${query}`).set(bearer(havana.adminKey)).expect(200)).body.data.map((r: { key: string; calls: number }) => [r.key, r.calls]);
    expect(await usage('from=2026-11-01&to=2026-11-02')).toEqual([['2026-11-01', 1]]); // was 2: the hour read twice
    expect(await usage('from=2026-10-31&to=2026-11-01T04:45:00Z')).toEqual([['2026-11-01', 1]]); // was none: the hour lost
    expect(await usage('from=2026-03-08&to=2026-03-09')).toEqual([['2026-03-08', 1]]); // was the 7th's call too
    expect(await usage('from=2026-03-07&to=2026-03-09')).toEqual([['2026-03-07', 1], ['2026-03-08', 1]]);
  });

  it('keeps a tenant named by a zone alias the database lacks under its current name, so its calls settle and its usage reads (and the migration renames one kept before)', async () => {
    // Node's Intl takes "US/Pacific-New"; PostgreSQL's zone data dropped it: every ledger row of
    // such a tenant failed in the roll-up's trigger (its calls paid and never settled), usage was 500.
    expect(await t.app.get(TenantsRepository).zoneReading('US/Pacific-New')).toBe('unknown');
    expect(await t.app.get(TenantsRepository).zoneReading('America/Los_Angeles')).toBe('zone');
    expect(await t.app.get(TenantsRepository).zoneReading('CET')).toBe('abbreviation');
    const res = await t.http
      .post('/v1/tenants')
      .set('Authorization', `Bearer ${t.config.adminToken}`)
      .send({ name: 'Alias school', timezone: 'US/Pacific-New' })
      .expect(201);
    expect(res.body.tenant.timezone).toBe('America/Los_Angeles');
    const id = res.body.tenant.id as string;
    const at = new Date();
    await t.dataSource.query(
      `INSERT INTO llm_calls (tenant_id, id, period, created_at, call_group, attempt, purpose, tier, provider, model, cache_status, outcome, input_tokens, output_tokens, cost_nanos)
       VALUES ($1, $2, $3, $4, $5, 1, 'chat', 'standard', 'deepseek', 'deepseek-flash', 'miss', 'ok', 10, 5, 1000)`,
      [id, randomUUID(), at.toISOString().slice(0, 7), at.toISOString(), randomUUID()],
    );
    const usage = await t.http.get('/v1/usage?groupBy=day').set(bearer(res.body.adminKey)).expect(200);
    expect(JSON.stringify(usage.body)).toContain('"calls":1');
    // A name the database knows is kept as sent (Intl would call Asia/Kolkata Asia/Calcutta, a name
    // newer zone data ships only as a legacy link)...
    const operator = { Authorization: `Bearer ${t.config.adminToken}` };
    const kolkata = await t.http.post('/v1/tenants').set(operator).send({ name: 'Kolkata school', timezone: 'Asia/Kolkata' }).expect(201);
    expect(kolkata.body.tenant.timezone).toBe('Asia/Kolkata');
    // ...and one it does not know is kept under the zone's current name (a database without the legacy links).
    const repo = t.app.get(TenantsRepository);
    const reads = repo.zoneReading.bind(repo);
    const spy = jest.spyOn(repo, 'zoneReading').mockImplementation(async (zone) => (zone === 'Asia/Calcutta' ? 'unknown' : reads(zone)));
    try {
      const calcutta = await t.http.post('/v1/tenants').set(operator).send({ name: 'Calcutta school', timezone: 'Asia/Calcutta' }).expect(201);
      expect(calcutta.body.tenant.timezone).toBe('Asia/Kolkata');
    } finally {
      spy.mockRestore();
    }
    // A name the database reads as a fixed offset is kept under the zone's name (CET has summer time:
    // as "CET", the ledger's days and the budget's month disagreed for an hour every summer night)...
    const cet = await t.http.post('/v1/tenants').set(operator).send({ name: 'CET school', timezone: 'CET' }).expect(201);
    expect(cet.body.tenant.timezone).toBe('Europe/Brussels');
    // ...unless it is the zone's only name (UTC is the same either way).
    const utc = await t.http.post('/v1/tenants').set(operator).send({ name: 'UTC school', timezone: 'UTC' }).expect(201);
    expect(utc.body.tenant.timezone).toBe('UTC');

    // One kept under the alias before this change: the migration gives it the current name.
    await t.dataSource.query(`UPDATE tenants SET timezone = 'US/Pacific-New' WHERE id = $1`, [id]);
    const q = t.dataSource.createQueryRunner();
    try {
      await new TenantZonesKnown1769400000000().up(q);
    } finally {
      await q.release();
    }
    await t.dataSource.query(`UPDATE tenants SET timezone = 'CET' WHERE id = $1`, [cet.body.tenant.id]);
    const q2 = t.dataSource.createQueryRunner();
    try {
      await new TenantZonesKnown1769400000000().up(q2);
    } finally {
      await q2.release();
    }
    const [row] = await t.dataSource.query(`SELECT timezone FROM tenants WHERE id = $1`, [id]);
    expect(row.timezone).toBe('America/Los_Angeles');
    const zones = await t.dataSource.query(`SELECT id, timezone FROM tenants WHERE id = ANY($1::uuid[])`, [[cet.body.tenant.id, utc.body.tenant.id]]);
    expect(Object.fromEntries(zones.map((z: { id: string; timezone: string }) => [z.id, z.timezone]))).toEqual({ [cet.body.tenant.id]: 'Europe/Brussels', [utc.body.tenant.id]: 'UTC' });
    const [kept] = await t.dataSource.query(`SELECT timezone FROM tenants WHERE id = $1`, [tenant.tenantId]);
    expect(kept.timezone).toBe(TZ);
  });

  it("keeps another tenant's calls out", async () => {
    const mine = (await t.http.get('/v1/stats').set(bearer(other.adminKey)).expect(200)).body;
    expect(mine.totalCalls).toBe(50);
  });
});
