import { randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { LEDGER_DAILY_SUMS } from '../migrations/1766200000000-LedgerDaily';
import { ledgerDailyInsert } from '../migrations/1766800000000-LedgerDailySchedule';
import { ANSWER_KEYS_SINCE_SQL } from '../src/billing/answer-cache.repository';
import { PERIOD_LOCKING_SQL } from '../src/billing/books.repository';
import { OFFLINE_GRADINGS_SQL } from '../src/reports/reports.repository';
import { QUEUED_DUE_WITHIN_SQL } from '../src/jobs/job-queue';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createDataSource } from '../src/db/data-source';
import { createTestDatabase, TestDatabase } from './support/test-database';

/**
 * The statements that lock a batch of tenants' budget periods (a settlement, a lease taken or
 * returned) run as prepared statements, whose plan PostgreSQL may cache and reuse. A plan made
 * while `budget_periods` was small (a new deployment, or before the table is next analyzed after
 * thousands of tenants joined) must still find each period by its key: a plan that scans every
 * tenant's periods and hashes them costs each settlement time in proportion to the number of
 * tenants (2.1 ms of a 2.3 ms settlement with 10,000 tenants, seen with auto_explain). The generic
 * plan (`plan_cache_mode = force_generic_plan`, what a cached plan is) of each is read here, on a
 * table that holds a few rows and has never been analyzed, on both PostgreSQL and the embedded one
 * (which never analyzes a table on its own: it runs no background workers). The same for the
 * daily roll-up's trigger, whose statement PL/pgSQL plans once and keeps: it finds each new ledger
 * row's tenant by its key.
 */
