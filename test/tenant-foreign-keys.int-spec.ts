import { randomUUID } from 'node:crypto';
import { clientForSuite } from './support/test-database';

/**
 * Foreign keys between tenant tables carry tenant_id on both sides, so the database itself refuses
 * a row of one tenant that points at another tenant's row (migration 1765300000000).
 */
describe('foreign keys between tenant tables include tenant_id (real PostgreSQL)', () => {
  const suite = clientForSuite();

  interface Fk {
    name: string;
    from: string;
    to: string;
    fromCols: string[];
    toCols: string[];
  }

  async function tenantForeignKeys(): Promise<Fk[]> {
    const { rows } = await suite.client.query<Fk>(
      `SELECT k.conname AS name, k.conrelid::regclass::text AS from, k.confrelid::regclass::text AS to,
              (SELECT array_agg(a.attname::text ORDER BY u.i) FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n) AS "fromCols",
              (SELECT array_agg(a.attname::text ORDER BY u.i) FROM unnest(k.confkey) WITH ORDINALITY u(n, i)
                 JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = u.n) AS "toCols"
         FROM pg_constraint k
        WHERE k.contype = 'f' AND k.connamespace = 'public'::regnamespace
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = k.conrelid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = k.confrelid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
        ORDER BY 2, 1`,
    );
    return rows;
  }

  it('has no foreign key between two tables with tenant_id that does not match tenant_id to tenant_id', async () => {
    const fks = await tenantForeignKeys();
    // The check below is vacuous without foreign keys to look at: these must be among them.
    expect(fks.map((k) => `${k.from}→${k.to}`)).toEqual(
      expect.arrayContaining([
        'essays→assignments',
        'jobs→essays',
        'jobs→orders',
        'orders→essays',
        'grade_overrides→essays',
        'essay_lsh→essays',
        'payment_events→orders',
        'budget_reservations→budget_periods',
      ]),
    );
    const offenders = fks
      .filter((k) => {
        const i = k.fromCols.indexOf('tenant_id');
        return i < 0 || k.toCols[i] !== 'tenant_id';
      })
      .map((k) => `${k.name}: ${k.from} (${k.fromCols.join(', ')}) → ${k.to} (${k.toCols.join(', ')})`);
    expect(offenders).toEqual([]);
  });

  /** Two tenants, each with an assignment, an essay (of that assignment), an order, a job and a budget period. */
  async function twoTenants() {
    const make = async () => {
      const t = { tenant: randomUUID(), assignment: randomUUID(), essay: randomUUID(), order: randomUUID() };
      await suite.client.query(`INSERT INTO tenants (id, name, timezone, monthly_cap_nanos) VALUES ($1, 'School', 'Asia/Shanghai', 0)`, [t.tenant]);
      await suite.client.query(
        `INSERT INTO assignments (tenant_id, id, title, prompt, rubric_key, rubric_version, language) VALUES ($1, $2, 'T', 'P', 'zh-gaokao-60', 1, 'zh')`,
        [t.tenant, t.assignment],
      );
      await suite.client.query(
        `INSERT INTO essays (tenant_id, id, assignment_id, rubric_key, rubric_version, language, tier, text, status)
         VALUES ($1, $2, $3, 'zh-gaokao-60', 1, 'zh', 'standard', '文', 'queued')`,
        [t.tenant, t.essay, t.assignment],
      );
      await suite.client.query(`INSERT INTO orders (tenant_id, id, essay_id, price_nanos, payment_mode, status) VALUES ($1, $2, $3, 1, 'webhook', 'awaiting_payment')`, [
        t.tenant,
        t.order,
        t.essay,
      ]);
      await suite.client.query(`INSERT INTO budget_periods (tenant_id, period, cap_nanos) VALUES ($1, '2026-12', 0)`, [t.tenant]);
      return t;
    };
    return { a: await make(), b: await make() };
  }
  type Rows = Awaited<ReturnType<typeof twoTenants>>['a'];

  /**
   * Each insert is made by tenant B pointing at `target` (B's own row: accepted; A's: refused).
   * `count` counts what B stored there.
   */
  const cases: Array<{ name: string; insert: (b: Rows, target: Rows) => Promise<unknown>; count: (b: Rows) => Promise<number> }> = [
    {
      name: 'an essay of another tenant’s assignment',
      insert: (b, x) =>
        suite.client.query(
          `INSERT INTO essays (tenant_id, id, assignment_id, rubric_key, rubric_version, language, tier, text, status)
           VALUES ($1, $2, $3, 'zh-gaokao-60', 1, 'zh', 'standard', '文', 'queued')`,
          [b.tenant, randomUUID(), x.assignment],
        ),
      count: (b) => countWhere('essays', 'tenant_id = $1 AND id <> $2', [b.tenant, b.essay]),
    },
    {
      name: 'a job for another tenant’s essay',
      insert: (b, x) => suite.client.query(`INSERT INTO jobs (tenant_id, id, essay_id, kind, status, max_attempts) VALUES ($1, $2, $3, 'grade', 'queued', 5)`, [b.tenant, randomUUID(), x.essay]),
      count: (b) => countWhere('jobs', 'tenant_id = $1', [b.tenant]),
    },
    {
      name: 'a job for another tenant’s order',
      insert: (b, x) =>
        suite.client.query(`INSERT INTO jobs (tenant_id, id, essay_id, kind, status, max_attempts, order_id) VALUES ($1, $2, $3, 'deep_review', 'queued', 5, $4)`, [
          b.tenant,
          randomUUID(),
          b.essay,
          x.order,
        ]),
      count: (b) => countWhere('jobs', 'tenant_id = $1', [b.tenant]),
    },
    {
      name: 'an order for another tenant’s essay',
      insert: (b, x) =>
        suite.client.query(`INSERT INTO orders (tenant_id, id, essay_id, price_nanos, payment_mode, status) VALUES ($1, $2, $3, 1, 'invoice', 'delivered')`, [b.tenant, randomUUID(), x.essay]),
      count: (b) => countWhere('orders', 'tenant_id = $1 AND id <> $2', [b.tenant, b.order]),
    },
    {
      name: 'a grade override of another tenant’s essay',
      insert: (b, x) =>
        suite.client.query(`INSERT INTO grade_overrides (tenant_id, id, essay_id, changes, before, after) VALUES ($1, $2, $3, '{}', '{}', '{}')`, [b.tenant, randomUUID(), x.essay]),
      count: (b) => countWhere('grade_overrides', 'tenant_id = $1', [b.tenant]),
    },
    {
      name: 'a near-duplicate bucket of another tenant’s essay',
      insert: (b, x) => suite.client.query(`INSERT INTO essay_lsh (tenant_id, band, bucket, essay_id) VALUES ($1, 1, 42, $2)`, [b.tenant, x.essay]),
      count: (b) => countWhere('essay_lsh', 'tenant_id = $1', [b.tenant]),
    },
    {
      name: 'a payment event for another tenant’s order',
      insert: (b, x) =>
        suite.client.query(`INSERT INTO payment_events (tenant_id, event_id, type, order_id, amount_nanos, outcome) VALUES ($1, $2, 'payment.succeeded', $3, 1, 'applied')`, [
          b.tenant,
          `evt_${randomUUID()}`,
          x.order,
        ]),
      count: (b) => countWhere('payment_events', 'tenant_id = $1', [b.tenant]),
    },
  ];

  async function countWhere(table: string, where: string, params: unknown[]): Promise<number> {
    const { rows } = await suite.client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, params);
    return rows[0].n;
  }

  it.each(cases)('refuses $name, and stores nothing', async ({ insert, count }) => {
    const { a, b } = await twoTenants();
    await expect(insert(b, a)).rejects.toMatchObject({ code: '23503' });
    expect(await count(b)).toBe(0);
    // The same insert pointing at B's own row is accepted: the refusal was the tenant, not the row.
    await insert(b, b);
    expect(await count(b)).toBe(1);
  });

  it('keeps each key’s ON DELETE: an assignment’s essays keep their tenant, an essay takes its jobs and orders, an event keeps its record', async () => {
    const { a } = await twoTenants();
    await suite.client.query(`INSERT INTO jobs (tenant_id, id, essay_id, kind, status, max_attempts, order_id) VALUES ($1, $2, $3, 'deep_review', 'queued', 5, $4)`, [
      a.tenant,
      randomUUID(),
      a.essay,
      a.order,
    ]);
    await suite.client.query(`INSERT INTO payment_events (tenant_id, event_id, type, order_id, amount_nanos, outcome) VALUES ($1, 'evt_1', 'payment.succeeded', $2, 1, 'applied')`, [
      a.tenant,
      a.order,
    ]);
    await suite.client.query(`DELETE FROM assignments WHERE id = $1`, [a.assignment]);
    const { rows: essays } = await suite.client.query(`SELECT tenant_id, assignment_id FROM essays WHERE id = $1`, [a.essay]);
    expect(essays).toEqual([{ tenant_id: a.tenant, assignment_id: null }]);

    await suite.client.query(`DELETE FROM essays WHERE id = $1`, [a.essay]);
    expect(await countWhere('jobs', 'tenant_id = $1', [a.tenant])).toBe(0);
    expect(await countWhere('orders', 'tenant_id = $1', [a.tenant])).toBe(0);
    const { rows: events } = await suite.client.query(`SELECT tenant_id, order_id FROM payment_events WHERE tenant_id = $1`, [a.tenant]);
    expect(events).toEqual([{ tenant_id: a.tenant, order_id: null }]);
  });
});