describe('hot statements find budget periods, leases and tenants by their keys (real PostgreSQL)', () => {
  let db: TestDatabase;
  let ds: DataSource;

  beforeAll(async () => {
    db = await createTestDatabase({ maxConnections: 2 });
    ds = createDataSource(db.url, 1);
    await ds.initialize();
    // A few tenants with a period each: a small table, as when a plan is first cached.
    for (let i = 0; i < 3; i++) {
      const id = randomUUID();
      await ds.query(`INSERT INTO tenants (id, name, timezone, monthly_cap_nanos) VALUES ($1, $2, 'Asia/Shanghai', 1000000000000)`, [id, `plans ${i}`]);
      await ds.query(`INSERT INTO budget_periods (tenant_id, period, cap_nanos) VALUES ($1, '2026-12', 1000000000000)`, [id]);
    }
  });
  afterAll(async () => {
    await ds.destroy();
    await db.drop();
  });

  /** The generic plan of `sql` as a prepared statement, in text (its parameters all null: a generic plan does not look at them). */
  async function genericPlan(sql: string): Promise<string> {
    const params = Math.max(...[...sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
    const runner = ds.createQueryRunner();
    await runner.connect();
    try {
      await runner.query(`SET plan_cache_mode = force_generic_plan`);
      await runner.query(`PREPARE locking_probe AS ${sql}`);
      const rows: Array<{ 'QUERY PLAN': string }> = await runner.query(`EXPLAIN EXECUTE locking_probe(${Array(params).fill('NULL').join(', ')})`);
      await runner.query(`DEALLOCATE locking_probe`);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    } finally {
      await runner.query(`RESET plan_cache_mode`);
      await runner.release();
    }
  }

  /** How each read of `table` in a plan finds its rows. */
  const readsOf = (plan: string, table: string) => plan.split('\n').filter((l) => new RegExp(`Scan\\b.*\\bon ${table}\\b`).test(l));

  it.each(Object.keys(PERIOD_LOCKING_SQL) as Array<keyof typeof PERIOD_LOCKING_SQL>)('%s reads budget_periods and budget_leases by their keys', async (name) => {
    const plan = await genericPlan(PERIOD_LOCKING_SQL[name]);
    const reads = readsOf(plan, 'budget_periods');
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.filter((l) => !/Index (Only )?Scan using budget_periods_pkey on budget_periods\b/.test(l))).toEqual([]);
    // The leases they write are found through their key's first column (the tenant), not by
    // reading every lease, or every lease of the instance through the key's last column.
    const lines = plan.split('\n');
    const leaseScans = lines.flatMap((l, i) => (/Scan\b.*\bon budget_leases/.test(l) ? [`${l.trim()} | ${(lines[i + 1] ?? '').trim()}`] : []));
    expect(leaseScans.filter((l) => /Seq Scan/.test(l) || (/budget_leases_pkey/.test(l) && !/Cond: \(+tenant_id = /.test(l)))).toEqual([]);
    if (name !== 'takeLeases') expect(leaseScans.length).toBeGreaterThan(0); // (a take inserts, through the key's conflict)
  });

  it("the cache index's poll reads llm_cache through its stored_xid index alone, not every live key through the expiry index", async () => {
    // Not a prepared statement: planned on each run, from the table's size (5,000 live answers,
    // never analyzed) and the horizon of a read a moment ago.
    const [{ id: tenantId }] = await ds.query(`SELECT id FROM tenants LIMIT 1`);
    await ds.query(
      `INSERT INTO llm_cache (tenant_id, cache_key, content, provider, model, finish_reason, input_tokens, cached_input_tokens, output_tokens, cost_nanos, expires_at)
       SELECT $1, 'plans-' || i, 'an answer', 'deepseek', 'deepseek-flash', 'stop', 10, 0, 10, 5, now() + interval '1 day' FROM generate_series(1, 5000) i`,
      [tenantId],
    );
    const [h] = await ds.query(`SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`);
    const rows: Array<{ 'QUERY PLAN': string }> = await ds.query(`EXPLAIN ${ANSWER_KEYS_SINCE_SQL}`, [h.xmax, []]);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toContain('Index Scan on llm_cache_stored_xid_idx');
    expect(plan).not.toMatch(/llm_cache_expiry_idx|llm_cache_pkey|Seq Scan on llm_cache\b/);
  });

  it('the roll-up trigger runs its statement as built, and it reads tenants by their primary key only', async () => {
    const statement = ledgerDailyInsert(true, true, true);
    const [fn] = await ds.query(`SELECT prosrc FROM pg_proc WHERE proname = 'ledger_daily_add'`);
    expect(fn.prosrc).toContain(statement.trim());
    // The trigger's transition table, as a table of the ledger's shape (never analyzed either).
    const runner = ds.createQueryRunner();
    await runner.connect();
    try {
      await runner.query(`CREATE TEMP TABLE new_rows (LIKE llm_calls)`);
      const rows: Array<{ 'QUERY PLAN': string }> = await runner.query(`EXPLAIN ${statement}`);
      const reads = readsOf(rows.map((r) => r['QUERY PLAN']).join('\n'), 'tenants');
      expect(reads.length).toBeGreaterThan(0);
      expect(reads.filter((l) => !/Index (Only )?Scan using tenants_pkey on tenants\b/.test(l))).toEqual([]);
    } finally {
      await runner.query(`DROP TABLE IF EXISTS new_rows`);
      await runner.release();
    }
  });

  it('a lease update can be a HOT update: no index of budget_leases covers a column any update of it writes', async () => {
    // Every UPDATE of budget_leases in the repository, and the columns its SET writes.
    const source = fs.readFileSync(path.join(__dirname, '../src/billing/books.repository.ts'), 'utf8');
    const sets = [...source.matchAll(/UPDATE budget_leases\b(?:\s+\w+)?\s+SET\s+([\s\S]*?)\s(?:FROM|WHERE)\s/g)].map((m) => m[1]);
    expect(sets.length).toBeGreaterThanOrEqual(4);
    const written = new Set(sets.flatMap((set) => [...`, ${set}`.matchAll(/,\s*(?:\w+\.)?(\w+)\s*=(?!>)/g)].map((m) => m[1])));
    expect([...written].sort()).toEqual(expect.arrayContaining(['amount_nanos', 'expires_at']));
    const indexes: Array<{ indexdef: string }> = await ds.query(`SELECT indexdef FROM pg_indexes WHERE tablename = 'budget_leases'`);
    expect(indexes.length).toBeGreaterThan(0);
    const covering = indexes.filter((i) => [...written].some((c) => new RegExp(`\\b${c}\\b`).test(i.indexdef.replace(/^.*? ON /, ''))));
    expect(covering).toEqual([]);
    // And half of each page is left free for the next version of a row.
    const [rel] = await ds.query(`SELECT reloptions FROM pg_class WHERE relname = 'budget_leases'`);
    expect(rel.reloptions).toEqual(['fillfactor=50']);
  });

  it("the day's roll-up rows, updated by every settlement, land in pages with room left for their next versions", async () => {
    // Its indexes cover only the key, which an update never writes; what it lacked was room.
    const [rel] = await ds.query(`SELECT reloptions FROM pg_class WHERE relname = 'ledger_daily'`);
    const fill = Number(/^fillfactor=(\d+)$/.exec((rel.reloptions ?? []).join(','))?.[1] ?? 100);
    expect(fill).toBeLessThan(100);
    const indexes: Array<{ indexdef: string }> = await ds.query(`SELECT indexdef FROM pg_indexes WHERE tablename = 'ledger_daily'`);
    const counters = [...LEDGER_DAILY_SUMS, 'schedule_saved_nanos'];
    expect(indexes.filter((i) => counters.some((c) => new RegExp(`\\b${c}\\b`).test(i.indexdef.replace(/^.*? ON /, ''))))).toEqual([]);
  });

  it("the month report counts a school's offline gradings through an index of them, not by reading every school's essays", async () => {
    const runner = ds.createQueryRunner();
    await runner.connect();
    try {
      // Whether an index serves it at all (on a table this small a scan of it is cheaper).
      await runner.query(`SET enable_seqscan = off`);
      const rows: Array<{ 'QUERY PLAN': string }> = await runner.query(`EXPLAIN ${OFFLINE_GRADINGS_SQL}`, [randomUUID(), '2026-12-01T00:00:00+08:00', '2027-01-01T00:00:00+08:00']);
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(readsOf(plan, 'essays')).toEqual([expect.stringMatching(/Index (Only )?Scan using essays_offline_graded_idx on essays\b/)]);
    } finally {
      await runner.query(`RESET enable_seqscan`);
      await runner.release();
    }
  });

  it('a worker pool with no room for calls waiting in batches finds whether any work is due soon on an index of queued work by kind and deadline', async () => {
    const runner = ds.createQueryRunner();
    await runner.connect();
    try {
      // A queue of 20,000 deep reviews due next week, in a copy of the table with its indexes (the
      // session's own: no essays or tenants needed for its rows), analyzed.
      await runner.query(`CREATE TEMP TABLE jobs (LIKE public.jobs INCLUDING DEFAULTS INCLUDING INDEXES)`);
      await runner.query(
        `INSERT INTO jobs (id, tenant_id, essay_id, kind, status, max_attempts, due_by)
         SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'deep_review', 'queued', 5, now() + interval '7 days' FROM generate_series(1, 20000)`,
      );
      await runner.query(`ANALYZE jobs`);
      const rows: Array<{ 'QUERY PLAN': string }> = await runner.query(`EXPLAIN ${QUEUED_DUE_WITHIN_SQL}`, ['deep_review', 1_800_000]);
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(readsOf(plan, 'jobs')).toEqual([expect.stringMatching(/Index (Only )?Scan using \w*jobs\w*kind\w*due\w* on jobs\b/)]);
    } finally {
      await runner.query(`DROP TABLE IF EXISTS pg_temp.jobs`);
      await runner.release();
    }
  });
});
